#include "plugins/net-cni/conflist.h"

#include <algorithm>
#include <filesystem>

#include "common/base/bounded_json.h"
#include "common/base/file_util.h"
#include "plugins/net-cni/cni_result.h"

namespace beaconbox::cni {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

Error Bad(const std::string& file, const std::string& what) {
  return MakeError(ErrorCode::kInvalidArgument, "CNI config " + file + ": " + what);
}

bool IsPlainName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) {
                       return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                              c == '.';
                     }) &&
         name != "." && name != "..";
}

Result<CniPluginConf> PluginOf(const json& object, const std::string& file,
                               const std::string& where) {
  if (!object.is_object()) return Bad(file, where + " is not an object");
  auto type = object.find("type");
  if (type == object.end() || !type->is_string()) return Bad(file, where + " has no type");
  CniPluginConf plugin;
  plugin.type = type->get<std::string>();
  if (!IsPlainName(plugin.type)) {
    return Bad(file, where + ".type \"" + PrintableOneLine(plugin.type.substr(0, 64)) +
                         "\" is not a plugin name (letters, digits, - _ .)");
  }
  if (auto caps = object.find("capabilities"); caps != object.end()) {
    if (!caps->is_object()) return Bad(file, where + ".capabilities is not an object");
    for (const auto& [name, enabled] : caps->items()) {
      if (enabled.is_boolean() && enabled.get<bool>()) plugin.capabilities.push_back(name);
    }
  }
  plugin.conf = object;
  return plugin;
}

}  // namespace

Result<CniConfList> ParseConfList(std::string_view text, const std::string& file) {
  JsonLimits limits;
  limits.max_bytes = 1 << 20;
  limits.max_depth = 32;
  auto parsed = ParseBoundedJson(text, "CNI config " + file, limits);
  if (!parsed.ok()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     parsed.error().message + ": fix the file or remove it");
  }
  const json& root = *parsed;
  if (!root.is_object()) return Bad(file, "not a JSON object");
  CniConfList list;
  list.file = file;
  auto name = root.find("name");
  if (name == root.end() || !name->is_string() || !IsPlainName(name->get<std::string>())) {
    return Bad(file, "no usable \"name\" (letters, digits, - _ .)");
  }
  list.name = name->get<std::string>();
  auto version = root.find("cniVersion");
  if (version == root.end() || !version->is_string()) return Bad(file, "no \"cniVersion\"");
  list.cni_version = version->get<std::string>();
  if (!IsSupportedCniVersion(list.cni_version)) {
    return Bad(file, "cniVersion \"" + PrintableOneLine(list.cni_version.substr(0, 16)) +
                         "\" is not supported: use 0.4.0 or 1.0.0");
  }
  if (auto disable = root.find("disableCheck"); disable != root.end()) {
    if (disable->is_boolean()) {
      list.disable_check = disable->get<bool>();
    } else if (disable->is_string()) {
      list.disable_check = disable->get<std::string>() == "true";
    }
  }
  if (auto plugins = root.find("plugins"); plugins != root.end()) {
    if (!plugins->is_array() || plugins->empty()) {
      return Bad(file, "\"plugins\" must be a non-empty array");
    }
    if (plugins->size() > 32) return Bad(file, "more than 32 plugins");
    for (size_t i = 0; i < plugins->size(); ++i) {
      BBX_ASSIGN_OR_RETURN(CniPluginConf plugin,
                           PluginOf((*plugins)[i], file, "plugins[" + std::to_string(i) + "]"));
      list.plugins.push_back(std::move(plugin));
    }
  } else if (root.contains("type")) {  // a single plugin's .conf
    BBX_ASSIGN_OR_RETURN(CniPluginConf plugin, PluginOf(root, file, "the config"));
    list.plugins.push_back(std::move(plugin));
  } else {
    return Bad(file, "neither \"plugins\" nor \"type\"");
  }
  return list;
}

Result<CniConfList> LoadConfList(const std::string& conf_dir, const std::string& network_name) {
  std::error_code error;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(conf_dir, error)) {
    const auto ext = entry.path().extension();
    if ((ext == ".conflist" || ext == ".conf" || ext == ".json") && entry.is_regular_file(error)) {
      files.push_back(entry.path());
    }
    if (files.size() > 1024) break;
  }
  if (error) {
    return MakeError(ErrorCode::kNotFound, "CNI config directory " + conf_dir + ": " +
                                               error.message() +
                                               " (config key conf_dir, env BEACON_CNI_CONF_DIR)");
  }
  std::sort(files.begin(), files.end());
  std::string skipped;
  for (const auto& path : files) {
    auto text = ReadSmallFile(path.string(), 1 << 20);
    if (!text.ok()) continue;
    auto list = ParseConfList(*text, path.string());
    if (!list.ok()) {
      if (path.stem() == network_name) return list.error();
      skipped += " " + path.filename().string();
      continue;
    }
    if (list->name == network_name) return list;
  }
  return MakeError(ErrorCode::kNotFound,
                   "no CNI network \"" + network_name + "\" in " + conf_dir +
                       (skipped.empty() ? "" : " (unparsable, skipped:" + skipped + ")") +
                       ": write a .conflist with that name or set network_name "
                       "(env BEACON_CNI_NETWORK)");
}

Result<std::vector<PortMapping>> ParsePortMappings(std::string_view text) {
  auto bad = [](const std::string& what) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string("annotation ") + kPortMappingsAnnotation + ": " + what);
  };
  JsonLimits limits;
  limits.max_bytes = 64 << 10;
  limits.max_depth = 4;
  auto parsed =
      ParseBoundedJson(text, std::string("annotation ") + kPortMappingsAnnotation, limits);
  if (!parsed.ok()) return parsed.error();
  if (!parsed->is_array()) return bad("must be a JSON array");
  if (parsed->size() > 64) return bad("more than 64 mappings");
  std::vector<PortMapping> mappings;
  for (const json& entry : *parsed) {
    if (!entry.is_object()) return bad("each mapping must be an object");
    PortMapping mapping;
    for (auto [key, out] : {std::pair{"hostPort", &mapping.host_port},
                            std::pair{"containerPort", &mapping.container_port}}) {
      auto it = entry.find(key);
      if (it == entry.end() || !it->is_number_integer() || it->get<int64_t>() < 1 ||
          it->get<int64_t>() > 65535) {
        return bad(std::string(key) + " must be a port number 1..65535");
      }
      *out = static_cast<int>(it->get<int64_t>());
    }
    if (auto it = entry.find("protocol"); it != entry.end()) {
      if (!it->is_string()) return bad("protocol must be tcp, udp or sctp");
      mapping.protocol = it->get<std::string>();
      std::transform(mapping.protocol.begin(), mapping.protocol.end(), mapping.protocol.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (mapping.protocol != "tcp" && mapping.protocol != "udp" && mapping.protocol != "sctp") {
        return bad("protocol must be tcp, udp or sctp");
      }
    }
    if (auto it = entry.find("hostIP"); it != entry.end()) {
      if (!it->is_string() ||
          (!it->get<std::string>().empty() && !IsIpAddress(it->get<std::string>()))) {
        return bad("hostIP must be an IP address");
      }
      mapping.host_ip = it->get<std::string>();
    }
    mappings.push_back(std::move(mapping));
  }
  return mappings;
}

json RuntimeConfigFor(const std::vector<PortMapping>& mappings) {
  json config = json::object();
  if (mappings.empty()) return config;
  json list = json::array();
  for (const auto& mapping : mappings) {
    json entry = {{"hostPort", mapping.host_port},
                  {"containerPort", mapping.container_port},
                  {"protocol", mapping.protocol}};
    if (!mapping.host_ip.empty()) entry["hostIP"] = mapping.host_ip;
    list.push_back(std::move(entry));
  }
  config["portMappings"] = std::move(list);
  return config;
}

std::string PluginStdin(const CniConfList& list, size_t index, const json& runtime_config,
                        const json& prev_result) {
  const CniPluginConf& plugin = list.plugins.at(index);
  json conf = plugin.conf;
  conf["name"] = list.name;
  conf["cniVersion"] = list.cni_version;
  json runtime = json::object();
  for (const auto& capability : plugin.capabilities) {
    if (auto it = runtime_config.find(capability); it != runtime_config.end()) {
      runtime[capability] = *it;
    }
  }
  conf.erase("runtimeConfig");
  if (!runtime.empty()) conf["runtimeConfig"] = std::move(runtime);
  conf.erase("prevResult");
  if (!prev_result.is_null()) conf["prevResult"] = prev_result;
  return conf.dump();
}

}  // namespace beaconbox::cni
