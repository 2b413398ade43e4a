// Turns the OCI spec containerd wrote for the host into the one the guest runs.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "host/shim/oci_hooks.h"

namespace beaconbox::shim {

// A bind mount of a host path (a volume), as the spec gives it.
struct HostVolume {
  std::string source;       // as in the spec: absolute, or relative to the host bundle
  std::string destination;  // in the container
  bool read_only = false;   // "ro" (the last of ro/rw wins) or "rro"
  bool recursive = false;   // "rbind"
};

struct AdaptedSpec {
  std::string config_json;     // what the guest writes as config.json
  std::string host_root_path;  // root.path as containerd wrote it (absolute with --rootfs)
  bool root_read_only = false;
  std::vector<std::string> warnings;               // parts dropped, for the shim's log
  std::map<std::string, std::string> annotations;  // the spec's string annotations, as given
  OciHooks hooks;                   // the hooks the shim runs on the host (oci_hooks.h)
  std::vector<HostVolume> volumes;  // the spec's bind mounts, in order
  // linux.namespaces' network entry's path (CRI's pod netns), "" when none is given.
  std::string network_namespace_path;
};

// - The network namespace is removed: the container shares the VM's eth0 (seed).
// - root.path becomes `guest_rootfs` (the storage plugin's MountPlan.guest_rootfs,
//   "rootfs" by default), where the guest mounts the rootfs in its bundle.
// - Hooks: prestart, createRuntime, poststart and poststop go to `hooks`, for the
//   shim to run on the host; startContainer stays for the guest's crun;
//   createContainer is refused (see oci_hooks.h).
// - Bind mounts are host paths (volumes), listed in `volumes` in the spec's order; the
//   storage plugin shares them into the VM. With `guest_volume_paths` (one per volume,
//   relative to the guest bundle, from the plugin's MountPlan), each mount's source
//   becomes its guest path (the OCI spec resolves a relative source against the
//   bundle); without, the sources are left as they are (a first pass, before the
//   plugin ran). Propagation that cannot cross into a VM (shared, rshared, slave,
//   rslave) is refused naming the mount; private and rprivate are kept.
// - With `share_vm_dns`, the VM's /etc/resolv.conf (written by the guest agent from
//   the network plugin's DNS servers) is bind-mounted read-only into the container,
//   unless the spec mounts its own.
Result<AdaptedSpec> AdaptSpecForGuest(std::string_view host_config_json, bool share_vm_dns = false,
                                      std::string_view guest_rootfs = "rootfs",
                                      const std::vector<std::string>* guest_volume_paths = nullptr);

// A pod's app container joins the sandbox container's namespaces. The spec names them
// as containerd's CRI does, by the host path /proc/<sandbox task's pid>/ns/<type> --
// for beaconbox the VMM's pid (container.h), which means nothing in the guest. In the
// guest adapted spec `guest_config_json` (AdaptSpecForGuest's), each ipc, uts, pid,
// cgroup or mount entry whose path is /proc/<sandbox_host_pid>/ns/<type> becomes
// /proc/<sandbox_guest_pid>/ns/<type>: the sandbox container's init in the guest,
// where crun joins it. The network namespace was removed already: every container of
// the VM shares its network. Any other path names a host namespace a VM cannot join:
// kNotImplemented naming it.
Result<std::string> JoinPodNamespaces(std::string_view guest_config_json, uint32_t sandbox_host_pid,
                                      uint32_t sandbox_guest_pid);

// Same rules for an exec's OCI process JSON (nothing to change today but validation).
Result<std::string> AdaptProcessForGuest(std::string_view process_json);

}  // namespace beaconbox::shim
