// The shim's translations between containerd's requests, the plugins' messages and
// the guest API, as pure functions (no I/O, no state). Rules:
//
// StorageRequestFor (containerd rootfs mounts -> StoragePrepareRequest)
// - Each mount is copied as it is: type, source, target, options, in order.
// - No mounts and a spec whose root.path is an absolute host directory other than
//   <bundle>/rootfs (`ctr run --rootfs DIR`): one "bind" mount of that directory with
//   "rbind".
// - rootfs_read_only is the spec's root.readonly; container id and bundle are copied.
// - Each of the spec's volumes (bind mounts of host paths) in order, its source made
//   absolute against the bundle when relative.
//
// GuestRootfsFor (MountPlan -> the rootfs path in the guest bundle)
// - plan.guest_rootfs, or "rootfs" when empty; it must be relative without empty, "."
//   or ".." components (it becomes a guest path).
//
// GuestVolumePathsFor (MountPlan -> where each volume is in the guest bundle)
// - plan.guest_volume_paths, one per volume (a plugin that placed none cannot share
//   volumes: refused naming the fix); each relative as the guest rootfs path.
//
// BundleRequestFor (MountPlan -> CreateBundleRequest)
// - The plan's guest mounts are copied in order (type, source, target, options); the
//   rootfs is GuestRootfsFor(plan); config_json is what the guest runs.
//
// GuestNetworkFor (NetworkAttachment -> guest NetworkConfig)
// - One interface named eth0, found by the attachment's MAC, with its MTU and every
//   address as "<address>/<prefix>".
// - Every route goes through eth0; DNS servers and search domains are copied.
//
// VmSpecFor (VM settings + plan + attachment -> VmSpec)
// - Kernel, initrd, command line, vCPUs and memory come from the settings.
// - The plan's devices come first, in order; then, with an attachment, one NIC "eth0"
//   on its TAP with its MAC and MTU.
// - id, run_dir, console log, owner pid and guest port come from the caller.
#pragma once

#include <google/protobuf/repeated_field.h>

#include <string>
#include <string_view>

#include "beaconbox/guest/v1/guest.pb.h"
#include "github.com/containerd/containerd/api/types/mount.pb.h"
#include "host/shim/sandbox_backends.h"
#include "host/shim/spec_adapter.h"

namespace beaconbox::shim {

namespace guestapi = ::beaconbox::guest::v1;

using ContainerdMounts = google::protobuf::RepeatedPtrField<::containerd::types::Mount>;

pluginapi::StoragePrepareRequest StorageRequestFor(const ContainerKey& key,
                                                   const std::string& bundle,
                                                   const ContainerdMounts& rootfs,
                                                   const AdaptedSpec& spec);

Result<std::string> GuestRootfsFor(const pluginapi::MountPlan& plan);

Result<std::vector<std::string>> GuestVolumePathsFor(const pluginapi::MountPlan& plan,
                                                     size_t volume_count);

Result<guestapi::CreateBundleRequest> BundleRequestFor(const ContainerKey& key,
                                                       const pluginapi::MountPlan& plan,
                                                       const std::string& config_json);

guestapi::NetworkConfig GuestNetworkFor(const pluginapi::NetworkAttachment& attachment);

struct VmPlacement {
  ContainerKey key;              // the container the VM is booted for
  std::string run_dir;           // RuntimeLayout::VmDir
  std::string console_log_path;  // RuntimeLayout::ConsoleLogPath
  int64_t owner_pid = 0;         // the shim: the VM must not outlive it
};

pluginapi::VmSpec VmSpecFor(const VmSettings& settings, const VmPlacement& placement,
                            const pluginapi::MountPlan& plan,
                            const pluginapi::NetworkAttachment* attachment);

// A path the guest resolves under a bundle: relative, no empty, "." or ".." parts.
Status CheckGuestRelativePath(std::string_view path, std::string_view what);

// Whether the type URL of a protobuf Any names the message `name`: containerd's Go
// typeurl sends the bare full name ("containerd.runc.v1.CheckpointOptions"), which
// protobuf's Any::UnpackTo does not accept (it wants "<prefix>/<name>"); both are.
bool EndsWithTypeName(const std::string& type_url, std::string_view name);

}  // namespace beaconbox::shim
