// One plugin shared object, loaded and negotiated: the ABI's entry, its answer, its
// ops tables and (after Init) its instance. The destructor calls fini, then unloads.
// Every call into the plugin goes through Invoke (or InvokeForMessage), so every
// failure names the plugin and the hook. Used by PluginHost, beaconbox-ctl and the
// ABI conformance tests; not by the shim directly.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

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

// Collects what a plugin writes into a bbx_sink (bounded).
class SinkBuffer {
 public:
  bbx_sink get() { return bbx_sink{this, &SinkBuffer::Write}; }
  bool written() const { return written_; }
  const std::string& data() const { return data_; }

 private:
  static int Write(void* context, const uint8_t* bytes, size_t len);
  std::string data_;
  bool written_ = false;
};

ErrorCode ToErrorCode(bbx_status status);
const char* StatusName(bbx_status status);
const char* KindName(bbx_plugin_kind kind);

// One hook of an ops table, as the loader knows it: its C name, which table it is in,
// whether a plugin must have it, and whether this plugin does (non-NULL and within
// the table's struct_size).
struct OpEntry {
  const char* name;
  bool required;
  bool present;
};

class LoadedPlugin {
 public:
  // Loads `path` (RTLD_NOW | RTLD_LOCAL), calls its entry with the host's ABI range and
  // checks the answer: ABI version in range, struct sizes, kind/name (when
  // `expected_kind`/`expected_name` are not empty), config schema, required hooks
  // present. Each error starts with `context` (e.g. "config /etc/beaconbox/config.toml:
  // plugin vmm/qemu").
  static Result<std::shared_ptr<LoadedPlugin>> Open(const std::string& path,
                                                    const std::string& expected_kind,
                                                    const std::string& expected_name,
                                                    const std::string& context);
  ~LoadedPlugin();
  LoadedPlugin(const LoadedPlugin&) = delete;
  LoadedPlugin& operator=(const LoadedPlugin&) = delete;

  // What PluginHost, `beaconbox-ctl check` and `plugins` do with a declared plugin:
  // applies the environment variables its schema names (config::ApplyPluginEnvOverride),
  // validates the table against the schema, then calls init.
  Status Configure(config::PluginDecl decl, const config::Paths& paths);
  // Refuses keys the plugin's schema does not declare and values of the wrong type.
  Status ValidateSettings(const std::vector<config::PluginSetting>& settings) const;
  // Calls init once with the config table as TOML text; the plugin's own message is
  // shown on failure.
  Status Init(const std::string& config_toml, const config::Paths& paths);

  // Common hooks after Init; kNotImplemented when the plugin lacks them.
  Result<pluginapi::CheckReport> Check() const;
  // A plugin without the hook has no optional capability: an empty message.
  Result<pluginapi::Capabilities> Capabilities() const;

  const PluginInfo& info() const { return info_; }
  // "vmm plugin qemu", for messages.
  const std::string& label() const { return label_; }
  const std::string& context() const { return context_; }
  bbx_plugin_entry_fn entry() const { return entry_; }
  const bbx_entry_response& response() const { return response_; }
  bbx_plugin_kind kind() const { return response_.kind; }
  const bbx_plugin_common_ops& common() const { return *response_.common_ops; }
  bbx_plugin* instance() const { return instance_; }
  // The kind's ops table; only valid for that kind. Each member is read only after
  // Has(name) said it is within struct_size.
  const bbx_vmm_ops* vmm_ops() const { return static_cast<const bbx_vmm_ops*>(response_.kind_ops); }
  const bbx_network_ops* network_ops() const {
    return static_cast<const bbx_network_ops*>(response_.kind_ops);
  }
  const bbx_storage_ops* storage_ops() const {
    return static_cast<const bbx_storage_ops*>(response_.kind_ops);
  }
  // Every hook of the common and the kind's table with its presence.
  const std::vector<OpEntry>& ops() const { return ops_; }
  // True when hook `op` is present (non-NULL, within its table's struct_size).
  bool Has(const char* op) const;

  // The one path of every call into the plugin: `call` receives the error buffer and
  // returns the hook's status. An absent hook is kNotImplemented and is not called;
  // a failure becomes an Error "<kind> plugin <name>: <op>: <plugin's message>".
  // `failure_prefix` replaces "<kind> plugin <name>: <op>: " where the caller's context
  // names both already.
  template <typename Call>
  Status Invoke(const char* op, Call&& call, const std::string* failure_prefix = nullptr) const {
    if (!Has(op)) return NotImplemented(op);
    ErrorBuffer buffer;
    bbx_status status = std::forward<Call>(call)(buffer.get());
    if (status == BBX_OK) return Status::Ok();
    if (failure_prefix != nullptr) {
      return MakeError(ToErrorCode(status), *failure_prefix + buffer.Message(StatusName(status)));
    }
    return CallError(op, status, buffer);
  }
  // Invoke for a hook that writes one `Message` into a sink: `call` receives the sink
  // and the error buffer. The message must be written and must parse.
  template <typename Message, typename Call>
  Result<Message> InvokeForMessage(const char* op, Call&& call) const {
    SinkBuffer sink;
    BBX_RETURN_IF_ERROR(Invoke(op, [&](bbx_error* error) { return call(sink.get(), error); }));
    Message message;
    BBX_RETURN_IF_ERROR(ParseResult(op, sink, message.GetTypeName(), [&](const std::string& bytes) {
      return message.ParseFromString(bytes);
    }));
    return message;
  }

  // An error for an optional hook the plugin leaves out.
  Error NotImplemented(const char* op) const;
  // Turns a failed call's status and message into an Error naming the plugin and op.
  Error CallError(const char* op, bbx_status status, const ErrorBuffer& buffer) const;

 private:
  LoadedPlugin() = default;
  Status CheckAnswer(const std::string& expected_kind, const std::string& expected_name);
  Status ReadSchema();
  template <typename Parse>
  Status ParseResult(const char* op, const SinkBuffer& sink, const std::string& type,
                     Parse&& parse) const {
    if (!sink.written()) {
      return MakeError(ErrorCode::kInternal,
                       label_ + ": " + op + " succeeded but wrote no " + type);
    }
    if (!parse(sink.data())) {
      return MakeError(ErrorCode::kInternal, label_ + ": " + op + " wrote an unparsable " + type);
    }
    return Status::Ok();
  }

  std::unique_ptr<boost::dll::shared_library> library_;  // destroyed last
  bbx_plugin_entry_fn entry_ = nullptr;
  bbx_entry_response response_{};
  std::vector<OpEntry> ops_;
  PluginInfo info_;
  std::string label_;
  std::string context_;
  // Host services handed to init; they and their strings outlive the instance.
  bbx_host_services services_{};
  config::Paths paths_;
  bbx_plugin* instance_ = nullptr;
};

}  // namespace beaconbox::plugin_host
