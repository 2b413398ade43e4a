// beaconbox's tc-redirect-tap CNI plugin (Debian has none): chained after the plugin
// that made the container's interface, it makes a TAP in the container's network
// namespace, redirects all frames both ways between the two with tc
// (tap_redirect.h), and lists the TAP in the result's interfaces (sandbox = the
// netns), as firecracker-go-sdk's plugin of that name does. A VMM given the TAP is
// then on the CNI network with the interface's MAC and addresses. DEL removes the TAP
// and the redirect. CNI_ARGS TC_REDIRECT_TAP_NAME names the TAP (default tap0),
// TC_REDIRECT_TAP_UID and TC_REDIRECT_TAP_GID its owner (default: this process's
// effective ids), so a VMM running as that user may open it. CHECK verifies the TAP,
// its owner and the redirect in both directions.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "common/base/bounded_json.h"
#include "common/base/unique_fd.h"
#include "plugins/net-cni/cni_result.h"
#include "plugins/net-cni/tap_redirect.h"

namespace {

using json = nlohmann::json;
using beaconbox::Status;

constexpr const char* kSupported[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0"};

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// CNI error codes: 4 invalid configuration, 7 invalid environment, 11 try again later,
// 100+ plugin-specific.
int Fail(const std::string& version, int code, const std::string& message) {
  json error = {{"cniVersion", version.empty() ? "1.0.0" : version},
                {"code", code},
                {"msg", "tc-redirect-tap: " + message}};
  std::cout << error.dump() << std::endl;
  return 1;
}

std::string ArgOf(const std::string& cni_args, const std::string& key) {
  size_t start = 0;
  while (start <= cni_args.size()) {
    size_t end = cni_args.find(';', start);
    if (end == std::string::npos) end = cni_args.size();
    std::string pair = cni_args.substr(start, end - start);
    if (pair.rfind(key + "=", 0) == 0) return pair.substr(key.size() + 1);
    start = end + 1;
  }
  return "";
}

// A uid or gid from CNI_ARGS: decimal, below 2^32 - 1 (the kernel's "unset").
bool ParseId(const std::string& text, uint32_t* id) {
  if (text.empty() || text.size() > 10) return false;
  uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value >= 0xffffffffu) {
    return false;
  }
  *id = static_cast<uint32_t>(value);
  return true;
}

Status EnterNetns(const std::string& path) {
  beaconbox::UniqueFd netns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!netns) return beaconbox::MakeError(beaconbox::ErrorCode::kNotFound, "open " + path);
  if (::setns(netns.get(), CLONE_NEWNET) != 0) {
    return beaconbox::MakeError(beaconbox::ErrorCode::kPermission, "setns " + path);
  }
  return Status::Ok();
}

}  // namespace

int main() {
  const std::string command = Env("CNI_COMMAND");
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (command == "VERSION") {
    std::cout << json{{"cniVersion", "1.0.0"}, {"supportedVersions", kSupported}}.dump()
              << std::endl;
    return 0;
  }
  beaconbox::JsonLimits limits;
  limits.max_bytes = 1 << 20;
  limits.max_depth = 32;
  auto config = beaconbox::ParseBoundedJson(input, "the network configuration on stdin", limits);
  if (!config.ok() || !config->is_object()) {
    return Fail("", 4, config.ok() ? "the configuration is not an object" : config.error().message);
  }
  const std::string version = config->value("cniVersion", std::string());
  if (!beaconbox::cni::IsSupportedCniVersion(version)) {
    return Fail("", 1, "cniVersion \"" + version.substr(0, 16) + "\" is not supported");
  }
  const std::string netns = Env("CNI_NETNS");
  const std::string ifname = Env("CNI_IFNAME");
  std::string tap = ArgOf(Env("CNI_ARGS"), "TC_REDIRECT_TAP_NAME");
  if (tap.empty()) tap = "tap0";
  if (!beaconbox::cni::IsValidInterfaceName(tap) || !beaconbox::cni::IsValidInterfaceName(ifname) ||
      tap == ifname) {
    return Fail(version, 7, "bad CNI_IFNAME \"" + ifname + "\" or TAP name \"" + tap + "\"");
  }

  beaconbox::cni::TapOwner owner = beaconbox::cni::ProcessTapOwner();
  for (const char* key : {"TC_REDIRECT_TAP_UID", "TC_REDIRECT_TAP_GID"}) {
    const std::string text = ArgOf(Env("CNI_ARGS"), key);
    if (text.empty()) continue;
    uint32_t id = 0;
    if (!ParseId(text, &id)) {
      return Fail(version, 4,
                  std::string("CNI_ARGS ") + key + "=\"" + text.substr(0, 16) +
                      "\" is not a numeric id: give a decimal uid or gid");
    }
    if (std::string(key) == "TC_REDIRECT_TAP_UID") {
      owner.uid = id;
    } else {
      owner.gid = id;
    }
  }

  if (command == "DEL") {
    // Nothing to do without the namespace: the TAP went with it.
    if (netns.empty() || ::access(netns.c_str(), F_OK) != 0) return 0;
    if (Status entered = EnterNetns(netns); !entered.ok()) return 0;
    Status deleted = beaconbox::cni::DeleteRedirectedTap(ifname, tap);
    if (!deleted.ok()) return Fail(version, 11, deleted.error().message);
    return 0;
  }
  if (command != "ADD" && command != "CHECK") {
    return Fail(version, 4, "CNI_COMMAND \"" + command.substr(0, 16) + "\" is not supported");
  }
  if (netns.empty()) return Fail(version, 7, "CNI_NETNS is not set");
  auto prev = config->find("prevResult");
  if (prev == config->end() || !prev->is_object()) {
    return Fail(version, 4, "needs a prevResult: chain it after the plugin that makes " + ifname);
  }
  auto parsed = beaconbox::cni::ParseCniResult(prev->dump(), "prevResult");
  if (!parsed.ok()) return Fail(version, 4, parsed.error().message);
  if (Status entered = EnterNetns(netns); !entered.ok()) {
    return Fail(version, 7, entered.error().message);
  }
  if (command == "CHECK") {
    // The result being checked must list the TAP in this namespace, and the TAP must
    // be as ADD left it.
    bool listed = false;
    for (const auto& interface : parsed->interfaces) {
      listed = listed || (interface.name == tap && interface.sandbox == netns);
    }
    if (!listed) {
      return Fail(version, 100, "the result does not list TAP " + tap + " in " + netns);
    }
    Status checked = beaconbox::cni::CheckRedirectedTap(ifname, tap, owner);
    if (!checked.ok()) return Fail(version, 100, checked.error().message + " in " + netns);
    return 0;
  }
  auto facts = beaconbox::cni::CreateRedirectedTap(ifname, tap, owner);
  if (!facts.ok()) return Fail(version, 100, facts.error().message);
  json result = *prev;
  result["cniVersion"] = version;
  if (!result.contains("interfaces") || !result["interfaces"].is_array()) {
    result["interfaces"] = json::array();
  }
  result["interfaces"].push_back({{"name", tap}, {"mac", facts->mac}, {"sandbox", netns}});
  std::cout << result.dump() << std::endl;
  return 0;
}
