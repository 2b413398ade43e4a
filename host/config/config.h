// beaconbox's configuration: one TOML file (config/config.toml documents every key),
// plus the host-level BEACON_* environment overrides, which win over the file. A
// plugin's own variables (CLOUD_HYPERVISOR_PATH, BEACON_CNI_BIN_DIR, ...) belong to its
// config schema: each key names the variable overriding it (bbx_config_key.env_var),
// and the plugin host applies it with ApplyPluginEnvOverride once the schema is known.
//
// Where the file is: $BEACONBOX_CONFIG, else /etc/beaconbox/config.toml, else
// config.toml next to the running binary (the one CMake writes into _output/).
// Relative paths in the file (plugin paths, vm.kernel_path, vm.initrd_path) are
// relative to the directory holding the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::config {

constexpr char kDefaultConfigPath[] = "/etc/beaconbox/config.toml";
constexpr char kConfigEnv[] = "BEACONBOX_CONFIG";

struct Paths {
  std::string share_dir = "/usr/share/beacon";  // BEACON_SHARE_DIR
  std::string state_dir = "/var/lib/beacon";    // BEACON_STATE_DIR
  std::string log_dir = "/var/log/beacon";      // BEACON_LOG_DIR
  std::string run_dir = "/run/beacon";
};

struct VmConfig {
  std::string vmm = "qemu";  // name of the vmm plugin to use
  std::string kernel_path;   // resolved, absolute (see FindGuestFile)
  std::string initrd_path;
  std::string kernel_path_origin;  // where kernel_path came from, for messages
  std::string initrd_path_origin;
  std::string kernel_cmdline;
  uint32_t vcpus = 1;
  uint32_t max_vcpus = 2;
  uint64_t memory_mib = 512;
  uint64_t max_memory_mib = 2048;
  // What the guest itself needs on top of a container's memory limit (kernel, agent,
  // crun): a VM sized from a limit gets limit + this.
  uint64_t guest_overhead_mib = 128;
  uint32_t guest_connect_timeout_ms = 60000;
  // How long a deleted container's console log is kept (0: removed at its delete).
  uint32_t console_log_retention_s = 7 * 24 * 3600;
  // Deadline of each call the shim makes to the guest agent (Wait excepted).
  uint32_t guest_call_timeout_ms = 60000;
  // How long after a SIGKILL of a container's init the shim waits for the guest to
  // report its exit before it stops the VM itself.
  uint32_t kill_timeout_ms = 5000;
};

struct NetworkConfig {
  std::string mode = "bridge";  // the network plugin's name, or "none"
};

struct StorageConfig {
  std::string driver = "virtiofs";  // the storage plugin's name
};

struct LogConfig {
  std::string level = "info";  // BEACONBOX_LOG_LEVEL
  std::string file;            // empty: stderr
};

// The value types a plugin's config schema knows (bbx_config_type), plus kOther for
// anything else TOML can express (floats, tables, dates, mixed arrays).
enum class ValueType { kString, kInteger, kBoolean, kStringArray, kOther };
const char* ValueTypeName(ValueType type);

// One key of a plugin's [plugins.<kind>.<name>.config] table.
struct PluginSetting {
  std::string key;
  ValueType type = ValueType::kOther;
  std::string origin;  // "line 12", or the environment variable that set it
};

// One [plugins.<kind>.<name>] table.
struct PluginDecl {
  std::string kind;  // "vmm", "network", "storage"
  std::string name;
  std::string path;         // absolute
  uint32_t line = 0;        // of its table in the file
  std::string config_toml;  // the plugin's config table, re-serialized as TOML
  std::vector<PluginSetting> settings;
};

struct Config {
  std::string source;  // the file it was read from ("" for built-in defaults)
  Paths paths;
  VmConfig vm;
  NetworkConfig network;
  StorageConfig storage;
  LogConfig log;
  std::vector<PluginDecl> plugins;
};

// $BEACONBOX_CONFIG, else /etc/beaconbox/config.toml if it exists, else config.toml
// next to the running binary if it exists. Fails naming all three when none is there.
Result<std::string> FindConfigFile();

// Parses `text` as if read from `source` (which also anchors relative paths), then
// applies the environment overrides. Unknown keys and wrong value types are refused
// with one line naming the file, the key and its line.
Result<Config> ParseConfig(std::string_view text, const std::string& source);

// When `env_var` is set and not empty, sets `key` of the plugin's table to its value
// in decl.config_toml and decl.settings (origin: the variable's name) and returns
// true; otherwise leaves `decl` alone and returns false. The value is a string; for a
// `type` kBoolean key "1"/"true" and "0"/"false" become the boolean (any other text
// stays a string, which the plugin host then refuses naming the variable).
bool ApplyPluginEnvOverride(PluginDecl& decl, const std::string& key, const std::string& env_var,
                            ValueType type = ValueType::kString);

// Reads and parses `path`.
Result<Config> LoadConfigFile(const std::string& path);

// FindConfigFile + LoadConfigFile.
Result<Config> LoadConfig();

// The directory of the running binary (/proc/self/exe), "" if unknown.
std::string SelfDirectory();

enum class GuestFile { kKernel, kInitrd };

// Where the guest kernel or initrd is when the file does not say: BEACON_SHARE_DIR's
// kernel/ (if set), else <share_dir>/kernel/beacon-{kernel-x86_64,initrd} if present,
// else beaconbox-{kernel-x86_64,initrd} next to the running binary (_output/) if
// present, else the share_dir path (which then fails `beaconbox-ctl check`).
// `origin` receives a short description of the choice.
std::string FindGuestFile(GuestFile which, const Paths& paths, std::string* origin);

}  // namespace beaconbox::config
