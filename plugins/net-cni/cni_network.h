// The net-cni plugin's logic: a container's network is a CNI network configuration
// list run in the container's network namespace (the one the OCI spec names, else
// one this plugin makes), and the VM joins it through a TAP in that namespace coupled
// to the CNI interface by tc redirects (made by the list's tc-redirect-tap plugin, or
// by this plugin when the list has none).
//
// Every attachment is cached under cache_dir as <namespace>--<id>.json (written
// before the first ADD, again with the result): the list as it was run, the netns,
// the TAP and the final result. DEL runs from the cache alone, so it works after the
// shim died, after containerd restarted, and after the conflist changed or went.
//
// With configured_netns (CRI has run CNI in the pod's namespace itself) no list runs:
// the TAP is coupled to the interface CNI made, and detach removes only the TAP and
// that interface's ingress qdisc, never the interface or the namespace (CRI's).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "beaconbox/plugin/v1/network.pb.h"
#include "beaconbox/plugin/v1/plugin.pb.h"
#include "common/base/result.h"
#include "plugins/net-cni/cni_result.h"
#include "plugins/net-cni/config.h"
#include "plugins/net-cni/conflist.h"
#include "plugins/net-cni/netns_config.h"

namespace beaconbox::cni {

using LogFn = std::function<void(bool warning, const std::string&)>;

// What the cache file holds (schema in README.md).
struct CachedAttachment {
  std::string container_namespace;
  std::string container_id;
  std::string cni_container_id;  // CNI_CONTAINERID: "<namespace>--<id>"
  std::string ifname;
  std::string netns;
  bool owns_netns = false;
  std::string tap_name;
  bool owns_tap = false;
  // configured_netns: no list was run (conf_list is empty); `result` is what was read
  // from `ifname` there, for `net leases`.
  bool configured_netns = false;
  int64_t owner_pid = 0;
  uint64_t owner_start_time = 0;
  int64_t created_unix = 0;
  std::string conf_file;
  nlohmann::json conf_list;       // {"name","cniVersion","disableCheck","plugins"}
  nlohmann::json runtime_config;  // what ADD got (portMappings)
  nlohmann::json result;          // the final result; null until ADD finished
};

Result<CachedAttachment> ParseCachedAttachment(std::string_view text, const std::string& file);
std::string SerializeCachedAttachment(const CachedAttachment& cached);

// The guest's network from a final result: the CNI interface's MAC (`fallback_mac`
// when the result names none), its IPv4 and IPv6 addresses (either family alone is
// enough), the routes of both (a route without a gateway takes the first gateway of
// its family; a gateway of the other family is refused), DNS.
Result<plugin::v1::NetworkAttachment> AttachmentFromResult(const CniResult& result,
                                                           const std::string& ifname,
                                                           const std::string& netns,
                                                           const std::string& fallback_mac);

// The guest's network for configured_netns: `config` (read from the interface) as it
// is, on `tap_name` in `netns`.
plugin::v1::NetworkAttachment AttachmentOfInterface(const InterfaceConfig& config,
                                                    const std::string& netns,
                                                    const std::string& tap_name);
// The same as a CNI 1.0.0 result (what the cache keeps, for `net leases`).
nlohmann::json ResultJsonOf(const InterfaceConfig& config, const std::string& ifname,
                            const std::string& netns);

class CniNetwork {
 public:
  CniNetwork(CniConfig config, LogFn log);

  Result<plugin::v1::NetworkAttachment> Attach(const plugin::v1::NetworkAttachRequest& request);
  Status Detach(const std::string& container_namespace, const std::string& container_id);
  // DEL for every cached attachment whose owner (shim) is gone.
  Result<plugin::v1::ReconcileReport> Reconcile();
  Result<plugin::v1::LeaseList> ListLeases();
  plugin::v1::CheckReport Check() const;

  const CniConfig& config() const { return config_; }

 private:
  std::string CachePath(const std::string& key) const;
  Status SaveCache(const CachedAttachment& cached) const;
  // Runs `command` of plugin `index` of `list`; its stdout on success.
  Result<std::string> Invoke(const CniConfList& list, size_t index, const std::string& command,
                             const CachedAttachment& cached, const nlohmann::json& prev_result);
  // DEL through the whole list (in reverse), the TAP this plugin made, the netns it
  // made, then the cache file. Keeps the cache when a plugin's DEL failed. After a
  // failed ADD (`failed_at` = that plugin's index) only the plugins up to it get DEL
  // (the later ones never ran), and the failing plugin's own DEL error is only logged
  // (a plugin refusing its config refuses it on DEL too).
  Status Teardown(const CachedAttachment& cached, std::optional<size_t> failed_at = {});
  Result<plugin::v1::NetworkAttachment> AttachmentOf(const CachedAttachment& cached);
  // The cache entry of a new attachment: who asked, owned by `owner_pid`, made now.
  CachedAttachment NewAttachment(const plugin::v1::NetworkAttachRequest& request,
                                 const std::string& key, int64_t owner_pid) const;
  // configured_netns = true: the TAP coupled to `ifname` of the spec's namespace, the
  // guest given `ifname`'s MAC, MTU, addresses and routes as they are there.
  Result<plugin::v1::NetworkAttachment> AttachConfigured(
      const plugin::v1::NetworkAttachRequest& request, const std::string& key, int64_t owner_pid);

  CniConfig config_;
  LogFn log_;
};

}  // namespace beaconbox::cni
