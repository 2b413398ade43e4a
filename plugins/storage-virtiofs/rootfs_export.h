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
};

class RootfsExporter {
 public:
  explicit RootfsExporter(ExportConfig config) : config_(std::move(config)) {}

  // Mounts the rootfs (if containerd gave mounts) and returns the plan: one share
  // for the VMM, one virtio-fs mount for the guest.
  Result<beaconbox::plugin::v1::MountPlan> Prepare(
      const beaconbox::plugin::v1::StoragePrepareRequest& request) const;

  // Unmounts what Prepare mounted; harmless when nothing is mounted.
  Status Release(const std::string& container_id, const std::string& bundle) const;

 private:
  ExportConfig config_;
};

// Name of the file in the bundle that records that Prepare mounted the rootfs.
inline constexpr char kMountedMarker[] = "beaconbox-rootfs-mounted";

}  // namespace beaconbox::storage
