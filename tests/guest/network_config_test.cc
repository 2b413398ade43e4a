#include "guest/vminitd/network_config.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

namespace beaconbox::guest {
namespace {

TEST(NetworkTest, Cidr4) {
  auto cidr = ParseCidr4("10.88.0.2/16");
  ASSERT_TRUE(cidr.ok());
  EXPECT_EQ(cidr->prefix, 16u);
  const unsigned char* addr = reinterpret_cast<const unsigned char*>(&cidr->address);
  const unsigned char* mask = reinterpret_cast<const unsigned char*>(&cidr->netmask);
  EXPECT_EQ(addr[0], 10);
  EXPECT_EQ(addr[3], 2);
  EXPECT_EQ(mask[0], 255);
  EXPECT_EQ(mask[1], 255);
  EXPECT_EQ(mask[2], 0);
  EXPECT_EQ(ParseCidr4("0.0.0.0/0")->netmask, 0u);
  for (const char* bad :
       {"10.0.0.1", "10.0.0.1/33", "10.0.0.1/", "x/8", "fe80::1/64", "10.0.0.1/8x"}) {
    EXPECT_FALSE(ParseCidr4(bad).ok()) << bad;
  }
}

TEST(NetworkTest, Cidr6AndWhatTheGuestRefusesFromTheHost) {
  auto cidr = ParseCidr6("fd57:dba9:ddb6::100/64", true);
  ASSERT_TRUE(cidr.ok()) << cidr.error().message;
  EXPECT_EQ(cidr->prefix, 64u);
  EXPECT_EQ(cidr->address[0], 0xfd);
  EXPECT_EQ(cidr->address[14], 0x01);
  EXPECT_EQ(cidr->address[15], 0x00);
  EXPECT_TRUE(ParseCidr6("::/0", false).ok());  // a default route's destination
  EXPECT_TRUE(LooksIpv6("::/0"));
  EXPECT_FALSE(LooksIpv6("10.88.0.2/16"));
  // Malformed, or not an address a NIC should get (hostile input from the host side).
  for (const char* bad :
       {"fd00::1", "fd00::1/129", "fd00::1/", "fd00::1/64x", "10.0.0.1/8", "fe80::1/64",
        "ff02::1/64", "::1/128", "::/0", "::ffff:10.0.0.1/96", "fd00::1/64\nx", "fd00:::1/64"}) {
    auto parsed = ParseCidr6(bad, true);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.error().message.find('\n'), std::string::npos) << parsed.error().message;
  }
  std::string long_text(4096, 'f');
  EXPECT_FALSE(ParseCidr6(long_text + "::1/64", true).ok());
}

TEST(NetworkTest, MacOfTheNicTheHostNames) {
  auto mac = ParseMac("02:Ab:cd:ef:01:23");
  ASSERT_TRUE(mac.ok()) << mac.error().message;
  EXPECT_EQ(*mac, (std::array<uint8_t, 6>{0x02, 0xab, 0xcd, 0xef, 0x01, 0x23}));
  for (const std::string& bad :
       std::vector<std::string>{"", "02:ab:cd:ef:01", "02:ab:cd:ef:01:234", "02-ab-cd-ef-01-23",
                                "02:ab:cd:ef:01:2g", "02:ab:cd:ef:01:+3", "01:00:5e:00:00:01",
                                "00:00:00:00:00:00", std::string("02:ab:cd:ef:01:2\n")}) {
    auto parsed = ParseMac(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.error().message.find('\n'), std::string::npos) << parsed.error().message;
  }
}

TEST(NetworkTest, ResolvConf) {
  auto text = RenderResolvConf({"10.0.0.1", "fd00::1"}, {"example.org", "corp"});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "nameserver 10.0.0.1\nnameserver fd00::1\nsearch example.org corp\n");
  EXPECT_FALSE(RenderResolvConf({"10.0.0.1\nnameserver 6.6.6.6"}, {}).ok());
  EXPECT_FALSE(RenderResolvConf({"dns.example"}, {}).ok());
  EXPECT_FALSE(RenderResolvConf({}, {"a b"}).ok());
}

}  // namespace
}  // namespace beaconbox::guest
