#include "guest/vminitd/refresh.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace beaconbox::guest {
namespace {

constexpr int64_t kNow = int64_t{1795000000} * 1000000000;  // 2026-11

TEST(RefreshInputTest, AcceptsBoundedEntropyAndPlausibleTime) {
  EXPECT_TRUE(CheckRefreshInput(kMinRefreshEntropy, kNow).ok());
  EXPECT_TRUE(CheckRefreshInput(kMaxRefreshEntropy, kNow).ok());
}

TEST(RefreshInputTest, RefusesTooLittleOrTooMuchEntropy) {
  for (size_t size : {size_t{0}, kMinRefreshEntropy - 1, kMaxRefreshEntropy + 1, size_t{1} << 30}) {
    Status status = CheckRefreshInput(size, kNow);
    ASSERT_FALSE(status.ok()) << size;
    EXPECT_EQ(status.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(status.error().message.find("entropy"), std::string::npos);
  }
}

TEST(RefreshInputTest, RefusesImplausibleTime) {
  for (int64_t time : {int64_t{0}, int64_t{-1}, int64_t{1000000000} * 1000000000,
                       int64_t{9000000000} * 1000000000}) {
    Status status = CheckRefreshInput(64, time);
    ASSERT_FALSE(status.ok()) << time;
    EXPECT_NE(status.error().message.find("time"), std::string::npos);
  }
}

TEST(RefreshEntropyTest, RefusesEmptyAndOversizedWithoutTouchingTheDevice) {
  EXPECT_FALSE(AddEntropyAndReseed("", "/nonexistent/random").ok());
  EXPECT_FALSE(AddEntropyAndReseed(std::string(kMaxRefreshEntropy + 1, 'x'), "/nonexistent").ok());
}

TEST(RefreshEntropyTest, MissingDeviceIsOneLineError) {
  Status status = AddEntropyAndReseed(std::string(64, 'x'), "/nonexistent/random");
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("/nonexistent/random"), std::string::npos);
  EXPECT_EQ(status.error().message.find('\n'), std::string::npos);
}

TEST(RefreshEntropyTest, UnprivilegedCallerIsRefusedByTheKernel) {
  if (::geteuid() == 0) GTEST_SKIP() << "as root the ioctl would change this host's pool";
  Status status = AddEntropyAndReseed(std::string(64, 'x'));
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("RNDADDENTROPY"), std::string::npos);
}

}  // namespace
}  // namespace beaconbox::guest
