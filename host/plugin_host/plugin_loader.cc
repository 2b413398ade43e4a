#include "host/plugin_host/plugin_loader.h"

#include <dlfcn.h>
#include <spdlog/spdlog.h>

#include <boost/dll/shared_library.hpp>
#include <cstring>
#include <filesystem>

namespace beaconbox::plugin_host {
namespace {

namespace fs = std::filesystem;

// A field of the plugin's answer is read only when its struct_size covers it.
#define BBX_RESPONSE_HAS(member) BBX_STRUCT_HAS(&response_, bbx_entry_response, member)

// The largest result a plugin may hand to a sink; beyond it the sink refuses.
constexpr size_t kMaxResultBytes = 64 << 20;

// A NUL-terminated string the plugin owns, or "" when NULL; bounded.
std::string PluginString(const char* text) {
  if (text == nullptr) return "";
  std::string value(text, strnlen(text, 256));
  return value;
}

void LogFromPlugin(void* host_context, bbx_log_level level, const char* message) {
  if (message == nullptr) return;
  const auto* plugin = static_cast<const LoadedPlugin*>(host_context);
  spdlog::level::level_enum spd_level = spdlog::level::info;
  switch (level) {
    case BBX_LOG_TRACE:
      spd_level = spdlog::level::trace;
      break;
    case BBX_LOG_DEBUG:
      spd_level = spdlog::level::debug;
      break;
    case BBX_LOG_INFO:
      spd_level = spdlog::level::info;
      break;
    case BBX_LOG_WARN:
      spd_level = spdlog::level::warn;
      break;
    case BBX_LOG_ERROR:
      spd_level = spdlog::level::err;
      break;
    default:
      break;
  }
  spdlog::default_logger_raw()->log(spd_level, "[{}/{}] {}", plugin->info().kind,
                                    plugin->info().name,
                                    std::string_view(message, strnlen(message, 4096)));
}

config::ValueType FromConfigType(bbx_config_type type) {
  switch (type) {
    case BBX_CONFIG_STRING:
      return config::ValueType::kString;
    case BBX_CONFIG_INTEGER:
      return config::ValueType::kInteger;
    case BBX_CONFIG_BOOLEAN:
      return config::ValueType::kBoolean;
    case BBX_CONFIG_STRING_ARRAY:
      return config::ValueType::kStringArray;
    default:
      return config::ValueType::kOther;
  }
}

// Every hook the host knows, in one table per ops struct: its C name, whether it is
// required, and whether the plugin's table has it. The macro keeps the name and the
// member in one place and reads the member only when struct_size covers it.
#define BBX_OP(ops, type, member, required) \
  OpEntry { #member, required, BBX_STRUCT_HAS(ops, type, member) && (ops)->member != nullptr }

std::vector<OpEntry> ListOps(const bbx_plugin_common_ops* common, bbx_plugin_kind kind,
                             const void* kind_ops) {
  std::vector<OpEntry> ops = {
      BBX_OP(common, bbx_plugin_common_ops, init, true),
      BBX_OP(common, bbx_plugin_common_ops, fini, true),
      BBX_OP(common, bbx_plugin_common_ops, check, false),
      BBX_OP(common, bbx_plugin_common_ops, capabilities, false),
  };
  std::vector<OpEntry> kind_entries;
  switch (kind) {
    case BBX_PLUGIN_KIND_VMM: {
      const auto* vmm = static_cast<const bbx_vmm_ops*>(kind_ops);
      kind_entries = {BBX_OP(vmm, bbx_vmm_ops, vm_create, true),
                      BBX_OP(vmm, bbx_vmm_ops, vm_connect_guest, true),
                      BBX_OP(vmm, bbx_vmm_ops, vm_info, true),
                      BBX_OP(vmm, bbx_vmm_ops, vm_stop, true),
                      BBX_OP(vmm, bbx_vmm_ops, vm_destroy, true),
                      BBX_OP(vmm, bbx_vmm_ops, vm_pause, false),
                      BBX_OP(vmm, bbx_vmm_ops, vm_resume, false),
                      BBX_OP(vmm, bbx_vmm_ops, vm_add_device, false),
                      BBX_OP(vmm, bbx_vmm_ops, vm_resize, false),
                      BBX_OP(vmm, bbx_vmm_ops, vm_cleanup_stale, false),
                      BBX_OP(vmm, bbx_vmm_ops, vm_save, false)};
      break;
    }
    case BBX_PLUGIN_KIND_NETWORK: {
      const auto* network = static_cast<const bbx_network_ops*>(kind_ops);
      kind_entries = {BBX_OP(network, bbx_network_ops, attach, true),
                      BBX_OP(network, bbx_network_ops, detach, true),
                      BBX_OP(network, bbx_network_ops, reconcile, false),
                      BBX_OP(network, bbx_network_ops, list_leases, false)};
      break;
    }
    case BBX_PLUGIN_KIND_STORAGE: {
      const auto* storage = static_cast<const bbx_storage_ops*>(kind_ops);
      kind_entries = {BBX_OP(storage, bbx_storage_ops, prepare, true),
                      BBX_OP(storage, bbx_storage_ops, release, true),
                      BBX_OP(storage, bbx_storage_ops, gc, false)};
      break;
    }
    default:
      break;
  }
  ops.insert(ops.end(), kind_entries.begin(), kind_entries.end());
  return ops;
}

// The smallest table a v2 plugin may answer: struct_size plus its required hooks.
constexpr size_t kMinCommonOps = offsetof(bbx_plugin_common_ops, fini) + sizeof(void*);
constexpr size_t kMaxConfigKeys = 1024;
constexpr size_t kMaxStructSize = 1 << 16;  // a struct_size beyond this is garbage

}  // namespace

int SinkBuffer::Write(void* context, const uint8_t* bytes, size_t len) {
  auto* sink = static_cast<SinkBuffer*>(context);
  if (len > kMaxResultBytes || (bytes == nullptr && len > 0) || sink->written_) return 1;
  sink->data_.assign(reinterpret_cast<const char*>(bytes), len);
  sink->written_ = true;
  return 0;
}

std::string ErrorBuffer::Message(const std::string& fallback) const {
  std::string message(text_, strnlen(text_, sizeof(text_)));
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return message.empty() ? fallback : message;
}

ErrorCode ToErrorCode(bbx_status status) {
  switch (status) {
    case BBX_ERR_INVALID_ARGUMENT:
      return ErrorCode::kInvalidArgument;
    case BBX_ERR_NOT_FOUND:
      return ErrorCode::kNotFound;
    case BBX_ERR_ALREADY_EXISTS:
      return ErrorCode::kAlreadyExists;
    case BBX_ERR_PERMISSION:
      return ErrorCode::kPermission;
    case BBX_ERR_UNAVAILABLE:
      return ErrorCode::kUnavailable;
    case BBX_ERR_EXHAUSTED:
      return ErrorCode::kExhausted;
    case BBX_ERR_TIMEOUT:
      return ErrorCode::kTimeout;
    case BBX_ERR_NOT_IMPLEMENTED:
      return ErrorCode::kNotImplemented;
    case BBX_ERR_ABI_MISMATCH:
      return ErrorCode::kFailedPrecondition;
    default:
      return ErrorCode::kInternal;
  }
}

const char* StatusName(bbx_status status) {
  switch (status) {
    case BBX_OK:
      return "ok";
    case BBX_ERR_INVALID_ARGUMENT:
      return "invalid argument";
    case BBX_ERR_NOT_FOUND:
      return "not found";
    case BBX_ERR_ALREADY_EXISTS:
      return "already exists";
    case BBX_ERR_PERMISSION:
      return "permission denied";
    case BBX_ERR_UNAVAILABLE:
      return "unavailable";
    case BBX_ERR_EXHAUSTED:
      return "exhausted";
    case BBX_ERR_TIMEOUT:
      return "timeout";
    case BBX_ERR_NOT_IMPLEMENTED:
      return "not implemented";
    case BBX_ERR_ABI_MISMATCH:
      return "ABI mismatch";
    case BBX_ERR_INTERNAL:
      return "internal error";
    default:
      return "unknown status";
  }
}

const char* KindName(bbx_plugin_kind kind) {
  switch (kind) {
    case BBX_PLUGIN_KIND_VMM:
      return "vmm";
    case BBX_PLUGIN_KIND_NETWORK:
      return "network";
    case BBX_PLUGIN_KIND_STORAGE:
      return "storage";
    default:
      return "unknown";
  }
}

Result<std::shared_ptr<LoadedPlugin>> LoadedPlugin::Open(const std::string& path,
                                                         const std::string& expected_kind,
                                                         const std::string& expected_name,
                                                         const std::string& context) {
  std::shared_ptr<LoadedPlugin> plugin(new LoadedPlugin());
  plugin->context_ = context;
  plugin->info_.path = path;
  auto fail = [&](ErrorCode code, const std::string& cause) {
    return MakeError(code, context + " (" + path + "): " + cause);
  };
  std::error_code fs_error;
  if (!fs::is_regular_file(path, fs_error)) {
    return fail(ErrorCode::kNotFound, "file not found: build it (make) or fix the path");
  }
  auto library = std::make_unique<boost::dll::shared_library>();
  boost::system::error_code load_error;
  library->load(path, load_error,
                boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  if (load_error) {
    // Boost keeps only an error code; dlopen again (it fails the same way, leaving
    // nothing loaded) for the loader's own explanation, e.g. an undefined symbol.
    std::string detail = load_error.message();
    if (void* again = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL); again != nullptr) {
      ::dlclose(again);
    } else if (const char* text = ::dlerror(); text != nullptr) {
      detail = text;
    }
    return fail(ErrorCode::kInvalidArgument, "cannot load it: " + detail);
  }
  if (!library->has(BBX_PLUGIN_ENTRY_SYMBOL)) {
    return fail(ErrorCode::kInvalidArgument,
                "no " BBX_PLUGIN_ENTRY_SYMBOL
                " symbol: not a beaconbox plugin (see plugin-abi/README.md)");
  }
  try {
    plugin->entry_ =
        &library->get<std::remove_pointer_t<bbx_plugin_entry_fn>>(BBX_PLUGIN_ENTRY_SYMBOL);
  } catch (const std::exception& error) {
    return fail(ErrorCode::kInvalidArgument, std::string("resolving the entry: ") + error.what());
  }
  plugin->library_ = std::move(library);

  bbx_entry_request request{sizeof(bbx_entry_request), BBX_ABI_VERSION_MIN_SUPPORTED,
                            BBX_ABI_VERSION_CURRENT};
  plugin->response_ = bbx_entry_response{};
  plugin->response_.struct_size = sizeof(bbx_entry_response);
  ErrorBuffer buffer;
  bbx_status status = plugin->entry_(&request, &plugin->response_, buffer.get());
  if (status == BBX_ERR_ABI_MISMATCH) {
    return fail(ErrorCode::kFailedPrecondition,
                "speaks no plugin ABI in this host's range " +
                    std::to_string(BBX_ABI_VERSION_MIN_SUPPORTED) + ".." +
                    std::to_string(BBX_ABI_VERSION_CURRENT) + " (" + buffer.Message("no message") +
                    "): rebuild it against this host's plugin-abi (ABI 1 plugins are refused)");
  }
  if (status != BBX_OK) {
    return fail(ErrorCode::kInvalidArgument, std::string("entry refused (") + StatusName(status) +
                                                 "): " + buffer.Message("no message"));
  }
  Status checked = plugin->CheckAnswer(expected_kind, expected_name);
  if (!checked.ok()) return fail(checked.error().code, checked.error().message);
  return plugin;
}

Status LoadedPlugin::CheckAnswer(const std::string& expected_kind,
                                 const std::string& expected_name) {
  auto refuse = [](const std::string& cause) {
    return MakeError(ErrorCode::kInvalidArgument, cause);
  };
  if (response_.struct_size > sizeof(bbx_entry_response)) {
    return refuse("entry answered struct_size " + std::to_string(response_.struct_size) +
                  ", larger than the host's " + std::to_string(sizeof(bbx_entry_response)));
  }
  // abi_version first: a v1 plugin's answer has another layout beyond it.
  if (!BBX_RESPONSE_HAS(abi_version)) {
    return refuse("entry answer too small (struct_size " + std::to_string(response_.struct_size) +
                  "): it must cover at least abi_version");
  }
  uint32_t abi = response_.abi_version;
  if (abi < BBX_ABI_VERSION_MIN_SUPPORTED || abi > BBX_ABI_VERSION_CURRENT) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "speaks plugin ABI " + std::to_string(abi) + ", this host speaks " +
                         std::to_string(BBX_ABI_VERSION_MIN_SUPPORTED) + ".." +
                         std::to_string(BBX_ABI_VERSION_CURRENT) +
                         ": rebuild the plugin against this host's plugin-abi");
  }
  if (!BBX_RESPONSE_HAS(kind_ops)) {
    return refuse("entry answer too small (struct_size " + std::to_string(response_.struct_size) +
                  "): it must cover abi_version, kind, name, version, config keys and both ops "
                  "tables");
  }
  info_.abi_version = abi;
  info_.kind = KindName(response_.kind);
  info_.name = PluginString(response_.name);
  info_.version = PluginString(response_.version);
  if (info_.kind == std::string("unknown")) {
    return refuse("reports unknown kind " + std::to_string(response_.kind));
  }
  if (info_.name.empty()) return refuse("reports no name");
  label_ = info_.kind + " plugin " + info_.name;
  if (!expected_kind.empty() && info_.kind != expected_kind) {
    return refuse("is a " + info_.kind + " plugin named " + info_.name + ", not " + expected_kind +
                  ": declare it as [plugins." + info_.kind + "." + info_.name + "]");
  }
  if (!expected_name.empty() && info_.name != expected_name) {
    return refuse("reports name " + info_.name + ", not " + expected_name +
                  ": declare it as [plugins." + info_.kind + "." + info_.name + "]");
  }
  BBX_RETURN_IF_ERROR(ReadSchema());
  const bbx_plugin_common_ops* common = response_.common_ops;
  if (common == nullptr) return refuse("reports no common ops table");
  if (common->struct_size < kMinCommonOps || common->struct_size > kMaxStructSize) {
    return refuse("common ops table has struct_size " + std::to_string(common->struct_size) +
                  ": it must cover at least init and fini");
  }
  const auto* kind_ops = static_cast<const uint32_t*>(response_.kind_ops);
  if (kind_ops == nullptr) return refuse("reports no " + info_.kind + " ops table");
  if (*kind_ops < sizeof(uint32_t) || *kind_ops > kMaxStructSize) {
    return refuse(info_.kind + " ops table has struct_size " + std::to_string(*kind_ops));
  }
  ops_ = ListOps(common, response_.kind, response_.kind_ops);
  for (const OpEntry& op : ops_) {
    if (op.present) {
      info_.ops.push_back(op.name);
    } else if (op.required) {
      return refuse(std::string("lacks the required op ") + op.name);
    }
  }
  return Status::Ok();
}

Status LoadedPlugin::ReadSchema() {
  auto refuse = [](const std::string& cause) {
    return MakeError(ErrorCode::kInvalidArgument, cause);
  };
  size_t count = response_.config_key_count;
  if (count == 0) return Status::Ok();
  if (response_.config_keys == nullptr || count > kMaxConfigKeys) {
    return refuse("reports a bad config schema (" + std::to_string(count) + " keys)");
  }
  // The stride is the first key's struct_size; every key must carry the same one.
  const uint32_t stride = response_.config_keys[0].struct_size;
  constexpr size_t kMinKey = offsetof(bbx_config_key, description) + sizeof(const char*);
  if (stride < kMinKey || stride > kMaxStructSize || stride % alignof(bbx_config_key) != 0) {
    return refuse("config schema key struct_size " + std::to_string(stride) +
                  " is not a bbx_config_key of ABI 2 (at least " + std::to_string(kMinKey) + ")");
  }
  const auto* bytes = reinterpret_cast<const unsigned char*>(response_.config_keys);
  for (size_t i = 0; i < count; ++i) {
    const auto* key = reinterpret_cast<const bbx_config_key*>(bytes + i * stride);
    if (key->struct_size != stride) {
      return refuse("config schema key " + std::to_string(i) + " has struct_size " +
                    std::to_string(key->struct_size) + ", the first has " + std::to_string(stride) +
                    ": every key of the array must have the same");
    }
    if (key->name == nullptr) {
      return refuse("config schema key " + std::to_string(i) + " has no name");
    }
    ConfigKeyInfo info{PluginString(key->name), FromConfigType(key->type),
                       PluginString(key->default_value), PluginString(key->description), ""};
    if (BBX_STRUCT_HAS(key, bbx_config_key, env_var)) info.env_var = PluginString(key->env_var);
    if (!info.env_var.empty() && info.type != config::ValueType::kString &&
        info.type != config::ValueType::kBoolean) {
      return refuse("config key " + info.name + " names environment variable " + info.env_var +
                    " but is not a string or boolean key: only those take an override");
    }
    info_.config_keys.push_back(std::move(info));
  }
  return Status::Ok();
}

bool LoadedPlugin::Has(const char* op) const {
  for (const OpEntry& entry : ops_) {
    if (std::strcmp(entry.name, op) == 0) return entry.present;
  }
  return false;
}

Status LoadedPlugin::Configure(config::PluginDecl decl, const config::Paths& paths) {
  for (const ConfigKeyInfo& key : info_.config_keys) {
    if (!key.env_var.empty()) config::ApplyPluginEnvOverride(decl, key.name, key.env_var, key.type);
  }
  BBX_RETURN_IF_ERROR(ValidateSettings(decl.settings));
  return Init(decl.config_toml, paths);
}

Status LoadedPlugin::ValidateSettings(const std::vector<config::PluginSetting>& settings) const {
  for (const config::PluginSetting& setting : settings) {
    const ConfigKeyInfo* known = nullptr;
    for (const ConfigKeyInfo& key : info_.config_keys) {
      if (key.name == setting.key) known = &key;
    }
    std::string where = "plugins." + info_.kind + "." + info_.name + ".config." + setting.key;
    if (known == nullptr) {
      std::string accepted;
      for (const ConfigKeyInfo& key : info_.config_keys) {
        accepted += (accepted.empty() ? "" : ", ") + key.name;
      }
      return MakeError(ErrorCode::kInvalidArgument,
                       context_ + ": " + setting.origin + ": unknown key " + where + " (" +
                           (accepted.empty() ? "it takes no keys" : "it takes " + accepted) + ")");
    }
    if (known->type != setting.type) {
      return MakeError(ErrorCode::kInvalidArgument,
                       context_ + ": " + setting.origin + ": " + where + " must be " +
                           config::ValueTypeName(known->type) + ", not " +
                           config::ValueTypeName(setting.type));
    }
  }
  return Status::Ok();
}

Status LoadedPlugin::Init(const std::string& config_toml, const config::Paths& paths) {
  if (instance_ != nullptr)
    return MakeError(ErrorCode::kInternal, context_ + ": init called twice");
  paths_ = paths;
  services_ = bbx_host_services{};
  services_.struct_size = sizeof(bbx_host_services);
  services_.abi_version = info_.abi_version;
  services_.host_context = this;
  services_.host_log = &LogFromPlugin;
  services_.state_dir = paths_.state_dir.c_str();
  services_.run_dir = paths_.run_dir.c_str();
  services_.log_dir = paths_.log_dir.c_str();
  services_.share_dir = paths_.share_dir.c_str();
  bbx_plugin* instance = nullptr;
  bbx_bytes text{reinterpret_cast<const uint8_t*>(config_toml.data()), config_toml.size()};
  const std::string failure_prefix = context_ + ": init failed: ";
  BBX_RETURN_IF_ERROR(Invoke(
      "init", [&](bbx_error* error) { return common().init(&services_, text, &instance, error); },
      &failure_prefix));
  if (instance == nullptr) {
    return MakeError(ErrorCode::kInternal, context_ + ": init succeeded but returned no instance");
  }
  instance_ = instance;
  return Status::Ok();
}

LoadedPlugin::~LoadedPlugin() {
  if (instance_ != nullptr) {
    (void)Invoke("fini", [&](bbx_error*) {
      common().fini(instance_);
      return BBX_OK;
    });
  }
  instance_ = nullptr;
  // library_ unloads after this body: the ops and strings stay valid until then.
}

Result<pluginapi::CheckReport> LoadedPlugin::Check() const {
  return InvokeForMessage<pluginapi::CheckReport>("check", [&](bbx_sink sink, bbx_error* error) {
    return common().check(instance_, sink, error);
  });
}

Result<pluginapi::Capabilities> LoadedPlugin::Capabilities() const {
  if (!Has("capabilities")) return pluginapi::Capabilities();
  return InvokeForMessage<pluginapi::Capabilities>(
      "capabilities", [&](bbx_sink sink, bbx_error* error) {
        return common().capabilities(instance_, sink, error);
      });
}

Error LoadedPlugin::NotImplemented(const char* op) const {
  return MakeError(ErrorCode::kNotImplemented,
                   label_ + " does not implement " + op + " (plugin " + info_.path + ")");
}

Error LoadedPlugin::CallError(const char* op, bbx_status status, const ErrorBuffer& buffer) const {
  return MakeError(ToErrorCode(status),
                   label_ + ": " + op + ": " + buffer.Message(StatusName(status)));
}

}  // namespace beaconbox::plugin_host
