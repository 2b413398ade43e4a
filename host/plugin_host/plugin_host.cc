#include "host/plugin_host/plugin_host.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <map>

#include "host/plugin_host/plugin_loader.h"

namespace beaconbox::plugin_host {
namespace {

// A result larger than this from a plugin is refused (the sink returns non-zero).
constexpr size_t kMaxResultBytes = 64 << 20;

// Collects what a plugin writes into a bbx_sink.
struct StringSink {
  std::string data;
  bool written = false;

  bbx_sink get() { return bbx_sink{this, &StringSink::Write}; }
  static int Write(void* context, const uint8_t* bytes, size_t len) {
    auto* sink = static_cast<StringSink*>(context);
    if (len > kMaxResultBytes || (bytes == nullptr && len > 0)) return 1;
    sink->data.assign(reinterpret_cast<const char*>(bytes), len);
    sink->written = true;
    return 0;
  }
};

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

// Parses what a plugin wrote into `sink` as `Message`.
template <typename Message>
Result<Message> ParseResult(const LoadedPlugin& plugin, const char* op, const StringSink& sink) {
  Message message;
  if (!sink.written) {
    return MakeError(ErrorCode::kInternal, plugin.label() + ": " + op + " succeeded but wrote no " +
                                               message.GetTypeName());
  }
  if (!message.ParseFromString(sink.data)) {
    return MakeError(ErrorCode::kInternal,
                     plugin.label() + ": " + op + " wrote an unparsable " + message.GetTypeName());
  }
  return message;
}

uint32_t Millis(std::chrono::milliseconds timeout) {
  auto count = timeout.count();
  if (count < 0) return 0;
  return count > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(count);
}

// Calls `op` (a lambda taking bbx_error*) and turns its status into a Status.
template <typename Call>
Status Invoke(const LoadedPlugin& plugin, const char* op, Call call) {
  ErrorBuffer buffer;
  bbx_status status = call(buffer.get());
  if (status != BBX_OK) return plugin.CallError(op, status, buffer);
  return Status::Ok();
}

#define BBX_HAS_OP(ops, type, member) \
  (BBX_STRUCT_HAS(ops, type, member) && (ops)->member != nullptr)

}  // namespace

// ---------------------------------------------------------------------------- Vm

Vm::Vm(std::shared_ptr<LoadedPlugin> plugin, void* handle, std::string console_log_path)
    : plugin_(std::move(plugin)), handle_(handle), console_log_path_(std::move(console_log_path)) {}

Vm::~Vm() {
  if (handle_ != nullptr) plugin_->vmm_ops()->vm_destroy(static_cast<bbx_vm*>(handle_));
}

Result<UniqueFd> Vm::ConnectGuest(std::chrono::milliseconds timeout) {
  int fd = -1;
  BBX_RETURN_IF_ERROR(Invoke(*plugin_, "vm_connect_guest", [&](bbx_error* error) {
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
  StringSink sink;
  BBX_RETURN_IF_ERROR(Invoke(*plugin_, "vm_info", [&](bbx_error* error) {
    return plugin_->vmm_ops()->vm_info(static_cast<bbx_vm*>(handle_), sink.get(), error);
  }));
  return ParseResult<pluginapi::VmInfo>(*plugin_, "vm_info", sink);
}

Status Vm::Stop(std::chrono::milliseconds timeout) {
  return Invoke(*plugin_, "vm_stop", [&](bbx_error* error) {
    return plugin_->vmm_ops()->vm_stop(static_cast<bbx_vm*>(handle_), Millis(timeout), error);
  });
}

Status Vm::Pause() {
  const bbx_vmm_ops* ops = plugin_->vmm_ops();
  if (!BBX_HAS_OP(ops, bbx_vmm_ops, vm_pause)) return plugin_->NotImplemented("vm_pause");
  return Invoke(*plugin_, "vm_pause", [&](bbx_error* error) {
    return ops->vm_pause(static_cast<bbx_vm*>(handle_), error);
  });
}

Status Vm::Resume() {
  const bbx_vmm_ops* ops = plugin_->vmm_ops();
  if (!BBX_HAS_OP(ops, bbx_vmm_ops, vm_resume)) return plugin_->NotImplemented("vm_resume");
  return Invoke(*plugin_, "vm_resume", [&](bbx_error* error) {
    return ops->vm_resume(static_cast<bbx_vm*>(handle_), error);
  });
}

Status Vm::AddDevice(const pluginapi::Device& device) {
  const bbx_vmm_ops* ops = plugin_->vmm_ops();
  if (!BBX_HAS_OP(ops, bbx_vmm_ops, vm_add_device)) return plugin_->NotImplemented("vm_add_device");
  BBX_ASSIGN_OR_RETURN(std::string bytes, Serialize(device));
  return Invoke(*plugin_, "vm_add_device", [&](bbx_error* error) {
    return ops->vm_add_device(static_cast<bbx_vm*>(handle_), AsBytes(bytes), error);
  });
}

Status Vm::Resize(uint32_t vcpus, uint64_t memory_mib) {
  const bbx_vmm_ops* ops = plugin_->vmm_ops();
  if (!BBX_HAS_OP(ops, bbx_vmm_ops, vm_resize)) return plugin_->NotImplemented("vm_resize");
  return Invoke(*plugin_, "vm_resize", [&](bbx_error* error) {
    return ops->vm_resize(static_cast<bbx_vm*>(handle_), vcpus, memory_mib, error);
  });
}

std::string Vm::ConsoleTail(size_t max_bytes) const {
  std::ifstream in(console_log_path_, std::ios::binary | std::ios::ate);
  if (!in) return "(no console log at " + console_log_path_ + ")";
  std::streamoff size = in.tellg();
  std::streamoff start = size > static_cast<std::streamoff>(max_bytes)
                             ? size - static_cast<std::streamoff>(max_bytes)
                             : 0;
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  tail.resize(static_cast<size_t>(in.gcount()));
  return tail;
}

// --------------------------------------------------------------------- VmmPlugin

Result<std::unique_ptr<Vm>> VmmPlugin::CreateVm(const pluginapi::VmSpec& spec) {
  BBX_ASSIGN_OR_RETURN(std::string bytes, Serialize(spec));
  bbx_vm* vm = nullptr;
  BBX_RETURN_IF_ERROR(Invoke(*plugin_, "vm_create", [&](bbx_error* error) {
    return plugin_->vmm_ops()->vm_create(plugin_->instance(), AsBytes(bytes), &vm, error);
  }));
  if (vm == nullptr) {
    return MakeError(ErrorCode::kInternal,
                     plugin_->label() + ": vm_create succeeded but returned no VM");
  }
  return std::make_unique<Vm>(plugin_, vm, spec.console_log_path());
}

Status VmmPlugin::CleanupStale(const pluginapi::VmInfo& info) {
  const bbx_vmm_ops* ops = plugin_->vmm_ops();
  if (!BBX_HAS_OP(ops, bbx_vmm_ops, vm_cleanup_stale)) {
    return plugin_->NotImplemented("vm_cleanup_stale");
  }
  BBX_ASSIGN_OR_RETURN(std::string bytes, Serialize(info));
  return Invoke(*plugin_, "vm_cleanup_stale", [&](bbx_error* error) {
    return ops->vm_cleanup_stale(plugin_->instance(), AsBytes(bytes), error);
  });
}

const PluginInfo& VmmPlugin::info() const { return plugin_->info(); }

// ----------------------------------------------------------------- NetworkPlugin

Result<pluginapi::NetworkAttachment> NetworkPlugin::Attach(
    const pluginapi::NetworkAttachRequest& request) {
  BBX_ASSIGN_OR_RETURN(std::string bytes, Serialize(request));
  StringSink sink;
  BBX_RETURN_IF_ERROR(Invoke(*plugin_, "attach", [&](bbx_error* error) {
    return plugin_->network_ops()->attach(plugin_->instance(), AsBytes(bytes), sink.get(), error);
  }));
  return ParseResult<pluginapi::NetworkAttachment>(*plugin_, "attach", sink);
}

Status NetworkPlugin::Detach(const std::string& container_id) {
  return Invoke(*plugin_, "detach", [&](bbx_error* error) {
    return plugin_->network_ops()->detach(plugin_->instance(), container_id.c_str(), error);
  });
}

Result<pluginapi::ReconcileReport> NetworkPlugin::Reconcile() {
  const bbx_network_ops* ops = plugin_->network_ops();
  if (!BBX_HAS_OP(ops, bbx_network_ops, reconcile)) return plugin_->NotImplemented("reconcile");
  StringSink sink;
  BBX_RETURN_IF_ERROR(Invoke(*plugin_, "reconcile", [&](bbx_error* error) {
    return ops->reconcile(plugin_->instance(), sink.get(), error);
  }));
  return ParseResult<pluginapi::ReconcileReport>(*plugin_, "reconcile", sink);
}

Result<pluginapi::LeaseList> NetworkPlugin::ListLeases() {
  const bbx_network_ops* ops = plugin_->network_ops();
  if (!BBX_HAS_OP(ops, bbx_network_ops, list_leases)) return plugin_->NotImplemented("list_leases");
  StringSink sink;
  BBX_RETURN_IF_ERROR(Invoke(*plugin_, "list_leases", [&](bbx_error* error) {
    return ops->list_leases(plugin_->instance(), sink.get(), error);
  }));
  return ParseResult<pluginapi::LeaseList>(*plugin_, "list_leases", sink);
}

const PluginInfo& NetworkPlugin::info() const { return plugin_->info(); }

// ----------------------------------------------------------------- StoragePlugin

Result<pluginapi::MountPlan> StoragePlugin::Prepare(
    const pluginapi::StoragePrepareRequest& request) {
  BBX_ASSIGN_OR_RETURN(std::string bytes, Serialize(request));
  StringSink sink;
  BBX_RETURN_IF_ERROR(Invoke(*plugin_, "prepare", [&](bbx_error* error) {
    return plugin_->storage_ops()->prepare(plugin_->instance(), AsBytes(bytes), sink.get(), error);
  }));
  return ParseResult<pluginapi::MountPlan>(*plugin_, "prepare", sink);
}

Status StoragePlugin::Release(const std::string& container_id, const std::string& bundle) {
  return Invoke(*plugin_, "release", [&](bbx_error* error) {
    return plugin_->storage_ops()->release(plugin_->instance(), container_id.c_str(),
                                           bundle.c_str(), error);
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
    BBX_RETURN_IF_ERROR(plugin->ValidateSettings(decl.settings));
    BBX_RETURN_IF_ERROR(plugin->Init(decl.config_toml, config.paths));
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
