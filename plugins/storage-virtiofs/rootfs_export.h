// Exports a container's root filesystem to its VM. Today: the rootfs containerd
// prepared (an overlay from the default snapshotter, a bind from the native one) is
// mounted at <bundle>/rootfs on the host, as runc's shim does, and shared into the
// guest over virtio-fs. EROFS image layers attached as block devices come next.
#pragma once

#include <string>
#include <vector>

#include "beaconbox/plugin/v1/storage.pb.h"
#include "common/base/result.h"

namespace beaconbox::storage {

struct ExportConfig {
  std::string share_tag = "rootfs";
  std::string volume_share_tag = "volumes";  // the share of a container's volumes
  // Where Prepare records what Release must find (the plugin's
  // <state_dir>/storage-virtiofs): pod-share/<namespace>--<id> names a pod container's
  // directory in its VM's pod share, volumes/<namespace>--<id> the directory its
  // volumes are staged in. Release must not need the bundle: containerd may remove it
  // first, and its removal would descend into read-write volumes staged there.
  std::string record_dir;
};

class RootfsExporter {
 public:
  explicit RootfsExporter(ExportConfig config) : config_(std::move(config)) {}

  // Mounts the rootfs (if containerd gave mounts) and returns the plan: one share
  // for the VMM, one virtio-fs mount for the guest (a read-only rootfs: the share
  // read-only, under an overlay with a guest tmpfs on top, see Prepare). With
  // volumes, a second share holds them (volume_export.h).
  Result<beaconbox::plugin::v1::MountPlan> Prepare(
      const beaconbox::plugin::v1::StoragePrepareRequest& request) const;

  // Unmounts what Prepare mounted (volumes too); harmless when nothing is mounted. A
  // pod container is found by (namespace, id) in config.record_dir, also when its
  // bundle is gone.
  Status Release(const std::string& namespace_name, const std::string& container_id,
                 const std::string& bundle) const;

 private:
  Result<beaconbox::plugin::v1::MountPlan> PreparePodShare(
      const beaconbox::plugin::v1::StoragePrepareRequest& request) const;
  // `record`: the file naming the container's directory in the pod share.
  Status ReleasePodShare(const std::string& record) const;
  std::string RecordPath(const char* kind, const std::string& namespace_name,
                         const std::string& id) const;

  ExportConfig config_;
};

// A read-only rootfs in the guest bundle: the share, and the tmpfs of the overlay
// mounted at "rootfs" above it.
inline constexpr char kGuestRootfsImage[] = "rootfs-image";
inline constexpr char kGuestRootfsScratch[] = "rootfs-scratch";

// A pod's share (StoragePrepareRequest.pod_share): a tmpfs at
// <vm_run_dir>/<kPodShareWritableDir> through which only the host makes and removes
// directories, and its read-only bind at <vm_run_dir>/<kPodShareDir> that virtiofsd
// exports (the guest can neither add nor remove entries) and on which the containers'
// mounts are made. Container C has C/rootfs (its rootfs mounted there) and
// C/beaconbox-volumes. The guest mounts the share at kGuestPodShare in each
// container's bundle.
inline constexpr char kPodShareDir[] = "pod-share";
inline constexpr char kPodShareWritableDir[] = "pod-share-host";
inline constexpr char kGuestPodShare[] = "pod-share";
// Name of the file in the bundle that recorded the container's directory in a pod
// share (versions before the record in ExportConfig.record_dir): still released.
inline constexpr char kPodShareMarker[] = "beaconbox-pod-share";

// Name of the file in the bundle that records that Prepare mounted the rootfs.
inline constexpr char kMountedMarker[] = "beaconbox-rootfs-mounted";

}  // namespace beaconbox::storage
