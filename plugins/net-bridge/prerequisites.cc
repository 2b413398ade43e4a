#include "plugins/net-bridge/prerequisites.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "plugins/common/check_report.h"

namespace beaconbox::net {
namespace {

namespace pb = ::beaconbox::plugin::v1;
namespace fs = std::filesystem;

constexpr int kCapNetAdmin = 12;  // linux/capability.h

// The effective capability set of this process, from /proc/self/status.
bool HasEffectiveCapability(int capability) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    uint64_t mask = std::stoull(line.substr(7), nullptr, 16);
    return (mask >> capability) & 1u;
  }
  return false;
}

// The nearest existing ancestor of `path` (itself included).
fs::path ExistingAncestor(fs::path path) {
  std::error_code error;
  while (!path.empty() && !fs::exists(path, error)) {
    if (path == path.parent_path()) break;
    path = path.parent_path();
  }
  return path;
}

}  // namespace

pb::CheckReport CheckPrerequisites(const BridgeConfig& config) {
  pb::CheckReport report;
  auto line = [&](pb::CheckLevel level, const std::string& what, const std::string& detail) {
    plugins::AddCheckLine(report, level, what, detail);
  };
  if (HasEffectiveCapability(kCapNetAdmin)) {
    line(pb::CHECK_OK, "CAP_NET_ADMIN", "held: bridge, TAPs and nftables rules can be made");
  } else {
    line(pb::CHECK_FAIL, "CAP_NET_ADMIN",
         "not held: run the shim as root (containerd does), or use network.mode = \"none\"");
  }
  if (::access("/dev/net/tun", R_OK | W_OK) == 0) {
    line(pb::CHECK_OK, "tun", "/dev/net/tun usable");
  } else {
    line(pb::CHECK_FAIL, "tun", "/dev/net/tun not usable: modprobe tun");
  }
  fs::path db_dir = fs::path(config.db_path).parent_path();
  fs::path existing = ExistingAncestor(db_dir);
  if (!existing.empty() && ::access(existing.c_str(), W_OK) == 0) {
    line(pb::CHECK_OK, "lease db", config.db_path + " (directory writable)");
  } else {
    line(pb::CHECK_FAIL, "lease db",
         db_dir.string() + " is not writable (" + existing.string() +
             "): make it writable by root or set db_path (or paths.state_dir)");
  }
  struct Forwarding {
    bool wanted;
    const char *what, *path, *sysctl, *without;
  };
  for (const Forwarding& family :
       {Forwarding{true, "ip_forward", "/proc/sys/net/ipv4/ip_forward", "net.ipv4.ip_forward",
                   "containers reach only the bridge; sysctl -w net.ipv4.ip_forward=1 for NAT"},
        Forwarding{config.ipv6, "ipv6 forwarding", "/proc/sys/net/ipv6/conf/all/forwarding",
                   "net.ipv6.conf.all.forwarding",
                   "containers reach only the bridge over IPv6; sysctl -w "
                   "net.ipv6.conf.all.forwarding=1 to route"}}) {
    if (!family.wanted) continue;
    std::ifstream file(family.path);
    std::string value;
    std::getline(file, value);
    const std::string sysctl = family.sysctl;
    if (value == "1") {
      line(pb::CHECK_OK, family.what, sysctl + " = 1");
    } else if (config.enable_ip_forward) {
      line(pb::CHECK_OK, family.what, sysctl + " = 0: turned on at the first attach");
    } else {
      line(pb::CHECK_WARN, family.what,
           sysctl + " = 0 and enable_ip_forward = false: " + family.without);
    }
  }
  return report;
}

}  // namespace beaconbox::net
