// Turns the OCI spec containerd wrote for the host into the one the guest runs.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "host/shim/oci_hooks.h"

namespace beaconbox::shim {

struct AdaptedSpec {
  std::string config_json;     // what the guest writes as config.json
  std::string host_root_path;  // root.path as containerd wrote it (absolute with --rootfs)
  bool root_read_only = false;
  std::vector<std::string> warnings;               // parts dropped, for the shim's log
  std::map<std::string, std::string> annotations;  // the spec's string annotations, as given
  OciHooks hooks;  // the hooks the shim runs on the host (oci_hooks.h)
};

// - The network namespace is removed: the container shares the VM's eth0 (seed).
// - root.path becomes `guest_rootfs` (the storage plugin's MountPlan.guest_rootfs,
//   "rootfs" by default), where the guest mounts the rootfs in its bundle.
// - Hooks: prestart, createRuntime, poststart and poststop go to `hooks`, for the
//   shim to run on the host; startContainer stays for the guest's crun;
//   createContainer is refused (see oci_hooks.h).
// - Bind mounts of host paths are refused until they are shared into the VM: the
//   error names the mount.
// - With `share_vm_dns`, the VM's /etc/resolv.conf (written by the guest agent from
//   the network plugin's DNS servers) is bind-mounted read-only into the container,
//   unless the spec mounts its own.
Result<AdaptedSpec> AdaptSpecForGuest(std::string_view host_config_json, bool share_vm_dns = false,
                                      std::string_view guest_rootfs = "rootfs");

// Same rules for an exec's OCI process JSON (nothing to change today but validation).
Result<std::string> AdaptProcessForGuest(std::string_view process_json);

}  // namespace beaconbox::shim
