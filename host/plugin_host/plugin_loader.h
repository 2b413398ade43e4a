// One plugin shared object, loaded and negotiated: the ABI's entry, its answer, its
// ops table and (after Init) its instance. The destructor calls fini, then unloads.
// Used by PluginHost and by the ABI conformance tests; not by the shim.
#pragma once

#include <memory>
#include <string>

#include "beaconbox/plugin_abi.h"
#include "common/base/result.h"
#include "host/config/config.h"
#include "host/plugin_host/plugin_host.h"

namespace boost::dll {
class shared_library;
}

namespace beaconbox::plugin_host {

// A caller-owned error buffer for one call across the ABI.
class ErrorBuffer {
 public:
  ErrorBuffer() { text_[0] = '\0'; }
  bbx_error* get() { return &error_; }
  // The message the plugin wrote, one line, or `fallback` when it wrote none.
  std::string Message(const std::string& fallback) const;

 private:
  char text_[1024];
  bbx_error error_{text_, sizeof(text_)};
};

ErrorCode ToErrorCode(bbx_status status);
const char* StatusName(bbx_status status);
const char* KindName(bbx_plugin_kind kind);

class LoadedPlugin {
 public:
  // Loads `path` (RTLD_NOW | RTLD_LOCAL), calls its entry with the host's ABI range and
  // checks the answer: ABI version in range, struct sizes, kind/name (when
  // `expected_kind`/`expected_name` are not empty), required ops present. Each error
  // starts with `context` (e.g. "config /etc/beaconbox/config.toml: plugin vmm/qemu").
  static Result<std::shared_ptr<LoadedPlugin>> Open(const std::string& path,
                                                    const std::string& expected_kind,
                                                    const std::string& expected_name,
                                                    const std::string& context);
  ~LoadedPlugin();
  LoadedPlugin(const LoadedPlugin&) = delete;
  LoadedPlugin& operator=(const LoadedPlugin&) = delete;

  // Refuses keys the plugin's schema does not declare and values of the wrong type.
  Status ValidateSettings(const std::vector<config::PluginSetting>& settings) const;
  // Calls common.init once with the config table as TOML text; the plugin's own
  // message is shown on failure.
  Status Init(const std::string& config_toml, const config::Paths& paths);

  const PluginInfo& info() const { return info_; }
  // "vmm plugin qemu", for messages.
  const std::string& label() const { return label_; }
  const std::string& context() const { return context_; }
  bbx_plugin_entry_fn entry() const { return entry_; }
  const bbx_entry_response& response() const { return response_; }
  bbx_plugin_kind kind() const { return response_.kind; }
  const bbx_plugin_common_ops& common() const { return *common_; }
  bbx_plugin* instance() const { return instance_; }
  // The ops table as the kind's struct; only valid for that kind.
  const bbx_vmm_ops* vmm_ops() const { return static_cast<const bbx_vmm_ops*>(response_.ops); }
  const bbx_network_ops* network_ops() const {
    return static_cast<const bbx_network_ops*>(response_.ops);
  }
  const bbx_storage_ops* storage_ops() const {
    return static_cast<const bbx_storage_ops*>(response_.ops);
  }

  // An error for an optional op the plugin leaves NULL.
  Error NotImplemented(const char* op) const;
  // Turns a failed call's status and message into an Error naming the plugin and op.
  Error CallError(const char* op, bbx_status status, const ErrorBuffer& buffer) const;

 private:
  LoadedPlugin() = default;
  Status Check(const std::string& expected_kind, const std::string& expected_name);

  std::unique_ptr<boost::dll::shared_library> library_;  // destroyed last
  bbx_plugin_entry_fn entry_ = nullptr;
  bbx_entry_response response_{};
  const bbx_plugin_common_ops* common_ = nullptr;
  PluginInfo info_;
  std::string label_;
  std::string context_;
  // Host services handed to init; they and their strings outlive the instance.
  bbx_host_services services_{};
  config::Paths paths_;
  bbx_plugin* instance_ = nullptr;
};

}  // namespace beaconbox::plugin_host
