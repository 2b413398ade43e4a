#include "host/shim/shim_flags.h"

#include <gtest/gtest.h>

namespace beaconbox::shim {
namespace {

TEST(ShimFlags, ParsesContainerdStartInvocation) {
  auto flags =
      ParseShimFlags({"-namespace", "default", "-address", "/run/containerd/containerd.sock",
                      "-publish-binary", "/usr/bin/containerd", "-id", "c1", "-debug", "start"});
  ASSERT_TRUE(flags.ok()) << flags.error().message;
  EXPECT_EQ(flags->namespace_name, "default");
  EXPECT_EQ(flags->containerd_address, "/run/containerd/containerd.sock");
  EXPECT_EQ(flags->publish_binary, "/usr/bin/containerd");
  EXPECT_EQ(flags->id, "c1");
  EXPECT_TRUE(flags->debug);
  EXPECT_EQ(flags->action, "start");
}

TEST(ShimFlags, AcceptsEqualsAndDoubleDashForms) {
  auto flags = ParseShimFlags({"--namespace=k8s.io", "-id=x", "-bundle", "/b", "delete"});
  ASSERT_TRUE(flags.ok());
  EXPECT_EQ(flags->namespace_name, "k8s.io");
  EXPECT_EQ(flags->id, "x");
  EXPECT_EQ(flags->bundle, "/b");
  EXPECT_EQ(flags->action, "delete");
}

TEST(ShimFlags, NoActionMeansServe) {
  auto flags = ParseShimFlags({"-namespace", "n", "-id", "x", "-address", "/a"});
  ASSERT_TRUE(flags.ok());
  EXPECT_TRUE(flags->action.empty());
}

TEST(ShimFlags, RefusesUnknownFlagMissingValueAndUnknownAction) {
  EXPECT_FALSE(ParseShimFlags({"-bogus", "1"}).ok());
  EXPECT_FALSE(ParseShimFlags({"-id"}).ok());
  auto bad_action = ParseShimFlags({"-id", "x", "explode"});
  ASSERT_FALSE(bad_action.ok());
  EXPECT_NE(bad_action.error().message.find("explode"), std::string::npos);
  EXPECT_FALSE(ParseShimFlags({"start", "extra"}).ok());
}

}  // namespace
}  // namespace beaconbox::shim
