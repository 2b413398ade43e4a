// The spec's net.* sysctls, applied by vminitd instead of crun. The host drops the
// spec's network namespace (the VM is the pod's network: its root namespace), so crun
// would refuse them ("requires a new network namespace": containerd 2 sets
// net.ipv4.ip_unprivileged_port_start on every CRI sandbox). vminitd writes them in
// the VM's root namespace, where the container runs, and hands crun the spec without
// them; other sysctls (kernel.*, fs.mqueue.*) stay for crun.
#pragma once

#include <string>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::guest {

struct NetSysctl {
  std::string name;   // "net.ipv4.ip_unprivileged_port_start"
  std::string value;  // as given
};

// A name vminitd writes: "net." then 2..16 dot-separated components of [A-Za-z0-9_-]
// (at most 256 characters; so no "..", "/" or empty component); a value of at most
// 256 printable characters (spaces and tabs allowed, as in "0 2147483647"), not empty.
// kInvalidArgument naming the sysctl otherwise.
Status ValidateNetSysctl(const NetSysctl& sysctl);

// Takes linux.sysctl's net.* entries out of the OCI spec `config_json` (rewritten
// without them; left as it is when there are none) and returns them, each validated.
// At most 64. A spec that is not an object, or a linux.sysctl that is not an object
// of strings, is kInvalidArgument.
Result<std::vector<NetSysctl>> TakeNetSysctls(std::string& config_json);

// <proc_sys>/net/ipv4/ip_unprivileged_port_start for net.ipv4.ip_unprivileged_port_start.
std::string NetSysctlPath(const NetSysctl& sysctl, const std::string& proc_sys = "/proc/sys");

// Writes each sysctl to its file under `proc_sys` (no symlink followed), in order;
// stops at the first that fails, naming it.
Status ApplyNetSysctls(const std::vector<NetSysctl>& sysctls,
                       const std::string& proc_sys = "/proc/sys");

}  // namespace beaconbox::guest
