#include "plugins/net-bridge/config.h"

#include <gtest/gtest.h>

namespace beaconbox::net {
namespace {

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
  struct Case {
    const char* toml;
    const char* expected;
  } cases[] = {
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
  for (const Case& test : cases) {
    auto config = ParseBridgeConfig(test.toml, "/var/lib/beacon");
    ASSERT_FALSE(config.ok()) << test.toml;
    EXPECT_NE(config.error().message.find(test.expected), std::string::npos)
        << test.toml << " -> " << config.error().message;
    EXPECT_EQ(config.error().message.find('\n'), std::string::npos);
  }
}

}  // namespace
}  // namespace beaconbox::net
