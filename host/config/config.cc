#include "host/config/config.h"

#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

namespace beaconbox::config {
namespace {

namespace fs = std::filesystem;

// A file larger than this is not a configuration.
constexpr size_t kMaxConfigBytes = 1 << 20;

std::string LineOf(const toml::node& node) {
  return "line " + std::to_string(node.source().begin.line);
}

const char* TomlTypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date/time";
  }
}

ValueType TypeOf(const toml::node& value) {
  if (value.is_string()) return ValueType::kString;
  if (value.is_integer()) return ValueType::kInteger;
  if (value.is_boolean()) return ValueType::kBoolean;
  if (const toml::array* array = value.as_array();
      array != nullptr && (array->empty() || array->is_homogeneous(toml::node_type::string))) {
    return ValueType::kStringArray;
  }
  return ValueType::kOther;
}

const char* GetEnv(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? value : nullptr;
}

// Reads one file's keys into a Config, refusing what it does not know.
class Parser {
 public:
  Parser(const std::string& source, Config* config)
      : source_(source), base_dir_(BaseDir(source)), config_(config) {}

  Status Parse(const toml::table& root) {
    using Section = Status (Parser::*)(const toml::table&);
    const std::map<std::string, Section> sections = {
        {"paths", &Parser::ParsePaths},     {"vm", &Parser::ParseVm},
        {"network", &Parser::ParseNetwork}, {"storage", &Parser::ParseStorage},
        {"log", &Parser::ParseLog},         {"plugins", &Parser::ParsePlugins},
    };
    for (const auto& [key, node] : root) {
      auto section = sections.find(std::string(key.str()));
      if (section == sections.end()) return Unknown(std::string(key.str()), node);
      const toml::table* table = node.as_table();
      if (table == nullptr) return WrongType(std::string(key.str()), node, "a table");
      BBX_RETURN_IF_ERROR((this->*section->second)(*table));
    }
    return Status::Ok();
  }

  bool kernel_set() const { return kernel_set_; }
  bool initrd_set() const { return initrd_set_; }

 private:
  using Setter = std::function<Status(const std::string& key, const toml::node&)>;

  static std::string BaseDir(const std::string& source) {
    if (source.empty()) return fs::current_path().string();
    return fs::absolute(fs::path(source)).parent_path().string();
  }

  Error Fail(const std::string& message) const {
    return MakeError(ErrorCode::kInvalidArgument, "config " + source_ + ": " + message);
  }
  Error Unknown(const std::string& key, const toml::node& node) const {
    return Fail(LineOf(node) + ": unknown key " + key +
                " (config/config.toml documents every key)");
  }
  Error WrongType(const std::string& key, const toml::node& node, const char* wanted) const {
    return Fail(LineOf(node) + ": " + key + " must be " + wanted + ", not " + TomlTypeName(node));
  }

  Status ReadKeys(const toml::table& table, const std::string& section,
                  const std::map<std::string, Setter>& setters) {
    for (const auto& [key, node] : table) {
      std::string full = section + "." + std::string(key.str());
      auto setter = setters.find(std::string(key.str()));
      if (setter == setters.end()) return Unknown(full, node);
      BBX_RETURN_IF_ERROR(setter->second(full, node));
    }
    return Status::Ok();
  }

  Setter String(std::string* out, bool* was_set = nullptr) {
    return [this, out, was_set](const std::string& key, const toml::node& node) -> Status {
      const auto* value = node.as_string();
      if (value == nullptr) return WrongType(key, node, "a string");
      *out = value->get();
      if (was_set) *was_set = true;
      return Status::Ok();
    };
  }
  Setter Path(std::string* out, bool* was_set = nullptr, bool allow_empty = false) {
    return [this, out, was_set, allow_empty](const std::string& key,
                                             const toml::node& node) -> Status {
      const auto* value = node.as_string();
      if (value == nullptr) return WrongType(key, node, "a string");
      if (value->get().empty() && !allow_empty) {
        return Fail(LineOf(node) + ": " + key + " is empty");
      }
      *out = value->get().empty() ? "" : Resolve(value->get());
      if (was_set) *was_set = true;
      return Status::Ok();
    };
  }
  template <typename T>
  Setter Integer(T* out, int64_t min, int64_t max) {
    return [this, out, min, max](const std::string& key, const toml::node& node) -> Status {
      const auto* value = node.as_integer();
      if (value == nullptr) return WrongType(key, node, "an integer");
      if (value->get() < min || value->get() > max) {
        return Fail(LineOf(node) + ": " + key + " = " + std::to_string(value->get()) +
                    " is out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
      }
      *out = static_cast<T>(value->get());
      return Status::Ok();
    };
  }

  std::string Resolve(const std::string& path) const {
    fs::path p(path);
    if (p.is_relative()) p = fs::path(base_dir_) / p;
    return p.lexically_normal().string();
  }

  Status ParsePaths(const toml::table& table) {
    Paths& p = config_->paths;
    return ReadKeys(table, "paths",
                    {{"share_dir", Path(&p.share_dir)},
                     {"state_dir", Path(&p.state_dir)},
                     {"log_dir", Path(&p.log_dir)},
                     {"run_dir", Path(&p.run_dir)}});
  }

  Status ParseVm(const toml::table& table) {
    VmConfig& vm = config_->vm;
    return ReadKeys(
        table, "vm",
        {{"vmm", String(&vm.vmm)},
         {"kernel_path", Path(&vm.kernel_path, &kernel_set_)},
         {"initrd_path", Path(&vm.initrd_path, &initrd_set_)},
         {"kernel_cmdline", String(&vm.kernel_cmdline)},
         {"vcpus", Integer(&vm.vcpus, 1, 255)},
         {"max_vcpus", Integer(&vm.max_vcpus, 1, 255)},
         {"memory_mib", Integer(&vm.memory_mib, 64, 1 << 20)},
         {"max_memory_mib", Integer(&vm.max_memory_mib, 64, 1 << 20)},
         {"guest_overhead_mib", Integer(&vm.guest_overhead_mib, 0, 1 << 16)},
         {"guest_connect_timeout_ms", Integer(&vm.guest_connect_timeout_ms, 100, 3600 * 1000)},
         {"console_log_retention_s", Integer(&vm.console_log_retention_s, 0, 10 * 365 * 24 * 3600)},
         {"guest_call_timeout_ms", Integer(&vm.guest_call_timeout_ms, 100, 3600 * 1000)},
         {"kill_timeout_ms", Integer(&vm.kill_timeout_ms, 100, 600 * 1000)}});
  }

  Status ParseNetwork(const toml::table& table) {
    return ReadKeys(table, "network", {{"mode", String(&config_->network.mode)}});
  }

  Status ParseStorage(const toml::table& table) {
    return ReadKeys(table, "storage", {{"driver", String(&config_->storage.driver)}});
  }

  Status ParseLog(const toml::table& table) {
    return ReadKeys(table, "log",
                    {{"level", String(&config_->log.level)},
                     {"file", Path(&config_->log.file, nullptr, true)}});
  }

  Status ParsePlugins(const toml::table& plugins) {
    for (const auto& [kind_key, kind_node] : plugins) {
      std::string kind(kind_key.str());
      std::string where = "plugins." + kind;
      if (kind != "vmm" && kind != "network" && kind != "storage") {
        return Fail(LineOf(kind_node) + ": unknown plugin kind in " + where +
                    ": use vmm, network or storage");
      }
      const toml::table* names = kind_node.as_table();
      if (names == nullptr) return WrongType(where, kind_node, "a table");
      for (const auto& [name_key, name_node] : *names) {
        std::string name(name_key.str());
        const toml::table* decl_table = name_node.as_table();
        if (decl_table == nullptr) return WrongType(where + "." + name, name_node, "a table");
        BBX_RETURN_IF_ERROR(ParsePlugin(kind, name, *decl_table, name_node));
      }
    }
    return Status::Ok();
  }

  Status ParsePlugin(const std::string& kind, const std::string& name, const toml::table& table,
                     const toml::node& node) {
    std::string where = "plugins." + kind + "." + name;
    PluginDecl decl{kind, name, "", static_cast<uint32_t>(node.source().begin.line), "", {}};
    toml::table plugin_config;
    for (const auto& [key_text, value] : table) {
      std::string key(key_text.str());
      if (key == "path") {
        BBX_RETURN_IF_ERROR(Path(&decl.path)(where + ".path", value));
      } else if (key == "config") {
        const toml::table* config_table = value.as_table();
        if (config_table == nullptr) return WrongType(where + ".config", value, "a table");
        plugin_config = *config_table;
      } else {
        return Fail(LineOf(value) + ": unknown key " + where + "." + key +
                    " (a plugin table has path and config; the plugin's own keys go in " + where +
                    ".config)");
      }
    }
    if (decl.path.empty()) {
      return Fail(LineOf(node) + ": plugin " + kind + "/" + name + " has no path: add path = " +
                  "\"plugins/" + kind + "-" + name + ".so\" under [" + where + "]");
    }
    plugin_configs_.push_back(std::move(plugin_config));
    config_->plugins.push_back(std::move(decl));
    return Status::Ok();
  }

 public:
  // Orders the plugin tables as declared, then records their keys and text.
  Status FinishPlugins() {
    // toml++ iterates keys sorted; plugins load in the order the file declares them.
    std::vector<size_t> order(config_->plugins.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return config_->plugins[a].line < config_->plugins[b].line;
    });
    std::vector<PluginDecl> decls;
    std::vector<toml::table> tables;
    for (size_t i : order) {
      decls.push_back(std::move(config_->plugins[i]));
      tables.push_back(std::move(plugin_configs_[i]));
    }
    config_->plugins = std::move(decls);
    plugin_configs_ = std::move(tables);
    for (size_t i = 0; i < config_->plugins.size(); ++i) {
      PluginDecl& decl = config_->plugins[i];
      toml::table& table = plugin_configs_[i];
      for (const auto& [key, value] : table) {
        decl.settings.push_back(
            PluginSetting{std::string(key.str()), TypeOf(value), LineOf(value)});
      }
      std::ostringstream text;
      text << table;
      decl.config_toml = text.str();
    }
    return Status::Ok();
  }

 private:
  std::string source_;
  std::string base_dir_;
  Config* config_;
  std::vector<toml::table> plugin_configs_;
  bool kernel_set_ = false;
  bool initrd_set_ = false;
};

Status ApplyEnvironment(Config& config, const std::string& source) {
  if (const char* dir = GetEnv("BEACON_SHARE_DIR")) config.paths.share_dir = dir;
  if (const char* dir = GetEnv("BEACON_STATE_DIR")) config.paths.state_dir = dir;
  if (const char* dir = GetEnv("BEACON_LOG_DIR")) config.paths.log_dir = dir;
  if (const char* level = GetEnv("BEACONBOX_LOG_LEVEL")) config.log.level = level;
  // BEACON_CNI_MODE chooses which network plugin runs (network.mode), a host-level
  // choice; the CNI plugin's own variables (BEACON_CNI_BIN_DIR, ...) are in its schema.
  if (const char* mode = GetEnv("BEACON_CNI_MODE")) {
    std::string value = mode;
    if (value == "1" || value == "true" || value == "yes" || value == "on") {
      config.network.mode = "cni";
    } else if (value != "0" && value != "false" && value != "no" && value != "off") {
      return MakeError(ErrorCode::kInvalidArgument,
                       "BEACON_CNI_MODE=" + value + " is not understood: use 1 or 0");
    }
  }
  return Status::Ok();
}

Status CheckConsistency(const Config& config) {
  auto fail = [&](const std::string& message) {
    return MakeError(ErrorCode::kInvalidArgument, "config " + config.source + ": " + message);
  };
  const VmConfig& vm = config.vm;
  if (vm.max_vcpus < vm.vcpus) {
    return fail("vm.max_vcpus (" + std::to_string(vm.max_vcpus) + ") is below vm.vcpus (" +
                std::to_string(vm.vcpus) + ")");
  }
  if (vm.max_memory_mib < vm.memory_mib) {
    return fail("vm.max_memory_mib (" + std::to_string(vm.max_memory_mib) +
                ") is below vm.memory_mib (" + std::to_string(vm.memory_mib) + ")");
  }
  if (vm.vmm.empty()) return fail("vm.vmm is empty: name a vmm plugin, e.g. \"qemu\"");
  if (config.storage.driver.empty()) return fail("storage.driver is empty: e.g. \"virtiofs\"");
  if (config.network.mode.empty())
    return fail("network.mode is empty: e.g. \"bridge\" or \"none\"");
  const std::string& level = config.log.level;
  if (level != "trace" && level != "debug" && level != "info" && level != "warn" &&
      level != "error" && level != "off") {
    return fail("log.level \"" + level +
                "\" is unknown: use trace, debug, info, warn, error or off");
  }
  return Status::Ok();
}

}  // namespace

const char* ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kString:
      return "a string";
    case ValueType::kInteger:
      return "an integer";
    case ValueType::kBoolean:
      return "a boolean";
    case ValueType::kStringArray:
      return "an array of strings";
    case ValueType::kOther:
      break;
  }
  return "another type";
}

std::string SelfDirectory() {
  std::error_code error;
  fs::path self = fs::read_symlink("/proc/self/exe", error);
  return error ? "" : self.parent_path().string();
}

std::string FindGuestFile(GuestFile which, const Paths& paths, std::string* origin) {
  const bool kernel = which == GuestFile::kKernel;
  std::string shared =
      paths.share_dir + (kernel ? "/kernel/beacon-kernel-x86_64" : "/kernel/beacon-initrd");
  auto set_origin = [&](const std::string& text) {
    if (origin) *origin = text;
  };
  if (GetEnv("BEACON_SHARE_DIR") != nullptr) {
    set_origin("BEACON_SHARE_DIR");
    return shared;
  }
  std::error_code error;
  if (fs::exists(shared, error)) {
    set_origin("paths.share_dir");
    return shared;
  }
  std::string self_dir = SelfDirectory();
  if (!self_dir.empty()) {
    std::string beside = self_dir + (kernel ? "/beaconbox-kernel-x86_64" : "/beaconbox-initrd");
    if (fs::exists(beside, error)) {
      set_origin("next to " + self_dir + "/");
      return beside;
    }
  }
  set_origin("paths.share_dir");
  return shared;
}

Result<Config> ParseConfig(std::string_view text, const std::string& source) {
  Config config;
  config.source = source;
  Parser parser(source, &config);
  try {
    toml::table root = toml::parse(text, std::string_view(source));
    BBX_RETURN_IF_ERROR(parser.Parse(root));
  } catch (const toml::parse_error& error) {
    std::string description(error.description());
    std::string where = "config " + source + ": line " + std::to_string(error.source().begin.line);
    // A plugin table given twice is TOML's table redefinition: say it in our terms.
    size_t table = description.find("'plugins.");
    if (description.find("redefine") != std::string::npos && table != std::string::npos) {
      std::string name = description.substr(table + 9);
      name = name.substr(0, name.find('\''));
      if (size_t dot = name.find('.'); dot != std::string::npos) name[dot] = '/';
      return MakeError(ErrorCode::kAlreadyExists, where + ": plugin " + name + " declared twice (" +
                                                      description + "): keep one");
    }
    return MakeError(ErrorCode::kInvalidArgument, where + ": " + description);
  } catch (const std::exception& error) {
    return MakeError(ErrorCode::kInvalidArgument, "config " + source + ": " + error.what());
  }
  BBX_RETURN_IF_ERROR(ApplyEnvironment(config, source));
  BBX_RETURN_IF_ERROR(parser.FinishPlugins());
  // BEACON_SHARE_DIR beats the file; otherwise the file; otherwise the lookup.
  if (!parser.kernel_set() || GetEnv("BEACON_SHARE_DIR") != nullptr) {
    config.vm.kernel_path =
        FindGuestFile(GuestFile::kKernel, config.paths, &config.vm.kernel_path_origin);
  } else {
    config.vm.kernel_path_origin = "vm.kernel_path";
  }
  if (!parser.initrd_set() || GetEnv("BEACON_SHARE_DIR") != nullptr) {
    config.vm.initrd_path =
        FindGuestFile(GuestFile::kInitrd, config.paths, &config.vm.initrd_path_origin);
  } else {
    config.vm.initrd_path_origin = "vm.initrd_path";
  }
  BBX_RETURN_IF_ERROR(CheckConsistency(config));
  return config;
}

bool ApplyPluginEnvOverride(PluginDecl& decl, const std::string& key, const std::string& env_var,
                            ValueType type) {
  const char* value = GetEnv(env_var.c_str());
  if (value == nullptr) return false;
  toml::table table;
  try {
    table = toml::parse(decl.config_toml);
  } catch (const toml::parse_error&) {
    return false;  // written by FinishPlugins from a parsed table: cannot happen
  }
  const std::string given(value);
  ValueType given_type = ValueType::kString;
  if (type == ValueType::kBoolean &&
      (given == "1" || given == "true" || given == "0" || given == "false")) {
    table.insert_or_assign(key, given == "1" || given == "true");
    given_type = ValueType::kBoolean;
  } else {
    table.insert_or_assign(key, given);
  }
  std::ostringstream text;
  text << table;
  decl.config_toml = text.str();
  auto known = std::find_if(decl.settings.begin(), decl.settings.end(),
                            [&](const PluginSetting& setting) { return setting.key == key; });
  PluginSetting setting{key, given_type, env_var};
  if (known != decl.settings.end()) {
    *known = setting;
  } else {
    decl.settings.push_back(setting);
  }
  return true;
}

Result<Config> LoadConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return MakeError(ErrorCode::kNotFound,
                     "config " + path + ": cannot read it: " + std::strerror(errno));
  }
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxConfigBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "config " + path + ": larger than 1 MiB");
  }
  return ParseConfig(text, fs::absolute(path).lexically_normal().string());
}

Result<std::string> FindConfigFile() {
  if (const char* path = GetEnv(kConfigEnv)) return std::string(path);
  std::error_code error;
  if (fs::exists(kDefaultConfigPath, error)) return std::string(kDefaultConfigPath);
  std::string self_dir = SelfDirectory();
  std::string beside = self_dir.empty() ? "" : self_dir + "/config.toml";
  if (!beside.empty() && fs::exists(beside, error)) return beside;
  return MakeError(ErrorCode::kNotFound,
                   std::string("no configuration: BEACONBOX_CONFIG is unset, ") +
                       kDefaultConfigPath + " does not exist, nor does " +
                       (beside.empty() ? "config.toml next to this binary" : beside) +
                       ": copy config/config.toml to " + kDefaultConfigPath);
}

Result<Config> LoadConfig() {
  BBX_ASSIGN_OR_RETURN(std::string path, FindConfigFile());
  return LoadConfigFile(path);
}

}  // namespace beaconbox::config
