// The plugin host: loads the VMM, network and storage plugins a configuration
// declares, negotiates the C ABI (plugin-abi/include/beaconbox/plugin_abi.h) with each,
// and offers them as typed C++ objects. Nothing here throws; every refusal is one
// line naming the config file, the plugin and the cause.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "beaconbox/plugin/v1/network.pb.h"
#include "beaconbox/plugin/v1/plugin.pb.h"
#include "beaconbox/plugin/v1/storage.pb.h"
#include "beaconbox/plugin/v1/vmm.pb.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "host/config/config.h"

namespace beaconbox::plugin_host {

namespace pluginapi = ::beaconbox::plugin::v1;

class LoadedPlugin;  // plugin_loader.h

struct ConfigKeyInfo {
  std::string name;
  config::ValueType type = config::ValueType::kOther;
  std::string default_value;  // as TOML, "" when none
  std::string description;
  std::string env_var;  // the environment variable overriding it, "" when none
};

// What `beaconbox-ctl plugins` shows.
struct PluginInfo {
  std::string kind;  // "vmm", "network", "storage"
  std::string name;
  std::string version;  // the plugin's own
  uint32_t abi_version = 0;
  std::string path;
  std::vector<std::string> ops;  // the present hooks (common and kind), by their C name
  std::vector<ConfigKeyInfo> config_keys;
};

// One VM, owned: the destructor calls vm_destroy, then lets go of the host's
// reservations for it (the guest CID lock). Keeps its plugin loaded.
class Vm {
 public:
  Vm(std::shared_ptr<LoadedPlugin> plugin, void* handle, std::string console_log_path,
     UniqueFd guest_cid_lock);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // The caller owns the returned socket; every byte read from it is untrusted.
  Result<UniqueFd> ConnectGuest(std::chrono::milliseconds timeout);
  Result<pluginapi::VmInfo> Info();
  Status Stop(std::chrono::milliseconds timeout);
  // Optional ops: kNotImplemented naming the plugin and op when it lacks them.
  Status Pause();
  Status Resume();
  Status AddDevice(const pluginapi::Device& device);
  Status Resize(uint32_t vcpus, uint64_t memory_mib);
  // Saves the paused VM into files in the existing directory `dir` (vm_save).
  Result<pluginapi::VmSaved> Save(const std::string& dir);
  // The last `max_bytes` of the guest console log, for error messages.
  std::string ConsoleTail(size_t max_bytes) const;

 private:
  std::shared_ptr<LoadedPlugin> plugin_;
  void* handle_;  // bbx_vm*
  std::string console_log_path_;
  UniqueFd guest_cid_lock_;  // released after vm_destroy
};

class VmmPlugin {
 public:
  explicit VmmPlugin(std::shared_ptr<LoadedPlugin> plugin) : plugin_(std::move(plugin)) {}
  // `guest_cid_lock` (from ReserveGuestCid, or empty) is held until the VM is destroyed.
  Result<std::unique_ptr<Vm>> CreateVm(const pluginapi::VmSpec& spec,
                                       UniqueFd guest_cid_lock = UniqueFd());
  // What the plugin can do (common hook capabilities); empty when it does not say.
  Result<pluginapi::Capabilities> Capabilities() const;
  // Optional: removes what a dead shim's VM left behind.
  Status CleanupStale(const pluginapi::VmInfo& info);
  const PluginInfo& info() const;

 private:
  std::shared_ptr<LoadedPlugin> plugin_;
};

class NetworkPlugin {
 public:
  explicit NetworkPlugin(std::shared_ptr<LoadedPlugin> plugin) : plugin_(std::move(plugin)) {}
  Result<pluginapi::NetworkAttachment> Attach(const pluginapi::NetworkAttachRequest& request);
  // Releases the attachment of (namespace, container id).
  Status Detach(const std::string& container_namespace, const std::string& container_id);
  Result<pluginapi::ReconcileReport> Reconcile();  // optional op
  Result<pluginapi::LeaseList> ListLeases();       // optional op
  const PluginInfo& info() const;

 private:
  std::shared_ptr<LoadedPlugin> plugin_;
};

class StoragePlugin {
 public:
  explicit StoragePlugin(std::shared_ptr<LoadedPlugin> plugin) : plugin_(std::move(plugin)) {}
  Result<pluginapi::MountPlan> Prepare(const pluginapi::StoragePrepareRequest& request);
  // Undoes Prepare for (namespace, container id) and its bundle.
  Status Release(const std::string& container_namespace, const std::string& container_id,
                 const std::string& bundle);
  // Removes cached data no container or snapshot uses (optional op: kNotImplemented
  // when the plugin has none).
  Result<pluginapi::StorageGcReport> Gc();
  const PluginInfo& info() const;

 private:
  std::shared_ptr<LoadedPlugin> plugin_;
};

class PluginHost {
 public:
  // Loads and inits every declared plugin, then picks the vmm (vm.vmm), network
  // (network.mode, none for "none") and storage (storage.driver) ones, which must be
  // declared. On failure nothing stays loaded.
  static Result<std::unique_ptr<PluginHost>> Load(config::Config config);
  ~PluginHost();

  const config::Config& config() const { return config_; }
  VmmPlugin& vmm() { return *vmm_; }
  StoragePlugin& storage() { return *storage_; }
  NetworkPlugin* network() { return network_.get(); }  // null for network.mode = "none"
  // Every loaded plugin, in the order declared.
  std::vector<PluginInfo> plugins() const;
  // Finis and unloads every plugin that Load did not pick (another VMM, network mode
  // or storage driver declared beside the chosen one), with the libraries only they
  // needed: a shim serves one container with the picked ones, and each unused plugin
  // costs it resident memory (issue 16: shim RSS). Every declared plugin was still
  // loaded and checked by Load, so a broken declaration fails as before.
  void UnloadUnpicked();

 private:
  PluginHost() = default;
  config::Config config_;
  std::vector<std::shared_ptr<LoadedPlugin>> loaded_;
  std::unique_ptr<VmmPlugin> vmm_;
  std::unique_ptr<NetworkPlugin> network_;
  std::unique_ptr<StoragePlugin> storage_;
};

// config::LoadConfig() then PluginHost::Load().
Result<std::unique_ptr<PluginHost>> LoadFromDefaultConfig();

}  // namespace beaconbox::plugin_host
