#include "guest/vminitd/validation.h"

#include <gtest/gtest.h>

namespace beaconbox::guest {
namespace {

TEST(IdTest, AcceptsContainerdStyleIds) {
  const std::string longest(128, 'x');
  for (const std::string& good :
       std::vector<std::string>{"a", "redis", "c0ffee_1.2-3", "ABC", longest}) {
    EXPECT_TRUE(ValidateId(good, "container id").ok()) << good;
  }
}

TEST(IdTest, RejectsTraversalAndOddCharacters) {
  for (const std::string& bad :
       std::vector<std::string>{"", ".", "..", "../x", "a/b", "-x", ".hidden", "a b", "a\nb",
                                std::string("a\0b", 3), std::string(129, 'x'), std::string("é")}) {
    Status s = ValidateId(bad, "container id");
    EXPECT_FALSE(s.ok()) << bad;
    if (!s.ok()) {
      EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument);
      EXPECT_NE(s.error().message.find("container id"), std::string::npos);
    }
  }
}

TEST(RelativePathTest, Traversal) {
  EXPECT_TRUE(ValidateRelativePath("rootfs").ok());
  EXPECT_TRUE(ValidateRelativePath("rootfs/data/x").ok());
  for (const char* bad : {"", "/abs", "..", "a/../b", "a//b", "./a", "a/", "a/."}) {
    EXPECT_FALSE(ValidateRelativePath(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace beaconbox::guest
