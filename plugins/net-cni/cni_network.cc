#include "plugins/net-cni/cni_network.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>

#include "common/base/bounded_json.h"
#include "common/base/file_util.h"
#include "plugins/common/check_report.h"
#include "plugins/common/child_process.h"
#include "plugins/common/container_names.h"
#include "plugins/common/netns.h"
#include "plugins/net-cni/netns_config.h"
#include "plugins/net-cni/tap_redirect.h"

namespace beaconbox::cni {

namespace pb = ::beaconbox::plugin::v1;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

using plugins::ContainerKeyName;
using plugins::IsContainerdName;

json ConfListJson(const CniConfList& list) {
  json plugins = json::array();
  for (const auto& plugin : list.plugins) plugins.push_back(plugin.conf);
  return {{"name", list.name},
          {"cniVersion", list.cni_version},
          {"disableCheck", list.disable_check},
          {"plugins", std::move(plugins)}};
}

std::string JoinDirs(const std::vector<std::string>& dirs) {
  std::string joined;
  for (const auto& dir : dirs) joined += (joined.empty() ? "" : ":") + dir;
  return joined;
}

}  // namespace

pb::NetworkAttachment AttachmentOfInterface(const InterfaceConfig& config, const std::string& netns,
                                            const std::string& tap_name) {
  pb::NetworkAttachment attachment;
  attachment.set_tap_name(tap_name);
  attachment.set_mac(config.mac);
  attachment.set_mtu(config.mtu);
  attachment.set_netns_path(netns);
  for (const auto& address : config.addresses) {
    auto* out = attachment.add_addresses();
    out->set_address(address.address);
    out->set_prefix_length(address.prefix_length);
  }
  for (const auto& route : config.routes) {
    auto* out = attachment.add_routes();
    out->set_destination(route.destination);
    out->set_gateway(route.gateway);
  }
  return attachment;
}

json ResultJsonOf(const InterfaceConfig& config, const std::string& ifname,
                  const std::string& netns) {
  json ips = json::array();
  for (const auto& address : config.addresses) {
    ips.push_back({{"address", address.address + "/" + std::to_string(address.prefix_length)},
                   {"interface", 0}});
  }
  json routes = json::array();
  for (const auto& route : config.routes) {
    json entry = {{"dst", route.destination}};
    if (!route.gateway.empty()) entry["gw"] = route.gateway;
    routes.push_back(std::move(entry));
  }
  return {
      {"cniVersion", "1.0.0"},
      {"interfaces", json::array({{{"name", ifname}, {"mac", config.mac}, {"sandbox", netns}}})},
      {"ips", std::move(ips)},
      {"routes", std::move(routes)}};
}

Result<CachedAttachment> ParseCachedAttachment(std::string_view text, const std::string& file) {
  auto parsed = ParseBoundedJson(text, "CNI cache " + file);
  if (!parsed.ok()) return parsed.error();
  const json& root = *parsed;
  auto bad = [&](const std::string& what) {
    return MakeError(ErrorCode::kInvalidArgument, "CNI cache " + file + ": " + what);
  };
  if (!root.is_object() || root.value("version", 0) != 1) return bad("not a version 1 cache");
  CachedAttachment cached;
  try {
    cached.container_namespace = root.at("namespace").get<std::string>();
    cached.container_id = root.at("id").get<std::string>();
    cached.cni_container_id = root.at("cniContainerId").get<std::string>();
    cached.ifname = root.at("ifName").get<std::string>();
    cached.netns = root.at("netns").get<std::string>();
    cached.owns_netns = root.at("ownsNetns").get<bool>();
    cached.tap_name = root.value("tap", std::string());
    cached.owns_tap = root.value("ownsTap", false);
    cached.configured_netns = root.value("configuredNetns", false);
    cached.owner_pid = root.value("ownerPid", int64_t{0});
    cached.owner_start_time = root.value("ownerStartTime", uint64_t{0});
    cached.created_unix = root.value("created", int64_t{0});
    cached.conf_file = root.value("confFile", std::string());
    cached.conf_list = root.at("confList");
    cached.runtime_config = root.value("runtimeConfig", json::object());
    cached.result = root.value("result", json());
  } catch (const json::exception& error) {
    return bad(std::string("malformed (") + error.what() + ")");
  }
  if (!IsValidInterfaceName(cached.ifname) || cached.netns.empty() || cached.netns[0] != '/') {
    return bad("bad ifName or netns");
  }
  return cached;
}

std::string SerializeCachedAttachment(const CachedAttachment& cached) {
  json root = {{"version", 1},
               {"namespace", cached.container_namespace},
               {"id", cached.container_id},
               {"cniContainerId", cached.cni_container_id},
               {"ifName", cached.ifname},
               {"netns", cached.netns},
               {"ownsNetns", cached.owns_netns},
               {"tap", cached.tap_name},
               {"ownsTap", cached.owns_tap},
               {"configuredNetns", cached.configured_netns},
               {"ownerPid", cached.owner_pid},
               {"ownerStartTime", cached.owner_start_time},
               {"created", cached.created_unix},
               {"confFile", cached.conf_file},
               {"confList", cached.conf_list},
               {"runtimeConfig", cached.runtime_config},
               {"result", cached.result}};
  return root.dump(2) + "\n";
}

Result<pb::NetworkAttachment> AttachmentFromResult(const CniResult& result,
                                                   const std::string& ifname,
                                                   const std::string& netns,
                                                   const std::string& fallback_mac) {
  int cni_index = -1;
  for (size_t i = 0; i < result.interfaces.size(); ++i) {
    const auto& interface = result.interfaces[i];
    if (interface.name == ifname && !interface.sandbox.empty()) cni_index = static_cast<int>(i);
  }
  pb::NetworkAttachment attachment;
  std::string mac = cni_index >= 0 ? result.interfaces[cni_index].mac : "";
  if (mac.empty()) mac = fallback_mac;
  attachment.set_mac(mac);
  attachment.set_netns_path(netns);
  // A route without a gateway goes through the first gateway of its own family.
  std::string first_gateway4, first_gateway6;
  for (const auto& ip : result.ips) {
    // The container side's addresses: those on the CNI interface, or on none named
    // (a TAP listed by tc-redirect-tap carries no address of its own).
    if (ip.interface >= 0 && ip.interface != cni_index &&
        result.interfaces[ip.interface].sandbox.empty()) {
      continue;
    }
    std::string address;
    unsigned prefix = 0;
    bool v4 = false;
    if (!ParseCidr(ip.address, &address, &prefix, &v4)) continue;
    auto* out = attachment.add_addresses();
    out->set_address(address);
    out->set_prefix_length(prefix);
    std::string& first_gateway = v4 ? first_gateway4 : first_gateway6;
    bool gateway_v4 = false;
    if (first_gateway.empty() && IsIpAddress(ip.gateway, &gateway_v4) && gateway_v4 == v4) {
      first_gateway = ip.gateway;
    }
  }
  if (attachment.addresses_size() == 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the CNI result gives " + ifname +
                         " no IP address: the list needs an IPAM plugin (e.g. host-local)");
  }
  for (const auto& route : result.routes) {
    bool v4 = false;
    if (!ParseCidr(route.destination, nullptr, nullptr, &v4)) continue;
    bool gateway_v4 = false;
    if (!route.gateway.empty() && (!IsIpAddress(route.gateway, &gateway_v4) || gateway_v4 != v4)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "the CNI result's route to " + route.destination + " goes through " +
                           route.gateway.substr(0, 64) +
                           ", an address of the other family: fix the list's routes");
    }
    const std::string& first_gateway = v4 ? first_gateway4 : first_gateway6;
    auto* out = attachment.add_routes();
    out->set_destination(route.destination);
    out->set_gateway(route.gateway.empty() ? first_gateway : route.gateway);
  }
  for (const auto& server : result.nameservers) {
    if (IsIpAddress(server)) attachment.add_dns_servers(server);
  }
  for (const auto& domain : result.search) attachment.add_dns_search(domain);
  return attachment;
}

CniNetwork::CniNetwork(CniConfig config, LogFn log)
    : config_(std::move(config)), log_(std::move(log)) {
  if (!log_) log_ = [](bool, const std::string&) {};
}

std::string CniNetwork::CachePath(const std::string& key) const {
  return config_.cache_dir + "/" + key + ".json";
}

Status CniNetwork::SaveCache(const CachedAttachment& cached) const {
  std::error_code error;
  fs::create_directories(config_.cache_dir, error);
  if (error) {
    return MakeError(ErrorCode::kPermission, "create CNI cache directory " + config_.cache_dir +
                                                 ": " + error.message() + " (config cache_dir)");
  }
  return WriteFileAtomic(CachePath(cached.cni_container_id), SerializeCachedAttachment(cached),
                         0600);
}

Result<std::string> CniNetwork::Invoke(const CniConfList& list, size_t index,
                                       const std::string& command, const CachedAttachment& cached,
                                       const json& prev_result) {
  const std::string& type = list.plugins[index].type;
  std::string binary;
  for (const auto& dir : config_.bin_dirs) {
    const std::string candidate = dir + "/" + type;
    if (::access(candidate.c_str(), X_OK) == 0) {
      binary = candidate;
      break;
    }
  }
  if (binary.empty()) {
    return MakeError(ErrorCode::kNotFound,
                     "CNI plugin \"" + type + "\" (" + list.file + ", plugins[" +
                         std::to_string(index) + "]) not found in " + JoinDirs(config_.bin_dirs) +
                         ": install it or set bin_dir (env BEACON_CNI_BIN_DIR)");
  }
  plugins::CapturedRunOptions options;
  options.env = {"CNI_COMMAND=" + command,
                 "CNI_CONTAINERID=" + cached.cni_container_id,
                 "CNI_NETNS=" + cached.netns,
                 "CNI_IFNAME=" + cached.ifname,
                 "CNI_ARGS=IgnoreUnknown=1;TC_REDIRECT_TAP_NAME=" + config_.tap_name,
                 "CNI_PATH=" + JoinDirs(config_.bin_dirs),
                 "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  options.stdin_text = PluginStdin(list, index, cached.runtime_config, prev_result);
  options.timeout = std::chrono::seconds(config_.timeout_seconds);
  auto run = plugins::RunCaptured({binary}, options);
  const std::string who = "CNI plugin " + type + " " + command + " (" + list.file + ")";
  if (!run.ok()) return run.error().Wrap(who);
  if (run->exit_code != 0) {
    std::string why = CniErrorMessage(run->stdout_text);
    if (why.empty()) why = PrintableOneLine(run->stderr_text.substr(0, 300));
    return MakeError(ErrorCode::kUnavailable,
                     who + " failed (exit " + std::to_string(run->exit_code) + "): " + why);
  }
  if (run->stdout_truncated) {
    return MakeError(ErrorCode::kInvalidArgument, who + " printed more than 1 MiB: refused");
  }
  return std::move(run->stdout_text);
}

Status CniNetwork::Teardown(const CachedAttachment& cached, std::optional<size_t> failed_at) {
  std::optional<Error> first_error;
  auto list = cached.configured_netns
                  ? Result<CniConfList>(CniConfList{})
                  : ParseConfList(cached.conf_list.dump(), cached.conf_file + " (as cached)");
  if (list.ok()) {
    size_t end = list->plugins.size();
    if (failed_at && *failed_at < end) end = *failed_at + 1;
    for (size_t i = end; i-- > 0;) {
      auto out = Invoke(*list, i, "DEL", cached, cached.result);
      // A plugin that is not there cannot have made anything.
      if (!out.ok() && out.error().code != ErrorCode::kNotFound) {
        log_(true, "net-cni: " + out.error().message);
        if (!first_error && !(failed_at && i == *failed_at)) first_error = out.error();
      }
    }
  } else if (!first_error) {
    first_error = list.error();
  }
  if (cached.owns_tap && ::access(cached.netns.c_str(), F_OK) == 0) {
    Status deleted = plugins::RunInNetns(
        cached.netns, [&] { return DeleteRedirectedTap(cached.ifname, cached.tap_name); });
    if (!deleted.ok() && cached.configured_netns) {
      // CRI's namespace: when it cannot be entered any more (CRI removed it, its file
      // left behind) the TAP went with it.
      log_(true, "net-cni: " + cached.cni_container_id + ": " + deleted.error().message);
    } else if (!deleted.ok() && !first_error) {
      first_error = deleted.error();
    }
  }
  if (cached.owns_netns) {
    Status removed = plugins::RemoveNetns(cached.netns);
    if (!removed.ok() && !first_error) first_error = removed.error();
  }
  if (first_error) return first_error->Wrap("CNI DEL of " + cached.cni_container_id);
  std::error_code error;
  fs::remove(CachePath(cached.cni_container_id), error);
  return Status::Ok();
}

CachedAttachment CniNetwork::NewAttachment(const pb::NetworkAttachRequest& request,
                                           const std::string& key, int64_t owner_pid) const {
  CachedAttachment cached;
  cached.container_namespace = request.namespace_();
  cached.container_id = request.container_id();
  cached.cni_container_id = key;
  cached.ifname = config_.ifname;
  cached.owner_pid = owner_pid;
  cached.owner_start_time = plugins::ProcessStartTime(owner_pid);
  cached.created_unix = static_cast<int64_t>(std::time(nullptr));
  return cached;
}

Result<pb::NetworkAttachment> CniNetwork::AttachmentOf(const CachedAttachment& cached) {
  if (cached.configured_netns) {
    InterfaceConfig config;
    Status read = plugins::RunInNetns(cached.netns, [&]() -> Status {
      BBX_ASSIGN_OR_RETURN(config, ReadInterfaceConfig(cached.ifname));
      return Status::Ok();
    });
    if (!read.ok()) return read.error().Wrap("the pod's network namespace " + cached.netns);
    return AttachmentOfInterface(config, cached.netns, cached.tap_name);
  }
  BBX_ASSIGN_OR_RETURN(CniResult result, ParseCniResult(cached.result.dump(), "(cached result)"));
  LinkFacts facts;
  Status read = plugins::RunInNetns(cached.netns, [&]() -> Status {
    BBX_ASSIGN_OR_RETURN(facts, LinkFactsOf(cached.ifname));
    return Status::Ok();
  });
  if (!read.ok()) return read.error().Wrap("the CNI interface " + cached.ifname);
  BBX_ASSIGN_OR_RETURN(pb::NetworkAttachment attachment,
                       AttachmentFromResult(result, cached.ifname, cached.netns, facts.mac));
  attachment.set_tap_name(cached.tap_name);
  attachment.set_mtu(facts.mtu);
  return attachment;
}

Result<pb::NetworkAttachment> CniNetwork::Attach(const pb::NetworkAttachRequest& request) {
  if (!IsContainerdName(request.container_id()) || !IsContainerdName(request.namespace_())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "attach: container id and namespace must be letters, digits, - _ .");
  }
  const std::string key = ContainerKeyName(request.namespace_(), request.container_id());
  const int64_t owner_pid = request.owner_pid() > 0 ? request.owner_pid() : ::getpid();

  if (config_.configured_netns) return AttachConfigured(request, key, owner_pid);

  // Attached before (a retried attach): CHECK it and answer the same.
  if (auto text = ReadSmallFile(CachePath(key), 4 << 20); text.ok()) {
    auto cached = ParseCachedAttachment(*text, CachePath(key));
    if (cached.ok() && !cached->result.is_null() && ::access(cached->netns.c_str(), F_OK) == 0) {
      auto list = ParseConfList(cached->conf_list.dump(), cached->conf_file);
      if (list.ok() && !list->disable_check && CniVersionHasCheck(list->cni_version)) {
        for (size_t i = 0; i < list->plugins.size(); ++i) {
          auto out = Invoke(*list, i, "CHECK", *cached, cached->result);
          if (!out.ok()) return out.error().Wrap("attach " + key);
        }
      }
      cached->owner_pid = owner_pid;
      cached->owner_start_time = plugins::ProcessStartTime(owner_pid);
      BBX_RETURN_IF_ERROR(SaveCache(*cached));
      return AttachmentOf(*cached);
    }
    if (cached.ok()) {  // an ADD that never finished: undo it first
      Status undone = Teardown(*cached);
      if (!undone.ok()) return undone.error().Wrap("attach " + key);
    }
  }

  BBX_ASSIGN_OR_RETURN(CniConfList list, LoadConfList(config_.conf_dir, config_.network_name));
  std::vector<PortMapping> mappings;
  if (auto it = request.annotations().find(kPortMappingsAnnotation);
      it != request.annotations().end()) {
    BBX_ASSIGN_OR_RETURN(mappings, ParsePortMappings(it->second));
  }

  CachedAttachment cached = NewAttachment(request, key, owner_pid);
  cached.conf_file = list.file;
  cached.conf_list = ConfListJson(list);
  cached.runtime_config = RuntimeConfigFor(mappings);
  if (!request.netns_path().empty()) {
    if (request.netns_path()[0] != '/' || ::access(request.netns_path().c_str(), F_OK) != 0) {
      return MakeError(ErrorCode::kNotFound, "attach " + key + ": the spec's network namespace " +
                                                 request.netns_path() + " does not exist");
    }
    cached.netns = request.netns_path();
  } else {
    std::error_code error;
    fs::create_directories(config_.netns_dir, error);
    if (error) {
      return MakeError(ErrorCode::kPermission, "create " + config_.netns_dir + ": " +
                                                   error.message() + " (config netns_dir)");
    }
    cached.netns = config_.netns_dir + "/" + key;
    cached.owns_netns = true;
  }
  // The cache first: a shim dying from here on leaves what DEL needs.
  BBX_RETURN_IF_ERROR(SaveCache(cached));
  std::optional<size_t> failed_at;
  auto fail = [&](const Error& error) -> Error {
    Status undone = Teardown(cached, failed_at);
    if (!undone.ok()) log_(true, "net-cni: cleanup after a failed ADD: " + undone.error().message);
    return error.Wrap("attach " + key);
  };
  if (cached.owns_netns) {
    Status made = plugins::CreateNetns(cached.netns);
    if (!made.ok()) {
      cached.owns_netns = false;  // not ours to remove when it was not made
      return fail(made.error());
    }
  }

  json prev = nullptr;
  CniResult last;
  for (size_t i = 0; i < list.plugins.size(); ++i) {
    failed_at = i;
    auto out = Invoke(list, i, "ADD", cached, prev);
    if (!out.ok()) return fail(out.error());
    auto parsed = ParseCniResult(*out, list.plugins[i].type);
    if (!parsed.ok()) return fail(parsed.error());
    last = std::move(*parsed);
    auto raw = ParseBoundedJson(*out, "the result of " + list.plugins[i].type);
    if (!raw.ok()) return fail(raw.error());
    prev = std::move(*raw);
    cached.result = prev;
  }
  failed_at.reset();

  // The TAP: the last interface in the sandbox that is not the CNI interface
  // (tc-redirect-tap lists it there); without one, this plugin makes it.
  for (const auto& interface : last.interfaces) {
    if (interface.sandbox == cached.netns && interface.name != cached.ifname &&
        IsValidInterfaceName(interface.name)) {
      cached.tap_name = interface.name;
    }
  }
  if (cached.tap_name.empty()) {
    cached.tap_name = config_.tap_name;
    cached.owns_tap = true;
    Status made = plugins::RunInNetns(cached.netns, [&]() -> Status {
      BBX_ASSIGN_OR_RETURN(LinkFacts ignored, CreateRedirectedTap(cached.ifname, cached.tap_name));
      (void)ignored;
      return Status::Ok();
    });
    if (!made.ok()) return fail(made.error());
  }
  if (Status saved = SaveCache(cached); !saved.ok()) return fail(saved.error());
  auto attachment = AttachmentOf(cached);
  if (!attachment.ok()) return fail(attachment.error());
  log_(false, "net-cni: " + key + " joined CNI network " + list.name + " (" + list.file + ") as " +
                  attachment->addresses(0).address() + " through " + cached.tap_name + " in " +
                  cached.netns);
  return attachment;
}

Result<pb::NetworkAttachment> CniNetwork::AttachConfigured(const pb::NetworkAttachRequest& request,
                                                           const std::string& key,
                                                           int64_t owner_pid) {
  const std::string& netns = request.netns_path();
  if (netns.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "attach " + key +
                         ": configured_netns = true (env BEACON_CNI_CONFIGURED_NETNS) needs a "
                         "network namespace in the spec, as CRI's pod sandbox has: set it false "
                         "for containers run without one (ctr run)");
  }
  if (netns[0] != '/' || ::access(netns.c_str(), F_OK) != 0) {
    return MakeError(ErrorCode::kNotFound, "attach " + key + ": the spec's network namespace " +
                                               netns.substr(0, 200) + " does not exist");
  }
  // A retried attach (or one a dead shim left) starts over: the TAP is made again.
  if (auto text = ReadSmallFile(CachePath(key), 4 << 20); text.ok()) {
    if (auto cached = ParseCachedAttachment(*text, CachePath(key)); cached.ok()) {
      if (Status undone = Teardown(*cached); !undone.ok())
        return undone.error().Wrap("attach " + key);
    }
  }
  CachedAttachment cached = NewAttachment(request, key, owner_pid);
  cached.netns = netns;
  cached.configured_netns = true;
  cached.tap_name = config_.tap_name;
  cached.conf_list = json::object();
  cached.runtime_config = json::object();

  InterfaceConfig config;
  Status read = plugins::RunInNetns(netns, [&]() -> Status {
    BBX_ASSIGN_OR_RETURN(config, ReadInterfaceConfig(cached.ifname));
    return Status::Ok();
  });
  if (!read.ok()) {
    return read.error().Wrap("attach " + key + ": the pod's network namespace " + netns +
                             " (configured_netns = true)");
  }
  // The cache before the TAP: a shim dying from here on leaves what detach needs.
  cached.owns_tap = true;
  cached.result = ResultJsonOf(config, cached.ifname, netns);
  BBX_RETURN_IF_ERROR(SaveCache(cached));
  auto fail = [&](const Error& error) -> Error {
    Status undone = Teardown(cached);
    if (!undone.ok())
      log_(true, "net-cni: cleanup after a failed attach: " + undone.error().message);
    return error.Wrap("attach " + key);
  };
  Status made = plugins::RunInNetns(netns, [&]() -> Status {
    BBX_ASSIGN_OR_RETURN(LinkFacts ignored, CreateRedirectedTap(cached.ifname, cached.tap_name));
    (void)ignored;
    return Status::Ok();
  });
  if (!made.ok()) return fail(made.error());
  pb::NetworkAttachment attachment = AttachmentOfInterface(config, netns, cached.tap_name);
  log_(false, "net-cni: " + key + " takes " + cached.ifname + " (" +
                  attachment.addresses(0).address() + ") of the configured namespace " + netns +
                  " through " + cached.tap_name);
  return attachment;
}

Status CniNetwork::Detach(const std::string& container_namespace, const std::string& container_id) {
  if (!IsContainerdName(container_id) || !IsContainerdName(container_namespace)) {
    return MakeError(ErrorCode::kInvalidArgument, "detach: bad container id or namespace");
  }
  const std::string path = CachePath(ContainerKeyName(container_namespace, container_id));
  auto text = ReadSmallFile(path, 4 << 20);
  if (!text.ok()) {
    if (::access(path.c_str(), F_OK) != 0) return Status::Ok();  // never attached, or gone
    return text.error();
  }
  BBX_ASSIGN_OR_RETURN(CachedAttachment cached, ParseCachedAttachment(*text, path));
  return Teardown(cached);
}

Result<pb::ReconcileReport> CniNetwork::Reconcile() {
  pb::ReconcileReport report;
  std::error_code error;
  if (!fs::exists(config_.cache_dir, error)) return report;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(config_.cache_dir, error)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  for (const auto& file : files) {
    auto text = ReadSmallFile(file.string(), 4 << 20);
    if (!text.ok()) continue;
    auto cached = ParseCachedAttachment(*text, file.string());
    if (!cached.ok()) {
      log_(true, "net-cni: " + cached.error().message);
      continue;
    }
    const bool alive = cached->owner_pid > 0 && cached->owner_start_time != 0 &&
                       plugins::ProcessStartTime(cached->owner_pid) == cached->owner_start_time;
    if (alive) continue;
    Status torn = Teardown(*cached);
    if (!torn.ok()) {
      log_(true, "net-cni: gc: " + torn.error().message);
      continue;
    }
    report.add_released_leases(cached->container_namespace + "/" + cached->container_id);
    if (!cached->tap_name.empty()) report.add_removed_devices(cached->tap_name);
  }
  return report;
}

Result<pb::LeaseList> CniNetwork::ListLeases() {
  pb::LeaseList list;
  std::error_code error;
  if (!fs::exists(config_.cache_dir, error)) return list;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(config_.cache_dir, error)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    auto text = ReadSmallFile(file.string(), 4 << 20);
    if (!text.ok()) continue;
    auto cached = ParseCachedAttachment(*text, file.string());
    if (!cached.ok()) continue;
    pb::Lease* lease = list.add_leases();
    lease->set_container_id(cached->container_id);
    lease->set_namespace_(cached->container_namespace);
    lease->set_tap_name(cached->tap_name);
    lease->set_owner_pid(cached->owner_pid);
    lease->set_created_unix(cached->created_unix);
    if (!cached->result.is_null()) {
      auto result = ParseCniResult(cached->result.dump(), "(cached result)");
      if (result.ok()) {
        // The first address of each family.
        for (const auto& ip : result->ips) {
          bool v4 = false;
          if (!ParseCidr(ip.address, nullptr, nullptr, &v4)) continue;
          if (v4 && lease->address().empty()) lease->set_address(ip.address);
          if (!v4 && lease->address6().empty()) lease->set_address6(ip.address);
        }
      }
    }
  }
  return list;
}

pb::CheckReport CniNetwork::Check() const {
  pb::CheckReport report;
  auto line = [&](pb::CheckLevel level, const std::string& what, const std::string& detail) {
    plugins::AddCheckLine(report, level, what, detail);
  };
  auto tun = [&] {
    if (::access("/dev/net/tun", R_OK | W_OK) == 0) {
      line(pb::CHECK_OK, "tun", "/dev/net/tun usable");
    } else {
      line(pb::CHECK_FAIL, "tun", "/dev/net/tun not usable: modprobe tun");
    }
  };
  if (config_.configured_netns) {
    line(pb::CHECK_OK, "configured_netns",
         "no list runs: the VM takes " + config_.ifname +
             " of the spec's network namespace as CNI left it (CRI)");
    tun();
    return report;
  }
  auto list = LoadConfList(config_.conf_dir, config_.network_name);
  if (!list.ok()) {
    line(pb::CHECK_FAIL, "conflist", list.error().message);
    return report;
  }
  line(pb::CHECK_OK, "conflist",
       "network " + list->name + " from " + list->file + " (cniVersion " + list->cni_version + ")");
  for (size_t i = 0; i < list->plugins.size(); ++i) {
    const std::string& type = list->plugins[i].type;
    std::string found;
    for (const auto& dir : config_.bin_dirs) {
      if (found.empty() && ::access((dir + "/" + type).c_str(), X_OK) == 0)
        found = dir + "/" + type;
    }
    if (found.empty()) {
      line(pb::CHECK_FAIL, "plugin " + type,
           "not found in " + JoinDirs(config_.bin_dirs) + ": install it or set bin_dir");
    } else {
      line(pb::CHECK_OK, "plugin " + type, found);
    }
  }
  tun();
  return report;
}

}  // namespace beaconbox::cni
