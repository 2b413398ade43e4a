#include "plugins/common/container_names.h"

#include <gtest/gtest.h>

#include <string>

namespace beaconbox::plugins {
namespace {

using namespace std::string_literals;

TEST(ContainerNamesTest, AcceptsContainerdIdentifiers) {
  EXPECT_TRUE(IsContainerdName("default"));
  EXPECT_TRUE(IsContainerdName("k8s.io"));
  EXPECT_TRUE(IsContainerdName("a_b-c.d9"));
  EXPECT_TRUE(IsContainerdName("0"));
  EXPECT_TRUE(IsContainerdName(std::string(76, 'x')));
}

TEST(ContainerNamesTest, RejectsBadNames) {
  EXPECT_FALSE(IsContainerdName(""));
  EXPECT_FALSE(IsContainerdName("/"));
  EXPECT_FALSE(IsContainerdName("a/b"));
  EXPECT_FALSE(IsContainerdName("."));
  EXPECT_FALSE(IsContainerdName(".."));
  EXPECT_FALSE(IsContainerdName("a..b"));
  EXPECT_FALSE(IsContainerdName("a--b"));  // would make the <ns>--<id> key ambiguous
  EXPECT_FALSE(IsContainerdName("a\0b"s));
  EXPECT_FALSE(IsContainerdName("a\0"s));
  EXPECT_FALSE(IsContainerdName(std::string(77, 'x')));
  EXPECT_FALSE(IsContainerdName("-rf"));
  EXPECT_FALSE(IsContainerdName(".hidden"));
  EXPECT_FALSE(IsContainerdName("trailing-"));
  EXPECT_FALSE(IsContainerdName("with space"));
  EXPECT_FALSE(IsContainerdName("caf\xc3\xa9"));
}

TEST(ContainerNamesTest, KeyJoinsNamespaceAndIdAndIsRecognised) {
  EXPECT_EQ(ContainerKeyName("k8s.io", "abc-1"), "k8s.io--abc-1");
  EXPECT_TRUE(IsContainerKeyName("k8s.io--abc-1"));
  EXPECT_TRUE(IsContainerKeyName(ContainerKeyName("default", "x")));
  EXPECT_FALSE(IsContainerKeyName("default"));
  EXPECT_FALSE(IsContainerKeyName("--x"));
  EXPECT_FALSE(IsContainerKeyName("default--"));
  EXPECT_FALSE(IsContainerKeyName("a--b--c"));
  EXPECT_FALSE(IsContainerKeyName("a--../b"));
  EXPECT_FALSE(IsContainerKeyName("a---b"));
}

TEST(ContainerNamesTest, AbsoluteCleanPaths) {
  EXPECT_TRUE(IsAbsoluteClean("/"));
  EXPECT_TRUE(IsAbsoluteClean("/var/lib/beaconbox"));
  EXPECT_TRUE(IsAbsoluteClean("/a/./b"));
  EXPECT_TRUE(IsAbsoluteClean("/a/..b"));
  EXPECT_FALSE(IsAbsoluteClean(""));
  EXPECT_FALSE(IsAbsoluteClean("relative/dir"));
  EXPECT_FALSE(IsAbsoluteClean("/a/../b"));
  EXPECT_FALSE(IsAbsoluteClean("/a/.."));
  EXPECT_FALSE(IsAbsoluteClean("/a\0/b"s));
}

}  // namespace
}  // namespace beaconbox::plugins
