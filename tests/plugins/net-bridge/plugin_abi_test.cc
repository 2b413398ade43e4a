// The built plugins/net-bridge.so through its C ABI only, as the host and
// beaconbox-ctl (`net leases`, `gc`) use it.
#include "beaconbox/plugin_abi.h"

#include <filesystem>
#include <map>
#include <set>

#include "beaconbox/plugin/v1/network.pb.h"
#include "beaconbox/plugin/v1/plugin.pb.h"
#include "tests/plugins/common/built_plugin_fixture.h"
#include "tests/plugins/net-bridge/test_util.h"

namespace beaconbox::net {
namespace {

namespace pb = ::beaconbox::plugin::v1;
using testing::Shell;

int CollectBytes(void* context, const uint8_t* data, size_t len) {
  static_cast<std::string*>(context)->assign(reinterpret_cast<const char*>(data), len);
  return 0;
}

class PluginAbiTest : public plugins::testing::BuiltPluginFixture<testing::NetnsTest> {
 protected:
  void SetUp() override {
    NetnsTest::SetUp();
    if (HasFatalFailure()) return;
    LoadPlugin("net-bridge.so", BBX_PLUGIN_KIND_NETWORK);
    if (HasFatalFailure()) return;
    ops_ = static_cast<const bbx_network_ops*>(response_.kind_ops);
    host_.state_dir = state_dir_.c_str();
    host_.run_dir = state_dir_.c_str();
    host_.log_dir = state_dir_.c_str();
    host_.share_dir = state_dir_.c_str();
  }

  const bbx_network_ops* ops_ = nullptr;
};

TEST_F(PluginAbiTest, EntryDescribesTheConfigSchema) {
  EXPECT_STREQ(response_.name, "bridge");
  std::set<std::string> keys;
  for (size_t i = 0; i < response_.config_key_count; ++i) {
    keys.insert(response_.config_keys[i].name);
    EXPECT_NE(response_.config_keys[i].description, nullptr);
  }
  for (const char* key : {"bridge", "subnet", "gateway", "mtu", "dns_servers", "db_path",
                          "reconcile_interval_seconds", "remove_rules_when_idle",
                          "nft_filter_table", "nft_nat_table"}) {
    EXPECT_TRUE(keys.count(key)) << key;
  }
  EXPECT_NE(ops_->reconcile, nullptr);
  EXPECT_NE(ops_->list_leases, nullptr);
}

// The keys an operator overrides from containerd's environment, as the IPv4 subnet
// is (the plugin host applies them; booleans take 1/true/0/false).
TEST_F(PluginAbiTest, TheAddressFamilyKeysNameTheirEnvironmentVariables) {
  std::map<std::string, std::string> env_of;
  for (size_t i = 0; i < response_.config_key_count; ++i) {
    const bbx_config_key& key = response_.config_keys[i];
    if (key.env_var != nullptr) env_of[key.name] = key.env_var;
    if (key.name == std::string("ipv4") || key.name == std::string("ipv6")) {
      EXPECT_EQ(key.type, BBX_CONFIG_BOOLEAN) << key.name;
    }
  }
  EXPECT_EQ(env_of["subnet"], "BEACON_SUBNET");
  EXPECT_EQ(env_of["ipv6_prefix"], "BEACON_IPV6_PREFIX");
  EXPECT_EQ(env_of["ipv4"], "BEACON_IPV4");
  EXPECT_EQ(env_of["ipv6"], "BEACON_IPV6");
}

TEST_F(PluginAbiTest, InitChangesNothingAndRejectsBadConfig) {
  ASSERT_EQ(Init("subnet = \"10.88.0.0/33\""), BBX_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(message_).find("subnet"), std::string::npos) << message_;
  ASSERT_EQ(Init(""), BBX_OK) << message_;
  EXPECT_FALSE(std::filesystem::exists(state_dir_ + "/network.db"));
  int exit_code = -1;
  Shell("ip link show dev beacon0", &exit_code);
  EXPECT_NE(exit_code, 0);
  EXPECT_EQ(Shell("nft list ruleset"), "");
}

TEST_F(PluginAbiTest, AttachListReconcileDetach) {
  ASSERT_EQ(Init("dns_servers = [\"10.88.0.1\"]\nreconcile_interval_seconds = 1"), BBX_OK)
      << message_;
  pb::NetworkAttachRequest request;
  request.set_container_id("abi-test");
  request.set_namespace_("default");
  std::string request_bytes = request.SerializeAsString();
  std::string result;
  bbx_sink sink{&result, CollectBytes};
  ASSERT_EQ(
      ops_->attach(plugin_,
                   {reinterpret_cast<const uint8_t*>(request_bytes.data()), request_bytes.size()},
                   sink, &error_),
      BBX_OK)
      << message_;
  pb::NetworkAttachment attachment;
  ASSERT_TRUE(attachment.ParseFromString(result));
  EXPECT_EQ(attachment.addresses(0).address(), "10.88.0.2");
  EXPECT_EQ(attachment.dns_servers(0), "10.88.0.1");
  EXPECT_TRUE(std::filesystem::exists(state_dir_ + "/network.db"));

  ASSERT_EQ(ops_->list_leases(plugin_, sink, &error_), BBX_OK) << message_;
  pb::LeaseList leases;
  ASSERT_TRUE(leases.ParseFromString(result));
  ASSERT_EQ(leases.leases_size(), 1);
  EXPECT_EQ(leases.leases(0).tap_name(), attachment.tap_name());

  ASSERT_EQ(ops_->reconcile(plugin_, sink, &error_), BBX_OK) << message_;
  pb::ReconcileReport report;
  ASSERT_TRUE(report.ParseFromString(result));
  EXPECT_EQ(report.released_leases_size(), 0);

  pb::NetworkDetachRequest detach;
  detach.set_container_id("abi-test");
  detach.set_namespace_("default");
  std::string detach_bytes = detach.SerializeAsString();
  bbx_bytes detach_request{reinterpret_cast<const uint8_t*>(detach_bytes.data()),
                           detach_bytes.size()};
  ASSERT_EQ(ops_->detach(plugin_, detach_request, &error_), BBX_OK) << message_;
  ASSERT_EQ(ops_->detach(plugin_, detach_request, &error_), BBX_OK) << message_;
  ASSERT_EQ(ops_->list_leases(plugin_, sink, &error_), BBX_OK);
  ASSERT_TRUE(leases.ParseFromString(result));
  EXPECT_EQ(leases.leases_size(), 0);

  bbx_bytes garbage{reinterpret_cast<const uint8_t*>("\xff\xff\xff"), 3};
  EXPECT_EQ(ops_->attach(plugin_, garbage, sink, &error_), BBX_ERR_INVALID_ARGUMENT);
}

// The common hook `check`: its own prerequisites, one line each, changing nothing.
TEST_F(PluginAbiTest, CheckReportsItsOwnPrerequisitesWithoutChangingTheSystem) {
  ASSERT_EQ(Init(""), BBX_OK) << message_;
  ASSERT_NE(common_->check, nullptr);
  std::string result;
  bbx_sink sink{&result, CollectBytes};
  ASSERT_EQ(common_->check(plugin_, sink, &error_), BBX_OK) << message_;
  pb::CheckReport report;
  ASSERT_TRUE(report.ParseFromString(result));
  std::set<std::string> what;
  for (const auto& line : report.lines()) {
    what.insert(line.what());
    EXPECT_EQ(line.level(), pb::CHECK_OK) << line.what() << ": " << line.detail();  // root, netns
  }
  EXPECT_EQ(what, (std::set<std::string>{"CAP_NET_ADMIN", "tun", "lease db", "ip_forward",
                                         "ipv6 forwarding"}));
  EXPECT_FALSE(std::filesystem::exists(state_dir_ + "/network.db"));
  EXPECT_EQ(Shell("nft list ruleset"), "");
}

TEST_F(PluginAbiTest, ExhaustionCrossesTheAbiAsExhausted) {
  ASSERT_EQ(Init("subnet = \"10.77.0.0/30\""), BBX_OK) << message_;  // one address
  std::string result;
  bbx_sink sink{&result, CollectBytes};
  for (const char* id : {"first", "second"}) {
    pb::NetworkAttachRequest request;
    request.set_container_id(id);
    std::string bytes = request.SerializeAsString();
    bbx_status status = ops_->attach(
        plugin_, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, sink, &error_);
    if (std::string(id) == "first") {
      ASSERT_EQ(status, BBX_OK) << message_;
    } else {
      ASSERT_EQ(status, BBX_ERR_EXHAUSTED);
      EXPECT_NE(std::string(message_).find("exhausted"), std::string::npos) << message_;
    }
  }
}

}  // namespace
}  // namespace beaconbox::net
