// The net-cni plugin's C entry: the bbx_network_ops table and its translation to
// CniNetwork. The logic lives in cni_network.cc and below.
#include <memory>
#include <new>

#include "beaconbox/plugin_support.hpp"
#include "plugins/common/abi_error.h"
#include "plugins/common/host_dirs.h"
#include "plugins/common/network_ops.h"
#include "plugins/net-cni/cni_network.h"

struct bbx_plugin {
  std::unique_ptr<beaconbox::cni::CniNetwork> network;
};

namespace {

namespace pb = ::beaconbox::plugin::v1;

// Documented in plugins/net-cni/README.md.
const bbx_config_key kConfigKeys[] = {
    bbx::ConfigKey("conf_dir", BBX_CONFIG_STRING, "\"/etc/cni/net.d\"",
                   "directory of CNI network configuration lists", "BEACON_CNI_CONF_DIR"),
    bbx::ConfigKey("bin_dir", BBX_CONFIG_STRING,
                   "\"/opt/cni/bin:/usr/lib/cni:/usr/lib/beaconbox/cni\"",
                   "CNI plugin binaries, a : separated list searched in order (also CNI_PATH)",
                   "BEACON_CNI_BIN_DIR"),
    bbx::ConfigKey("network_name", BBX_CONFIG_STRING, "\"beacon-net\"",
                   "the \"name\" of the network configuration list to run", "BEACON_CNI_NETWORK"),
    bbx::ConfigKey("ifname", BBX_CONFIG_STRING, "\"eth0\"",
                   "CNI_IFNAME: the CNI interface in the container's network namespace"),
    bbx::ConfigKey("tap_name", BBX_CONFIG_STRING, "\"tap0\"",
                   "the TAP made next to it when the list has no tc-redirect-tap"),
    bbx::ConfigKey("cache_dir", BBX_CONFIG_STRING, "\"<state_dir>/cni\"",
                   "where each attachment's config and result are kept for DEL"),
    bbx::ConfigKey("netns_dir", BBX_CONFIG_STRING, "\"<run_dir>/netns\"",
                   "where the plugin pins network namespaces it makes"),
    bbx::ConfigKey("timeout_seconds", BBX_CONFIG_INTEGER, "60",
                   "how long one CNI plugin invocation may take before it is killed"),
    bbx::ConfigKey("configured_netns", BBX_CONFIG_BOOLEAN, "false",
                   "the spec's network namespace is configured already (CRI ran CNI): run no "
                   "list, couple the VM to ifname as it is there",
                   "BEACON_CNI_CONFIGURED_NETNS"),
};

bbx_status Init(const bbx_host_services* host, bbx_bytes config_toml, bbx_plugin** out,
                bbx_error* error) {
  if (out == nullptr) return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "init: NULL out");
  const beaconbox::plugins::HostDirs dirs = beaconbox::plugins::HostDirsOf(host);
  auto config =
      beaconbox::cni::ParseCniConfig(bbx::View(config_toml), dirs.state_dir, dirs.run_dir);
  if (!config.ok()) return beaconbox::plugins::Fail(config.error(), error);
  auto log = [host](bool warning, const std::string& message) {
    bbx::Log(host, warning ? BBX_LOG_WARN : BBX_LOG_INFO, message);
  };
  auto* plugin = new (std::nothrow) bbx_plugin;
  if (plugin == nullptr) return bbx::Fail(error, BBX_ERR_INTERNAL, "out of memory");
  plugin->network = std::make_unique<beaconbox::cni::CniNetwork>(std::move(*config), log);
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
  auto status = plugin->network->Detach(request.namespace_(), request.container_id());
  return status.ok() ? BBX_OK : beaconbox::plugins::Fail(status.error(), error);
}

bbx_status Check(bbx_plugin* plugin, bbx_sink report_sink, bbx_error* error) {
  return bbx::WriteSink(report_sink, plugin->network->Check().SerializeAsString(), error);
}

const bbx_plugin_common_ops kCommonOps = {
    .struct_size = sizeof(bbx_plugin_common_ops),
    .init = Init,
    .fini = Fini,
    .check = Check,
    .capabilities = nullptr,
};

constexpr bbx_network_ops kOps = beaconbox::plugins::NetworkOpsTable<bbx_plugin>(Detach);

}  // namespace

extern "C" BBX_EXPORT bbx_status bbx_plugin_entry(const bbx_entry_request* request,
                                                  bbx_entry_response* response, bbx_error* error) {
  return bbx::AnswerEntry(request, response, error, "cni", BEACONBOX_PLUGIN_VERSION, kConfigKeys,
                          kCommonOps, kOps);
}
