// nftables tables, chains and rules, in a private network namespace.
#include "plugins/net-bridge/nft_rules.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "tests/plugins/net-bridge/test_util.h"

namespace beaconbox::net {
namespace {

using nlohmann::json;
using testing::Shell;

struct Ruleset {
  std::map<std::string, json> chains;  // "table/chain" -> chain object
  std::vector<json> rules;
  std::set<std::string> tables;
};

Ruleset ListRuleset() {
  Ruleset ruleset;
  int exit_code = -1;
  std::string text = Shell("nft -j list ruleset", &exit_code);
  EXPECT_EQ(exit_code, 0) << text;
  json parsed = json::parse(text, nullptr, false);
  if (parsed.is_discarded()) {
    ADD_FAILURE() << "nft -j output is not JSON: " << text;
    return ruleset;
  }
  for (const json& item : parsed["nftables"]) {
    if (item.contains("table")) ruleset.tables.insert(item["table"]["name"].get<std::string>());
    if (item.contains("chain")) {
      const json& chain = item["chain"];
      ruleset.chains[chain["table"].get<std::string>() + "/" + chain["name"].get<std::string>()] =
          chain;
    }
    if (item.contains("rule")) ruleset.rules.push_back(item["rule"]);
  }
  return ruleset;
}

class NftRulesTest : public testing::NetnsTest {
 protected:
  std::unique_ptr<NftRules> OpenRules(const BridgeConfig& config) {
    auto rules = NftRules::Open(config, state_dir_ + "/nft.lock");
    EXPECT_TRUE(rules.ok()) << rules.error().message;
    return rules.ok() ? std::move(*rules) : nullptr;
  }
  void TearDown() override { NetnsTest::TearDown(); }
};

TEST_F(NftRulesTest, TablesChainsAndPrioritiesRunBeforeUfw) {
  BridgeConfig config;
  auto rules = OpenRules(config);
  ASSERT_TRUE(rules);
  Status status = rules->Ensure();
  ASSERT_TRUE(status.ok()) << status.error().message;
  Ruleset ruleset = ListRuleset();
  ASSERT_TRUE(ruleset.chains.count("beacon_runner_filter/forward"));
  ASSERT_TRUE(ruleset.chains.count("beacon_runner_nat/postrouting"));
  const json& forward = ruleset.chains["beacon_runner_filter/forward"];
  EXPECT_EQ(forward["family"], "inet");  // one rule set for IPv4 and IPv6
  EXPECT_EQ(forward["type"], "filter");
  EXPECT_EQ(forward["hook"], "forward");
  EXPECT_LT(forward["prio"].get<int>(), 0);  // UFW (iptables-nft) filter: 0
  const json& postrouting = ruleset.chains["beacon_runner_nat/postrouting"];
  EXPECT_EQ(postrouting["type"], "nat");
  EXPECT_EQ(postrouting["hook"], "postrouting");
  EXPECT_LT(postrouting["prio"].get<int>(), 100);  // UFW srcnat: 100
  ASSERT_EQ(ruleset.rules.size(), 4u);
  std::string text = Shell("nft list ruleset");
  EXPECT_NE(text.find("ct state established,related accept"), std::string::npos) << text;
  EXPECT_NE(text.find("iifname \"beacon0\" accept"), std::string::npos) << text;
  EXPECT_NE(text.find("oifname \"beacon0\" accept"), std::string::npos) << text;
  EXPECT_NE(text.find("ip saddr 10.88.0.0/16 oifname != \"beacon0\" masquerade"), std::string::npos)
      << text;
}

TEST_F(NftRulesTest, RepeatedEnsureNeverDuplicatesAndHealsDuplicates) {
  BridgeConfig config;
  auto rules = OpenRules(config);
  ASSERT_TRUE(rules);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(rules->Ensure().ok());
  // Another instance (another shim) sees the rules too.
  auto other = OpenRules(config);
  ASSERT_TRUE(other);
  ASSERT_TRUE(other->Ensure().ok());
  EXPECT_EQ(ListRuleset().rules.size(), 4u);

  int exit_code = -1;
  Shell(
      "nft add rule inet beacon_runner_filter forward iifname beacon0 accept comment "
      "'\"beaconbox:beacon0:from-bridge\"'",
      &exit_code);
  ASSERT_EQ(exit_code, 0);
  ASSERT_EQ(ListRuleset().rules.size(), 5u);
  ASSERT_TRUE(rules->Ensure().ok());
  EXPECT_EQ(ListRuleset().rules.size(), 4u);

  Shell("nft flush chain inet beacon_runner_nat postrouting", &exit_code);
  ASSERT_EQ(exit_code, 0);
  ASSERT_TRUE(rules->Ensure().ok());
  EXPECT_EQ(ListRuleset().rules.size(), 4u);
}

TEST_F(NftRulesTest, TwoBridgesShareTheTablesAndRemoveOnlyTheirOwnRules) {
  BridgeConfig first, second;
  second.bridge = "beacon1";
  second.subnet = *ParseSubnet("10.89.0.0/16");
  auto rules_first = OpenRules(first);
  auto rules_second = OpenRules(second);
  ASSERT_TRUE(rules_first && rules_second);
  ASSERT_TRUE(rules_first->Ensure().ok());
  ASSERT_TRUE(rules_second->Ensure().ok());
  EXPECT_EQ(ListRuleset().rules.size(), 8u);

  auto not_idle = rules_first->RemoveIfIdle([] { return Result<bool>(false); });
  ASSERT_TRUE(not_idle.ok());
  EXPECT_FALSE(*not_idle);
  EXPECT_EQ(ListRuleset().rules.size(), 8u);

  auto removed = rules_first->RemoveIfIdle([] { return Result<bool>(true); });
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_TRUE(*removed);
  Ruleset ruleset = ListRuleset();
  EXPECT_EQ(ruleset.rules.size(), 4u);
  EXPECT_TRUE(ruleset.tables.count("beacon_runner_filter"));

  removed = rules_second->RemoveIfIdle([] { return Result<bool>(true); });
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  ruleset = ListRuleset();
  EXPECT_TRUE(ruleset.rules.empty());
  EXPECT_FALSE(ruleset.tables.count("beacon_runner_filter"));
  EXPECT_FALSE(ruleset.tables.count("beacon_runner_nat"));
}

TEST_F(NftRulesTest, Ipv6MasqueradeOnlyWhenAskedAndNoIpv4RuleInIpv6OnlyMode) {
  BridgeConfig config;
  config.ipv6_masquerade = true;
  auto rules = OpenRules(config);
  ASSERT_TRUE(rules);
  ASSERT_TRUE(rules->Ensure().ok());
  std::string text = Shell("nft list ruleset");
  EXPECT_NE(text.find("ip6 saddr fd57:dba9:ddb6::/64 oifname != \"beacon0\" masquerade"),
            std::string::npos)
      << text;
  EXPECT_EQ(ListRuleset().rules.size(), 5u);

  // The same bridge reconfigured IPv6-only without IPv6 masquerade: both masquerade
  // rules go, the forward rules stay.
  BridgeConfig v6_only;
  v6_only.ipv4 = false;
  auto rules_v6 = OpenRules(v6_only);
  ASSERT_TRUE(rules_v6);
  ASSERT_TRUE(rules_v6->Ensure().ok());
  text = Shell("nft list ruleset");
  EXPECT_EQ(text.find("masquerade"), std::string::npos) << text;
  EXPECT_EQ(ListRuleset().rules.size(), 3u);
}

TEST_F(NftRulesTest, UpgradeRemovesTheOlderVersionsIpFamilyTables) {
  // What an older plugin left: family ip tables with this bridge's rules, and a second
  // table holding an admin's rule next to ours.
  int exit_code = -1;
  const std::string old_rules = state_dir_ + "/old-rules.nft";
  std::ofstream(old_rules)
      << "table ip beacon_runner_filter {\n"
         " chain forward { type filter hook forward priority filter - 10; policy accept;\n"
         "  ct state established,related accept comment \"beaconbox:beacon0:established\"\n"
         "  iifname \"beacon0\" accept comment \"beaconbox:beacon0:from-bridge\"\n"
         "  oifname \"beacon0\" accept comment \"beaconbox:beacon0:to-bridge\"\n"
         " }\n"
         "}\n"
         "table ip beacon_runner_nat {\n"
         " chain postrouting { type nat hook postrouting priority srcnat - 10; policy accept;\n"
         "  ip saddr 10.88.0.0/16 oifname != \"beacon0\" masquerade comment "
         "\"beaconbox:beacon0:masquerade\"\n"
         "  ip saddr 10.99.0.0/16 masquerade comment \"admin\"\n"
         " }\n"
         "}\n";
  std::string out = Shell("nft -f " + old_rules, &exit_code);
  ASSERT_EQ(exit_code, 0) << out;
  BridgeConfig config;
  auto rules = OpenRules(config);
  ASSERT_TRUE(rules);
  Status status = rules->Ensure();
  ASSERT_TRUE(status.ok()) << status.error().message;
  Shell("nft list table ip beacon_runner_filter", &exit_code);
  EXPECT_NE(exit_code, 0) << "the old filter table (only ours in it) is still there";
  std::string nat = Shell("nft list table ip beacon_runner_nat", &exit_code);
  EXPECT_EQ(exit_code, 0) << "the old nat table held an admin rule: it stays";
  EXPECT_EQ(nat.find("beaconbox:"), std::string::npos) << nat;
  EXPECT_NE(nat.find("admin"), std::string::npos) << nat;
  std::string inet = Shell("nft list table inet beacon_runner_filter", &exit_code);
  EXPECT_EQ(exit_code, 0) << inet;
  EXPECT_NE(inet.find("beaconbox:beacon0:from-bridge"), std::string::npos) << inet;
}

}  // namespace
}  // namespace beaconbox::net
