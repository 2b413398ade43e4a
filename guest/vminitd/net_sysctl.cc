#include "guest/vminitd/net_sysctl.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/base/bounded_json.h"
#include "common/base/errno_error.h"
#include "common/base/unique_fd.h"

namespace beaconbox::guest {
namespace {

constexpr size_t kMaxNameLength = 256;
constexpr size_t kMaxValueLength = 256;
constexpr size_t kMaxSysctls = 64;

std::string Shown(const std::string& text) {
  std::string shown;
  for (char c : text.substr(0, 80)) {
    shown += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  return shown;
}

}  // namespace

Status ValidateNetSysctl(const NetSysctl& sysctl) {
  auto bad = [&](const std::string& why) {
    return MakeError(ErrorCode::kInvalidArgument, "sysctl \"" + Shown(sysctl.name) + "\": " + why);
  };
  const std::string& name = sysctl.name;
  if (!name.starts_with("net.")) return bad("not a net.* sysctl");
  if (name.size() > kMaxNameLength) return bad("name longer than 256 characters");
  size_t components = 0;
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    if (dot == start) return bad("empty component in the name");
    for (size_t i = start; i < dot; ++i) {
      const char c = name[i];
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-';
      if (!ok) return bad("the name may hold letters, digits, _ and - between dots only");
    }
    ++components;
    start = dot + 1;
  }
  if (components < 3 || components > 17) return bad("not a sysctl name (net.<group>.<key>)");
  if (sysctl.value.empty()) return bad("empty value");
  if (sysctl.value.size() > kMaxValueLength) return bad("value longer than 256 characters");
  for (char c : sysctl.value) {
    if (!((c >= 0x20 && c < 0x7f) || c == '\t')) return bad("the value holds a control character");
  }
  return Status::Ok();
}

Result<std::vector<NetSysctl>> TakeNetSysctls(std::string& config_json) {
  BBX_ASSIGN_OR_RETURN(nlohmann::json spec, ParseBoundedJson(config_json, "config.json"));
  if (!spec.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "config.json is not a JSON object");
  }
  std::vector<NetSysctl> taken;
  auto linux_it = spec.find("linux");
  if (linux_it == spec.end() || !linux_it->is_object()) return taken;
  auto sysctl_it = linux_it->find("sysctl");
  if (sysctl_it == linux_it->end() || sysctl_it->is_null()) return taken;
  if (!sysctl_it->is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "config.json: linux.sysctl is not an object");
  }
  nlohmann::json kept = nlohmann::json::object();
  for (const auto& [name, value] : sysctl_it->items()) {
    if (!value.is_string()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "config.json: linux.sysctl \"" + Shown(name) + "\" is not a string");
    }
    if (!name.starts_with("net.")) {
      kept[name] = value;
      continue;
    }
    NetSysctl sysctl{name, value.get<std::string>()};
    BBX_RETURN_IF_ERROR(ValidateNetSysctl(sysctl));
    if (taken.size() == kMaxSysctls) {
      return MakeError(ErrorCode::kInvalidArgument, "config.json: more than 64 net.* sysctls");
    }
    taken.push_back(std::move(sysctl));
  }
  if (taken.empty()) return taken;
  *sysctl_it = std::move(kept);
  try {
    config_json = spec.dump();
  } catch (const nlohmann::json::exception& error) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string("config.json cannot be written back: ") + error.what());
  }
  return taken;
}

std::string NetSysctlPath(const NetSysctl& sysctl, const std::string& proc_sys) {
  std::string path = proc_sys + "/";
  for (char c : sysctl.name) path += c == '.' ? '/' : c;
  return path;
}

Status ApplyNetSysctls(const std::vector<NetSysctl>& sysctls, const std::string& proc_sys) {
  for (const NetSysctl& sysctl : sysctls) {
    BBX_RETURN_IF_ERROR(ValidateNetSysctl(sysctl));
    const std::string path = NetSysctlPath(sysctl, proc_sys);
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_TRUNC));
    if (!fd) {
      return ErrnoError("sysctl " + sysctl.name + " (the pod's network, applied by vminitd): open",
                        path);
    }
    const std::string& value = sysctl.value;
    ssize_t written = ::write(fd.get(), value.data(), value.size());
    if (written != static_cast<ssize_t>(value.size())) {
      return ErrnoError("sysctl " + sysctl.name + " = \"" + Shown(value) + "\": write", path,
                        written < 0 ? errno : EIO);
    }
  }
  return Status::Ok();
}

}  // namespace beaconbox::guest
