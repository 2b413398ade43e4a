// Header-only conveniences for plugins written in C++. Nothing here crosses the
// ABI: it only fills the C structures of plugin_abi.h from inside a plugin.
#ifndef BEACONBOX_PLUGIN_SUPPORT_HPP
#define BEACONBOX_PLUGIN_SUPPORT_HPP

#include <cstring>
#include <string>
#include <string_view>

#include "beaconbox/plugin_abi.h"

namespace bbx {

// Writes `message` into the caller's error buffer, truncated, NUL-terminated.
inline void SetError(bbx_error* error, std::string_view message) {
  if (error == nullptr || error->message == nullptr || error->capacity == 0) return;
  size_t n = message.size() < error->capacity - 1 ? message.size() : error->capacity - 1;
  std::memcpy(error->message, message.data(), n);
  error->message[n] = '\0';
}

inline bbx_status Fail(bbx_error* error, bbx_status status, std::string_view message) {
  SetError(error, message);
  return status;
}

// Hands serialized bytes to the caller's sink.
inline bbx_status WriteSink(bbx_sink sink, const std::string& bytes, bbx_error* error) {
  if (sink.host_write == nullptr) {
    return Fail(error, BBX_ERR_INVALID_ARGUMENT, "no result sink given");
  }
  if (sink.host_write(sink.context, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()) !=
      0) {
    return Fail(error, BBX_ERR_INTERNAL, "the host refused the result");
  }
  return BBX_OK;
}

inline std::string_view View(bbx_bytes bytes) {
  return {reinterpret_cast<const char*>(bytes.data), bytes.len};
}

// Logs through the host, when it offers a log callback.
inline void Log(const bbx_host_services* host, bbx_log_level level, const std::string& message) {
  if (host != nullptr && BBX_STRUCT_HAS(host, bbx_host_services, host_log) &&
      host->host_log != nullptr) {
    host->host_log(host->host_context, level, message.c_str());
  }
}

// One schema key; `env_var` names the environment variable overriding it, if any.
constexpr bbx_config_key ConfigKey(const char* name, bbx_config_type type,
                                   const char* default_value, const char* description,
                                   const char* env_var = nullptr) {
  return bbx_config_key{sizeof(bbx_config_key), type, name, default_value, description, env_var};
}

// Answers the host's entry request with `response` when the range overlaps.
inline bbx_status Negotiate(const bbx_entry_request* request, bbx_entry_response* response,
                            const bbx_entry_response& mine, bbx_error* error) {
  if (request == nullptr || response == nullptr) {
    return Fail(error, BBX_ERR_INVALID_ARGUMENT, "bbx_plugin_entry: NULL request or response");
  }
  if (request->abi_min > BBX_ABI_VERSION_CURRENT || request->abi_max < BBX_ABI_VERSION_CURRENT) {
    return Fail(error, BBX_ERR_ABI_MISMATCH,
                "plugin speaks ABI " + std::to_string(BBX_ABI_VERSION_CURRENT) + ", host offers " +
                    std::to_string(request->abi_min) + ".." + std::to_string(request->abi_max));
  }
  uint32_t host_size = response->struct_size;
  size_t n = host_size < sizeof(mine) ? host_size : sizeof(mine);
  std::memcpy(response, &mine, n);
  response->struct_size = static_cast<uint32_t>(n);
  return BBX_OK;
}

// The kind a plugin declares follows from the type of its ops table, so a plugin
// cannot declare one kind and hand the host another kind's table.
template <typename KindOps>
struct PluginKindOf;
template <>
struct PluginKindOf<bbx_vmm_ops> {
  static constexpr bbx_plugin_kind kValue = BBX_PLUGIN_KIND_VMM;
};
template <>
struct PluginKindOf<bbx_network_ops> {
  static constexpr bbx_plugin_kind kValue = BBX_PLUGIN_KIND_NETWORK;
};
template <>
struct PluginKindOf<bbx_storage_ops> {
  static constexpr bbx_plugin_kind kValue = BBX_PLUGIN_KIND_STORAGE;
};

// The whole of a C++ plugin's bbx_plugin_entry: describes the plugin (ABI version
// and struct sizes filled in here) and negotiates it with the host.
template <typename KindOps, size_t KeyCount>
bbx_status AnswerEntry(const bbx_entry_request* request, bbx_entry_response* response,
                       bbx_error* error, const char* name, const char* version,
                       const bbx_config_key (&config_keys)[KeyCount],
                       const bbx_plugin_common_ops& common_ops, const KindOps& kind_ops) {
  const bbx_entry_response mine = {
      .struct_size = sizeof(bbx_entry_response),
      .abi_version = BBX_ABI_VERSION_CURRENT,
      .kind = PluginKindOf<KindOps>::kValue,
      .name = name,
      .version = version,
      .config_keys = config_keys,
      .config_key_count = KeyCount,
      .common_ops = &common_ops,
      .kind_ops = &kind_ops,
  };
  return Negotiate(request, response, mine, error);
}

}  // namespace bbx

#endif  // BEACONBOX_PLUGIN_SUPPORT_HPP
