// The net-bridge plugin's C entry: the bbx_network_ops table and its translation
// to BridgeNetwork. The logic lives in bridge_network.cc and below.
#include <memory>
#include <new>

#include "beaconbox/plugin_support.hpp"
#include "plugins/common/abi_error.h"
#include "plugins/common/host_dirs.h"
#include "plugins/common/network_ops.h"
#include "plugins/net-bridge/bridge_network.h"
#include "plugins/net-bridge/prerequisites.h"

struct bbx_plugin {
  std::unique_ptr<beaconbox::net::BridgeNetwork> network;
};

namespace {

namespace pb = ::beaconbox::plugin::v1;
using beaconbox::Error;

// Documented in plugins/net-bridge/README.md.
const bbx_config_key kConfigKeys[] = {
    bbx::ConfigKey("bridge", BBX_CONFIG_STRING, "\"beacon0\"",
                   "bridge device the TAPs join; created if missing, an existing non-bridge "
                   "device is an error"),
    bbx::ConfigKey("subnet", BBX_CONFIG_STRING, "\"10.88.0.0/16\"",
                   "IPv4 address pool of the containers (CIDR, prefix 8..30)", "BEACON_SUBNET"),
    bbx::ConfigKey("gateway", BBX_CONFIG_STRING, "\"10.88.0.1\"",
                   "address of the bridge, the containers' default route; default: first host "
                   "of subnet"),
    bbx::ConfigKey("ipv4", BBX_CONFIG_BOOLEAN, "true",
                   "give containers an IPv4 address (false: IPv6-only)", "BEACON_IPV4"),
    bbx::ConfigKey("ipv6", BBX_CONFIG_BOOLEAN, "true",
                   "give containers an IPv6 address from ipv6_prefix (dual stack)", "BEACON_IPV6"),
    bbx::ConfigKey("ipv6_prefix", BBX_CONFIG_STRING, "\"fd57:dba9:ddb6::/64\"",
                   "IPv6 prefix of the containers (/64..126; default: a ULA derived from "
                   "\"beaconbox\")",
                   "BEACON_IPV6_PREFIX"),
    bbx::ConfigKey("ipv6_gateway", BBX_CONFIG_STRING, "\"<ipv6_prefix>::1\"",
                   "IPv6 address of the bridge, the containers' default route; below the "
                   "lease range (<prefix>::100 up, or ::2 up for /120 and longer)"),
    bbx::ConfigKey("ipv6_dns_servers", BBX_CONFIG_STRING_ARRAY, "[]",
                   "IPv6 nameservers written to the guest's resolv.conf"),
    bbx::ConfigKey("ipv6_masquerade", BBX_CONFIG_BOOLEAN, "false",
                   "masquerade IPv6 leaving the bridge (off: IPv6 is routed)"),
    bbx::ConfigKey("mtu", BBX_CONFIG_INTEGER, "1500",
                   "MTU of the bridge, the TAPs and the guest's eth0"),
    bbx::ConfigKey("dns_servers", BBX_CONFIG_STRING_ARRAY, "[]",
                   "nameservers written to the guest's resolv.conf"),
    bbx::ConfigKey("db_path", BBX_CONFIG_STRING, "\"<state_dir>/network.db\"",
                   "LMDB lease database file (seed: /var/lib/beacon/network.db)"),
    bbx::ConfigKey("reconcile_interval_seconds", BBX_CONFIG_INTEGER, "60",
                   "how often stale leases and TAPs are removed (0: only at the first attach)"),
    bbx::ConfigKey("remove_rules_when_idle", BBX_CONFIG_BOOLEAN, "false",
                   "remove this bridge's nftables rules when its last lease goes"),
    bbx::ConfigKey(
        "enable_ip_forward", BBX_CONFIG_BOOLEAN, "true",
        "turn on net.ipv4.ip_forward (and net.ipv6.conf.all.forwarding with ipv6) at the "
        "first attach"),
    bbx::ConfigKey("nft_filter_table", BBX_CONFIG_STRING, "\"beacon_runner_filter\"",
                   "nftables table (family inet) holding the forward chain"),
    bbx::ConfigKey("nft_nat_table", BBX_CONFIG_STRING, "\"beacon_runner_nat\"",
                   "nftables table (family inet) holding the postrouting masquerade chain"),
    bbx::ConfigKey("nft_bridge_table", BBX_CONFIG_STRING, "\"beacon_runner_bridge\"",
                   "nftables table (family bridge) holding each TAP's anti-spoofing chain"),
};

bbx_status Init(const bbx_host_services* host, bbx_bytes config_toml, bbx_plugin** out,
                bbx_error* error) {
  if (out == nullptr) return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "init: NULL out");
  auto config = beaconbox::net::ParseBridgeConfig(bbx::View(config_toml),
                                                  beaconbox::plugins::HostDirsOf(host).state_dir);
  if (!config.ok()) return beaconbox::plugins::Fail(config.error(), error);
  auto log = [host](beaconbox::net::LogLevel level, const std::string& message) {
    using beaconbox::net::LogLevel;
    bbx_log_level abi_level = level == LogLevel::kDebug  ? BBX_LOG_DEBUG
                              : level == LogLevel::kInfo ? BBX_LOG_INFO
                              : level == LogLevel::kWarn ? BBX_LOG_WARN
                                                         : BBX_LOG_ERROR;
    bbx::Log(host, abi_level, message);
  };
  auto* plugin = new (std::nothrow) bbx_plugin;
  if (plugin == nullptr) return bbx::Fail(error, BBX_ERR_INTERNAL, "out of memory");
  plugin->network = std::make_unique<beaconbox::net::BridgeNetwork>(std::move(*config), log);
  *out = plugin;
  return BBX_OK;
}

void Fini(bbx_plugin* plugin) { delete plugin; }

bbx_status Detach(bbx_plugin* plugin, bbx_bytes request_bytes, bbx_error* error) {
  pb::NetworkDetachRequest request;
  if (!beaconbox::plugins::ParseNetworkRequest(request_bytes, request, "NetworkDetachRequest",
                                               error)) {
    return BBX_ERR_INVALID_ARGUMENT;
  }
  auto status = plugin->network->Detach({request.namespace_(), request.container_id()});
  return status.ok() ? BBX_OK : beaconbox::plugins::Fail(status.error(), error);
}

bbx_status Check(bbx_plugin* plugin, bbx_sink report_sink, bbx_error* error) {
  return bbx::WriteSink(
      report_sink,
      beaconbox::net::CheckPrerequisites(plugin->network->config()).SerializeAsString(), error);
}

const bbx_plugin_common_ops kCommonOps = {
    .struct_size = sizeof(bbx_plugin_common_ops),
    .init = Init,
    .fini = Fini,
    .check = Check,
    .capabilities = nullptr,  // a network plugin has no optional capability yet
};

constexpr bbx_network_ops kOps = beaconbox::plugins::NetworkOpsTable<bbx_plugin>(Detach);

}  // namespace

extern "C" BBX_EXPORT bbx_status bbx_plugin_entry(const bbx_entry_request* request,
                                                  bbx_entry_response* response, bbx_error* error) {
  return bbx::AnswerEntry(request, response, error, "bridge", BEACONBOX_PLUGIN_VERSION, kConfigKeys,
                          kCommonOps, kOps);
}
