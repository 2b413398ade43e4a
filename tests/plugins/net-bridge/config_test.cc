#include "plugins/net-bridge/config.h"

#include <gtest/gtest.h>

namespace beaconbox::net {
namespace {

// A config that must fail with one line holding `expected`.
struct RejectCase {
  const char* toml;
  const char* expected;
};

template <size_t N>
void ExpectRejected(const RejectCase (&cases)[N]) {
  for (const RejectCase& test : cases) {
    auto config = ParseBridgeConfig(test.toml, "/var/lib/beacon");
    ASSERT_FALSE(config.ok()) << test.toml;
    EXPECT_NE(config.error().message.find(test.expected), std::string::npos)
        << test.toml << " -> " << config.error().message;
    EXPECT_EQ(config.error().message.find('\n'), std::string::npos);
  }
}

TEST(BridgeConfigTest, DefaultsFollowTheSeed) {
  auto config = ParseBridgeConfig("", "/var/lib/beacon");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->bridge, "beacon0");
  EXPECT_EQ(config->subnet.ToString(), "10.88.0.0/16");
  EXPECT_EQ(FormatIpv4(config->gateway), "10.88.0.1");
  EXPECT_EQ(config->mtu, 1500u);
  EXPECT_EQ(config->db_path, "/var/lib/beacon/network.db");
  EXPECT_EQ(config->reconcile_interval_seconds, 60);
  EXPECT_FALSE(config->remove_rules_when_idle);
  EXPECT_EQ(config->nft_filter_table, "beacon_runner_filter");
  EXPECT_EQ(config->nft_nat_table, "beacon_runner_nat");
  EXPECT_EQ(config->nft_bridge_table, "beacon_runner_bridge");
  EXPECT_EQ(config->PoolSize(), 65533u);
  EXPECT_TRUE(config->ipv4);
  EXPECT_TRUE(config->ipv6);  // dual stack by default
  EXPECT_FALSE(config->ipv6_masquerade);
  // The documented default: FNV-1a-64("beaconbox") = 0x09f0a857dba9ddb6, low 40 bits
  // 57:dba9:ddb6 as the ULA global ID.
  EXPECT_EQ(config->prefix6.ToString(), "fd57:dba9:ddb6::/64");
  EXPECT_EQ(FormatIpv6(config->gateway6), "fd57:dba9:ddb6::1");
  LeaseRange6 range = LeaseRangeOf(config->prefix6);
  EXPECT_EQ(FormatIpv6(range.first), "fd57:dba9:ddb6::100");
  EXPECT_EQ(FormatIpv6(range.last), "fd57:dba9:ddb6:0:ffff:ffff:ffff:ffff");
}

TEST(BridgeConfigTest, Ipv6KeysAndIpv6OnlyMode) {
  auto config = ParseBridgeConfig(R"(
ipv4 = false
ipv6_prefix = "2001:db8:1:2::/120"
ipv6_gateway = "2001:db8:1:2::1"
ipv6_dns_servers = ["2001:db8::53"]
dns_servers = ["10.0.0.53"]
ipv6_masquerade = true
)",
                                  "/var/lib/beacon");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_FALSE(config->ipv4);
  EXPECT_TRUE(config->ipv6);
  EXPECT_TRUE(config->ipv6_masquerade);
  EXPECT_EQ(config->prefix6.ToString(), "2001:db8:1:2::/120");
  // A /120 keeps only ::0 and ::1 from the range: 254 leases.
  EXPECT_EQ(config->PoolSize6(), 254u);
  EXPECT_EQ(config->dns_servers, (std::vector<std::string>{"10.0.0.53", "2001:db8::53"}));
  EXPECT_TRUE(ParseBridgeConfig("ipv6_prefix = \"fd00:1::/64\"", "/var/lib/beacon").ok());
  EXPECT_TRUE(ParseBridgeConfig("ipv6_prefix = \"fd00:1::/126\"", "/var/lib/beacon").ok());
}

TEST(BridgeConfigTest, RejectsBadIpv6ValuesWithTheKeyNamed) {
  const RejectCase cases[] = {
      {"ipv6_prefix = \"10.88.0.0/16\"", "config key ipv6_prefix: \"10.88.0.0/16\" is not an IPv6"},
      {"ipv6_prefix = \"fd00::\"", "config key ipv6_prefix: \"fd00::\" needs a prefix length"},
      {"ipv6_prefix = \"fd00::/48\"",
       "config key ipv6_prefix: \"fd00::/48\": prefix length must be 64..126"},
      {"ipv6_prefix = \"fd00::/127\"", "config key ipv6_prefix"},
      {"ipv6_prefix = \"fd00::1/64\"",
       "config key ipv6_prefix: \"fd00::1/64\" has host bits set: use fd00::/64"},
      {"ipv6_prefix = \"fe80::/64\"", "config key ipv6_prefix: \"fe80::/64\" is in link-local"},
      {"ipv6_prefix = \"ff02::/64\"", "config key ipv6_prefix: \"ff02::/64\" is in multicast"},
      {"ipv6_prefix = \"::ffff:0:0/96\"", "config key ipv6_prefix"},
      {"ipv6_gateway = \"fd00::1\"",
       "config key ipv6_gateway: fd00::1 is not a host address of fd57:dba9:ddb6::/64"},
      {"ipv6_gateway = \"fd57:dba9:ddb6::\"", "config key ipv6_gateway"},
      {"ipv6_gateway = \"fd57:dba9:ddb6::100\"",
       "config key ipv6_gateway: fd57:dba9:ddb6::100 is inside the lease range"},
      {"ipv6_gateway = \"10.88.0.1\"", "config key ipv6_gateway"},
      {"ipv6_dns_servers = [\"10.0.0.1\"]",
       "config key ipv6_dns_servers: \"10.0.0.1\" is not an IPv6"},
      {"ipv4 = false\nipv6 = false", "config key ipv4: ipv4 and ipv6 are both false"},
      {"ipv6 = \"maybe\"", "config key ipv6: must be true or false"},
  };
  ExpectRejected(cases);
}

TEST(BridgeConfigTest, ParsesEveryKey) {
  auto config = ParseBridgeConfig(R"(
bridge = "br-test"
subnet = "192.168.50.0/24"
gateway = "192.168.50.254"
mtu = 9000
dns_servers = ["1.1.1.1", "9.9.9.9"]
db_path = "/tmp/x/leases.db"
reconcile_interval_seconds = 5
remove_rules_when_idle = true
enable_ip_forward = false
nft_filter_table = "f"
nft_nat_table = "n"
nft_bridge_table = "b"
)",
                                  "");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->bridge, "br-test");
  EXPECT_EQ(FormatIpv4(config->gateway), "192.168.50.254");
  EXPECT_EQ(config->mtu, 9000u);
  EXPECT_EQ(config->dns_servers, (std::vector<std::string>{"1.1.1.1", "9.9.9.9"}));
  EXPECT_EQ(config->db_path, "/tmp/x/leases.db");
  EXPECT_TRUE(config->remove_rules_when_idle);
  EXPECT_FALSE(config->enable_ip_forward);
  EXPECT_EQ(config->nft_bridge_table, "b");
  EXPECT_EQ(config->PoolSize(), 253u);
}

TEST(BridgeConfigTest, RejectsBadValuesWithTheKeyNamed) {
  const RejectCase cases[] = {
      {"subnet = \"10.88.0.1/16\"", "host bits"},
      {"subnet = \"10.88.0.0\"", "prefix length"},
      {"subnet = \"10.88.0.0/31\"", "8..30"},
      {"gateway = \"10.89.0.1\"", "gateway"},
      {"gateway = \"10.88.255.255\"", "gateway"},
      {"bridge = \"beacon-x\"", "bridge"},
      {"bridge = \"a/b\"", "bridge"},
      {"bridge = \"much-too-long-name\"", "bridge"},
      {"mtu = 10", "mtu"},
      {"mtu = \"1500\"", "mtu"},
      {"dns_servers = [\"x\"]", "dns_servers"},
      {"db_path = \"relative\"", "db_path"},
      {"nft_nat_table = \"x y\"", "nft_nat_table"},
      {"nft_bridge_table = \"a-b\"", "nft_bridge_table"},
      {"nosuchkey = 1", "unknown key"},
      {"bridge = ", "config"},
  };
  ExpectRejected(cases);
}

}  // namespace
}  // namespace beaconbox::net
