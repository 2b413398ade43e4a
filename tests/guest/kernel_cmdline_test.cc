#include "guest/vminitd/kernel_cmdline.h"

#include <gtest/gtest.h>

namespace beaconbox::guest {
namespace {

TEST(CmdlineTest, ParsesKeysValuesAndQuotes) {
  auto params = ParseCmdline(
      "console=ttyS0 quiet beaconbox.channel=virtio-serial:beaconbox.agent "
      "x=\"a b\" console=hvc0\n");
  EXPECT_EQ(params["beaconbox.channel"], "virtio-serial:beaconbox.agent");
  EXPECT_EQ(params["x"], "a b");
  EXPECT_EQ(params["console"], "hvc0");  // the last one wins
  EXPECT_TRUE(params.count("quiet"));
  EXPECT_EQ(params["quiet"], "");
  EXPECT_TRUE(ParseCmdline("").empty());
}

TEST(CmdlineTest, ChannelSpecs) {
  auto serial = ParseChannelSpec("virtio-serial:beaconbox.agent");
  ASSERT_TRUE(serial.ok());
  EXPECT_EQ(serial->kind, ChannelSpec::Kind::kVirtioSerial);
  EXPECT_EQ(serial->port_name, "beaconbox.agent");
  auto vsock = ParseChannelSpec("vsock:1024");
  ASSERT_TRUE(vsock.ok());
  EXPECT_EQ(vsock->kind, ChannelSpec::Kind::kVsock);
  EXPECT_EQ(vsock->vsock_port, 1024u);
  for (const char* bad : {"", "vsock:", "vsock:0", "vsock:12x", "vsock:99999999999",
                          "virtio-serial:", "virtio-serial:../x", "tcp:1"}) {
    auto parsed = ParseChannelSpec(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
    }
  }
}

TEST(CmdlineTest, PageReportingOrder) {
  EXPECT_EQ(PageReportingOrder(ParseCmdline("quiet")), -1);
  EXPECT_EQ(PageReportingOrder(ParseCmdline("page_reporting.page_reporting_order=0")), 0);
  EXPECT_EQ(PageReportingOrder(ParseCmdline(
                "page_reporting.page_reporting_order=0 page_reporting.page_reporting_order=5")),
            5);
  EXPECT_EQ(PageReportingOrder(ParseCmdline("page_reporting.page_reporting_order=10")), 10);
  for (const char* bad : {"11", "-1", "", "3x", "999", " 3"}) {
    EXPECT_EQ(PageReportingOrder({{"page_reporting.page_reporting_order", bad}}), -1) << bad;
  }
}

}  // namespace
}  // namespace beaconbox::guest
