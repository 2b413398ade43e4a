#include "host/plugin_host/plugin_host.h"

#include <fcntl.h>
#include <unistd.h>

#include <map>

#include "common/base/file_util.h"
#include "host/plugin_host/plugin_loader.h"

namespace beaconbox::plugin_host {
namespace {

bbx_bytes AsBytes(const std::string& bytes) {
  return bbx_bytes{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
}

// Serializes `message`, or fails naming it.
template <typename Message>
Result<std::string> Serialize(const Message& message) {
  std::string bytes;
  if (!message.SerializeToString(&bytes)) {
    return MakeError(ErrorCode::kInternal,
                     "cannot serialize " + message.GetTypeName() + " (required field missing?)");
  }
  return bytes;
}

uint32_t Millis(std::chrono::milliseconds timeout) {
  auto count = timeout.count();
  if (count < 0) return 0;
  return count > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(count);
}

}  // namespace

// ---------------------------------------------------------------------------- Vm

Vm::Vm(std::shared_ptr<LoadedPlugin> plugin, void* handle, std::string console_log_path,
       UniqueFd guest_cid_lock)
    : plugin_(std::move(plugin)),
      handle_(handle),
      console_log_path_(std::move(console_log_path)),
      guest_cid_lock_(std::move(guest_cid_lock)) {}

Vm::~Vm() {
  // vm_destroy never fails; it goes through Invoke like every other call.
  if (handle_ != nullptr) {
    (void)plugin_->Invoke("vm_destroy", [&](bbx_error*) {
      plugin_->vmm_ops()->vm_destroy(static_cast<bbx_vm*>(handle_));
      return BBX_OK;
    });
  }
}

Result<UniqueFd> Vm::ConnectGuest(std::chrono::milliseconds timeout) {
  int fd = -1;
  BBX_RETURN_IF_ERROR(plugin_->Invoke("vm_connect_guest", [&](bbx_error* error) {
    return plugin_->vmm_ops()->vm_connect_guest(static_cast<bbx_vm*>(handle_), Millis(timeout), &fd,
                                                error);
  }));
  if (fd < 0) {
    return MakeError(ErrorCode::kInternal,
                     plugin_->label() + ": vm_connect_guest succeeded but returned no socket");
  }
  return UniqueFd(fd);
}

Result<pluginapi::VmInfo> Vm::Info() {
  return plugin_->InvokeForMessage<pluginapi::VmInfo>(
      "vm_info", [&](bbx_sink sink, bbx_error* error) {
        return plugin_->vmm_ops()->vm_info(static_cast<bbx_vm*>(handle_), sink, error);
      });
}

Status Vm::Stop(std::chrono::milliseconds timeout) {
  return plugin_->Invoke("vm_stop", [&](bbx_error* error) {
    return plugin_->vmm_ops()->vm_stop(static_cast<bbx_vm*>(handle_), Millis(timeout), error);
  });
}

Status Vm::Pause() {
  return plugin_->Invoke("vm_pause", [&](bbx_error* error) {
    return plugin_->vmm_ops()->vm_pause(static_cast<bbx_vm*>(handle_), error);
  });
}

Status Vm::Resume() {
  return plugin_->Invoke("vm_resume", [&](bbx_error* error) {
    return plugin_->vmm_ops()->vm_resume(static_cast<bbx_vm*>(handle_), error);
  });
}

Status Vm::AddDevice(const pluginapi::Device& device) {
  if (!plugin_->Has("vm_add_device")) return plugin_->NotImplemented("vm_add_device");
  BBX_ASSIGN_OR_RETURN(std::string bytes, Serialize(device));
  return plugin_->Invoke("vm_add_device", [&](bbx_error* error) {
    return plugin_->vmm_ops()->vm_add_device(static_cast<bbx_vm*>(handle_), AsBytes(bytes), error);
  });
}

Status Vm::Resize(uint32_t vcpus, uint64_t memory_mib) {
  return plugin_->Invoke("vm_resize", [&](bbx_error* error) {
    return plugin_->vmm_ops()->vm_resize(static_cast<bbx_vm*>(handle_), vcpus, memory_mib, error);
  });
}

Result<pluginapi::VmSaved> Vm::Save(const std::string& dir) {
  return plugin_->InvokeForMessage<pluginapi::VmSaved>(
      "vm_save", [&](bbx_sink sink, bbx_error* error) {
        return plugin_->vmm_ops()->vm_save(static_cast<bbx_vm*>(handle_), dir.c_str(), sink, error);
      });
}

std::string Vm::ConsoleTail(size_t max_bytes) const {
  auto tail = ReadFileTailBytes(console_log_path_, max_bytes);
  return tail.ok() ? std::move(tail).value() : "(no console log at " + console_log_path_ + ")";
}

// --------------------------------------------------------------------- VmmPlugin

Result<std::unique_ptr<Vm>> VmmPlugin::CreateVm(const pluginapi::VmSpec& spec,
                                                UniqueFd guest_cid_lock) {
  BBX_ASSIGN_OR_RETURN(std::string bytes, Serialize(spec));
  bbx_vm* vm = nullptr;
  BBX_RETURN_IF_ERROR(plugin_->Invoke("vm_create", [&](bbx_error* error) {
    return plugin_->vmm_ops()->vm_create(plugin_->instance(), AsBytes(bytes), &vm, error);
  }));
  if (vm == nullptr) {
    return MakeError(ErrorCode::kInternal,
                     plugin_->label() + ": vm_create succeeded but returned no VM");
  }
  return std::make_unique<Vm>(plugin_, vm, spec.console_log_path(), std::move(guest_cid_lock));
}

Result<pluginapi::Capabilities> VmmPlugin::Capabilities() const { return plugin_->Capabilities(); }

Status VmmPlugin::CleanupStale(const pluginapi::VmInfo& info) {
  if (!plugin_->Has("vm_cleanup_stale")) return plugin_->NotImplemented("vm_cleanup_stale");
  BBX_ASSIGN_OR_RETURN(std::string bytes, Serialize(info));
  return plugin_->Invoke("vm_cleanup_stale", [&](bbx_error* error) {
    return plugin_->vmm_ops()->vm_cleanup_stale(plugin_->instance(), AsBytes(bytes), error);
  });
}

const PluginInfo& VmmPlugin::info() const { return plugin_->info(); }

// ----------------------------------------------------------------- NetworkPlugin

Result<pluginapi::NetworkAttachment> NetworkPlugin::Attach(
    const pluginapi::NetworkAttachRequest& request) {
  BBX_ASSIGN_OR_RETURN(std::string bytes, Serialize(request));
  return plugin_->InvokeForMessage<pluginapi::NetworkAttachment>(
      "attach", [&](bbx_sink sink, bbx_error* error) {
        return plugin_->network_ops()->attach(plugin_->instance(), AsBytes(bytes), sink, error);
      });
}

Status NetworkPlugin::Detach(const std::string& container_namespace,
                             const std::string& container_id) {
  pluginapi::NetworkDetachRequest request;
  request.set_namespace_(container_namespace);
  request.set_container_id(container_id);
  BBX_ASSIGN_OR_RETURN(std::string bytes, Serialize(request));
  return plugin_->Invoke("detach", [&](bbx_error* error) {
    return plugin_->network_ops()->detach(plugin_->instance(), AsBytes(bytes), error);
  });
}

Result<pluginapi::ReconcileReport> NetworkPlugin::Reconcile() {
  return plugin_->InvokeForMessage<pluginapi::ReconcileReport>(
      "reconcile", [&](bbx_sink sink, bbx_error* error) {
        return plugin_->network_ops()->reconcile(plugin_->instance(), sink, error);
      });
}

Result<pluginapi::LeaseList> NetworkPlugin::ListLeases() {
  return plugin_->InvokeForMessage<pluginapi::LeaseList>(
      "list_leases", [&](bbx_sink sink, bbx_error* error) {
        return plugin_->network_ops()->list_leases(plugin_->instance(), sink, error);
      });
}

const PluginInfo& NetworkPlugin::info() const { return plugin_->info(); }

// ----------------------------------------------------------------- StoragePlugin

Result<pluginapi::MountPlan> StoragePlugin::Prepare(
    const pluginapi::StoragePrepareRequest& request) {
  BBX_ASSIGN_OR_RETURN(std::string bytes, Serialize(request));
  return plugin_->InvokeForMessage<pluginapi::MountPlan>(
      "prepare", [&](bbx_sink sink, bbx_error* error) {
        return plugin_->storage_ops()->prepare(plugin_->instance(), AsBytes(bytes), sink, error);
      });
}

Status StoragePlugin::Release(const std::string& container_namespace,
                              const std::string& container_id, const std::string& bundle) {
  pluginapi::StorageReleaseRequest request;
  request.set_namespace_(container_namespace);
  request.set_container_id(container_id);
  request.set_bundle(bundle);
  BBX_ASSIGN_OR_RETURN(std::string bytes, Serialize(request));
  return plugin_->Invoke("release", [&](bbx_error* error) {
    return plugin_->storage_ops()->release(plugin_->instance(), AsBytes(bytes), error);
  });
}

Result<pluginapi::StorageGcReport> StoragePlugin::Gc() {
  return plugin_->InvokeForMessage<pluginapi::StorageGcReport>(
      "gc", [&](bbx_sink sink, bbx_error* error) {
        return plugin_->storage_ops()->gc(plugin_->instance(), sink, error);
      });
}

const PluginInfo& StoragePlugin::info() const { return plugin_->info(); }

// -------------------------------------------------------------------- PluginHost

Result<std::unique_ptr<PluginHost>> PluginHost::Load(config::Config config) {
  std::unique_ptr<PluginHost> host(new PluginHost());
  const std::string file = "config " + (config.source.empty() ? "(built-in)" : config.source);
  std::map<std::pair<std::string, std::string>, std::shared_ptr<LoadedPlugin>> by_key;
  for (const config::PluginDecl& decl : config.plugins) {
    std::string context = file + ": plugin " + decl.kind + "/" + decl.name;
    if (by_key.count({decl.kind, decl.name}) != 0) {
      return MakeError(ErrorCode::kAlreadyExists, context + ": declared twice: keep one [plugins." +
                                                      decl.kind + "." + decl.name + "]");
    }
    // Each early return below drops `host`, whose plugins fini and unload in turn.
    BBX_ASSIGN_OR_RETURN(auto plugin, LoadedPlugin::Open(decl.path, decl.kind, decl.name, context));
    BBX_RETURN_IF_ERROR(plugin->Configure(decl, config.paths));
    by_key[{decl.kind, decl.name}] = plugin;
    host->loaded_.push_back(std::move(plugin));
  }
  auto require = [&](const char* kind, const std::string& name,
                     const char* key) -> Result<std::shared_ptr<LoadedPlugin>> {
    auto found = by_key.find({kind, name});
    if (found == by_key.end()) {
      return MakeError(ErrorCode::kNotFound, file + ": plugin " + kind + "/" + name +
                                                 " (chosen by " + key +
                                                 ") is not declared: add [plugins." + kind + "." +
                                                 name + "] with path = \"plugins/<file>.so\"");
    }
    return found->second;
  };
  BBX_ASSIGN_OR_RETURN(auto vmm, require("vmm", config.vm.vmm, "vm.vmm"));
  BBX_ASSIGN_OR_RETURN(auto storage, require("storage", config.storage.driver, "storage.driver"));
  host->vmm_ = std::make_unique<VmmPlugin>(vmm);
  host->storage_ = std::make_unique<StoragePlugin>(storage);
  if (config.network.mode != "none") {
    BBX_ASSIGN_OR_RETURN(auto network, require("network", config.network.mode, "network.mode"));
    host->network_ = std::make_unique<NetworkPlugin>(network);
  }
  host->config_ = std::move(config);
  return host;
}

PluginHost::~PluginHost() {
  // Wrappers first, then plugins in reverse load order (fini, then unload).
  vmm_.reset();
  network_.reset();
  storage_.reset();
  while (!loaded_.empty()) loaded_.pop_back();
}

void PluginHost::UnloadUnpicked() {
  auto picked = [this](const PluginInfo& info) {
    if (info.kind == "vmm") return info.name == config_.vm.vmm;
    if (info.kind == "storage") return info.name == config_.storage.driver;
    if (info.kind == "network") return network_ != nullptr && info.name == config_.network.mode;
    return true;  // a kind this host does not pick from: left alone
  };
  // Reverse load order, as the destructor unloads.
  for (std::size_t i = loaded_.size(); i-- > 0;) {
    if (!picked(loaded_[i]->info()))
      loaded_.erase(loaded_.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

std::vector<PluginInfo> PluginHost::plugins() const {
  std::vector<PluginInfo> infos;
  for (const auto& plugin : loaded_) infos.push_back(plugin->info());
  return infos;
}

Result<std::unique_ptr<PluginHost>> LoadFromDefaultConfig() {
  BBX_ASSIGN_OR_RETURN(config::Config config, config::LoadConfig());
  return PluginHost::Load(std::move(config));
}

}  // namespace beaconbox::plugin_host
