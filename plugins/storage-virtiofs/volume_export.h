// A container's volumes (OCI bind mounts of host files and directories) for its VM.
//
// They go through one extra virtio-fs share per container, <base>/beaconbox-volumes
// on the host: a small tmpfs holding one mount point per volume ("0", "1", ... in the
// request's order; a directory or an empty file, as the source is), each a bind mount
// of the volume's source. A read-only volume's bind is made read-only on the host,
// with every mount below it, so a compromised guest cannot write it through virtiofsd
// either; the tmpfs itself is made read-only once it holds the mount points, so the
// guest cannot add or remove anything beside them. The binds are private: nothing
// mounted there propagates back to the host, nor from the host into the VM later
// (shared and slave propagation cannot cross into a VM; the shim refuses them).
//
// Release unmounts every volume (lazily: a source with mounts below it goes whole),
// then the tmpfs, then removes the empty directory; nothing is ever deleted below a
// mount point, so a volume's files are never touched.
#pragma once

#include <google/protobuf/repeated_field.h>

#include <string>

#include "beaconbox/plugin/v1/storage.pb.h"
#include "common/base/result.h"

namespace beaconbox::storage {

// The staging directory's name in the bundle, and the volume share's guest mount
// point relative to the guest bundle.
inline constexpr char kVolumesDir[] = "beaconbox-volumes";
inline constexpr char kGuestVolumesDir[] = "volumes";
// More than this many volumes in one container is refused.
inline constexpr int kMaxVolumes = 128;

using Volumes = google::protobuf::RepeatedPtrField<beaconbox::plugin::v1::Volume>;

// Checks each volume's source (absolute, no "..", exists, a directory or a regular
// file) and mounts the staging directory of `bundle` as described above. On failure
// nothing stays mounted and the error names the volume.
Status StageVolumes(const std::string& bundle, const Volumes& volumes);

// Unmounts what StageVolumes mounted in `bundle` and removes the staging directory.
// Idempotent: nothing staged is success.
Status UnstageVolumes(const std::string& bundle);

// The container's volumes for a storage plugin that shares them over their own
// virtio-fs share, staged in <vm_run_dir>/volumes/<namespace>--<id>/ and the VM run
// directory recorded in <record_dir>/volumes/<namespace>--<id>; returns the staging directory
// (the share's host path). Not in the bundle: containerd may remove a dead shim's
// bundle before the shim's `delete` action releases, and that removal goes into the
// mount points below it (a read-write volume's host files with them). Without a VM
// run directory or record_dir (older shims, tests) the bundle holds them, as before.
Result<std::string> StageContainerVolumes(
    const beaconbox::plugin::v1::StoragePrepareRequest& request, const std::string& record_dir);

// Undoes StageContainerVolumes for (namespace, id), whether its bundle is still there
// or not. Idempotent.
Status ReleaseContainerVolumes(const std::string& namespace_name, const std::string& id,
                               const std::string& bundle, const std::string& record_dir);

}  // namespace beaconbox::storage
