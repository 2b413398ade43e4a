// Bridge and TAP devices through libnl, in a private network namespace.
#include "plugins/net-bridge/links.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>

#include <cstring>

#include "common/base/unique_fd.h"
#include "tests/plugins/net-bridge/test_util.h"

namespace beaconbox::net {
namespace {

using testing::Shell;

class LinksTest : public testing::NetnsTest {
 protected:
  void SetUp() override {
    NetnsTest::SetUp();
    if (HasFatalFailure()) return;
    auto links = Links::Open();
    ASSERT_TRUE(links.ok()) << links.error().message;
    links_ = std::move(*links);
  }
  void TearDown() override {
    links_.reset();
    NetnsTest::TearDown();
  }
  std::unique_ptr<Links> links_;
};

TEST_F(LinksTest, CreatesTheBridgeWithItsGatewayAndBringsItUp) {
  auto ifindex = links_->EnsureBridge("beacon0", *ParseIpv4("10.88.0.1"), 16, 1500);
  ASSERT_TRUE(ifindex.ok()) << ifindex.error().message;
  EXPECT_GT(*ifindex, 0);
  std::string details = Shell("ip -d addr show dev beacon0");
  EXPECT_NE(details.find("bridge"), std::string::npos) << details;
  EXPECT_NE(details.find("inet 10.88.0.1/16"), std::string::npos) << details;
  EXPECT_NE(details.find(",UP"), std::string::npos) << details;
  // A second call finds everything in place.
  auto again = links_->EnsureBridge("beacon0", *ParseIpv4("10.88.0.1"), 16, 1500);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(*again, *ifindex);
}

TEST_F(LinksTest, AnExistingNonBridgeDeviceIsRefusedNotReplaced) {
  int exit_code = -1;
  Shell("ip link add beacon0 type veth peer name bbx-peer0", &exit_code);
  ASSERT_EQ(exit_code, 0);
  auto ifindex = links_->EnsureBridge("beacon0", *ParseIpv4("10.88.0.1"), 16, 1500);
  ASSERT_FALSE(ifindex.ok());
  EXPECT_EQ(ifindex.error().code, ErrorCode::kAlreadyExists);
  EXPECT_NE(ifindex.error().message.find("device beacon0 exists and is not a bridge"),
            std::string::npos)
      << ifindex.error().message;
  auto kind = links_->Kind("beacon0");
  ASSERT_TRUE(kind.ok());
  EXPECT_EQ(*kind, "veth");
}

TEST_F(LinksTest, TapIsCreatedAttachedAndRemoved) {
  auto bridge = links_->EnsureBridge("beacon0", *ParseIpv4("10.88.0.1"), 16, 1400);
  ASSERT_TRUE(bridge.ok()) << bridge.error().message;
  ASSERT_TRUE(links_->EnsureTap("beacon-0000abcd", *bridge, 1400, "beaconbox:/a/network.db").ok());
  std::string details = Shell("ip -d link show dev beacon-0000abcd");
  EXPECT_NE(details.find("master beacon0"), std::string::npos) << details;
  EXPECT_NE(details.find("mtu 1400"), std::string::npos) << details;
  EXPECT_NE(details.find("tun type tap"), std::string::npos) << details;
  EXPECT_NE(details.find("persist"), std::string::npos) << details;
  EXPECT_NE(details.find("alias beaconbox:/a/network.db"), std::string::npos) << details;
  // Idempotent.
  ASSERT_TRUE(links_->EnsureTap("beacon-0000abcd", *bridge, 1400, "beaconbox:/a/network.db").ok());
  // Another configuration's mark: not taken over.
  Status other = links_->EnsureTap("beacon-0000abcd", *bridge, 1400, "beaconbox:/b/network.db");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kAlreadyExists);
  EXPECT_NE(other.error().message.find("another network configuration"), std::string::npos)
      << other.error().message;
  auto alias = links_->Alias("beacon-0000abcd");
  ASSERT_TRUE(alias.ok());
  EXPECT_EQ(alias->value_or("none"), "beaconbox:/a/network.db");
  alias = links_->Alias("beacon-missing");
  ASSERT_TRUE(alias.ok());
  EXPECT_FALSE(alias->has_value());

  auto taps = links_->ListTaps("beacon-");
  ASSERT_TRUE(taps.ok());
  ASSERT_EQ(taps->size(), 1u);
  EXPECT_EQ(taps->front().name, "beacon-0000abcd");
  EXPECT_EQ(taps->front().master_ifindex, *bridge);
  EXPECT_EQ(taps->front().alias, "beaconbox:/a/network.db");
  EXPECT_FALSE(taps->front().in_use);

  {  // the VMM's view: open it by name, as QEMU's -netdev tap,ifname= does
    UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(tun.valid());
    ifreq request{};
    std::memcpy(request.ifr_name, "beacon-0000abcd", 16);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    ASSERT_EQ(::ioctl(tun.get(), TUNSETIFF, &request), 0) << std::strerror(errno);
    taps = links_->ListTaps("beacon-");
    ASSERT_TRUE(taps.ok());
    ASSERT_EQ(taps->size(), 1u);
    EXPECT_TRUE(taps->front().in_use);
  }

  auto deleted = links_->Delete("beacon-0000abcd");
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_TRUE(*deleted);
  int exit_code = 0;
  Shell("ip link show dev beacon-0000abcd", &exit_code);
  EXPECT_NE(exit_code, 0);
  auto again = links_->Delete("beacon-0000abcd");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
}

TEST_F(LinksTest, ADeviceOfAnotherKindWithTheTapsNameIsRefused) {
  auto bridge = links_->EnsureBridge("beacon0", *ParseIpv4("10.88.0.1"), 16, 1500);
  ASSERT_TRUE(bridge.ok());
  int exit_code = -1;
  Shell("ip link add beacon-00000001 type veth peer name bbx-peer1", &exit_code);
  ASSERT_EQ(exit_code, 0);
  Status status = links_->EnsureTap("beacon-00000001", *bridge, 1500, "beaconbox:/a/network.db");
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("not a TAP"), std::string::npos);
  auto taps = links_->ListTaps("beacon-");
  ASSERT_TRUE(taps.ok());
  EXPECT_TRUE(taps->empty());  // other kinds are never taken for our TAPs
}

}  // namespace
}  // namespace beaconbox::net
