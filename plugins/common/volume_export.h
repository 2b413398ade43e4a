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

namespace beaconbox::plugins {

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

// A pod VM's one volume share, for a storage plugin whose pod containers join the
// running VM without a device added (storage-erofs; storage-virtiofs keeps a pod's
// volumes in its pod share, rootfs_export.h): <vm_run_dir>/volumes, the read-only view
// (MountReadOnlyView) of the tmpfs <vm_run_dir>/volumes-writable, made by the VM's
// first container, so the VM boots with it. Each container of the pod gets a directory
// <namespace>--<id> there, also one without volumes (the last container out unmounts
// the share), and its volumes in <namespace>--<id>/beaconbox-volumes as StageVolumes
// stages them. virtiofsd serves it from the host's mount namespace: what is mounted
// below it after the VM booted reaches the guest. The guest can write only into the
// read-write volumes themselves, never add, remove or replace an entry of the share.
inline constexpr char kPodVolumeShareDir[] = "volumes";
inline constexpr char kPodVolumeShareWritableDir[] = "volumes-writable";

struct PodVolumes {
  std::string share;    // the share's host path: the same for every container of the VM
  std::string staging;  // the container's volumes, relative to the share
};

// Stages the volumes of the pod container `request` names (pod_share) as above, its
// VM run directory recorded as StageContainerVolumes records it, so that
// ReleaseContainerVolumes undoes it. On failure nothing of this container is left.
Result<PodVolumes> StagePodContainerVolumes(
    const beaconbox::plugin::v1::StoragePrepareRequest& request, const std::string& record_dir);

// Undoes StageContainerVolumes or StagePodContainerVolumes for (namespace, id),
// whether its bundle is still there or not; the last container of a pod takes the
// pod's volume share. Idempotent.
Status ReleaseContainerVolumes(const std::string& namespace_name, const std::string& id,
                               const std::string& bundle, const std::string& record_dir);

// A fresh tmpfs (source name `name`, 64 KiB: directories only) on `writable`, private,
// and its bind on `share`, private and read-only (nosuid, nodev, noexec): the host
// makes directories through `writable` and mounts on `share`, which a VM gets. The
// share's read-only flag is per mount, set once: remounting the tmpfs itself read-only
// around each change fails with EBUSY for as long as virtiofsd holds a removed
// container's directory open (the superblock counts unlinked open inodes). On failure
// nothing stays mounted.
Status MountReadOnlyView(const char* name, const std::string& writable, const std::string& share);

// Whether `path` is a mount point (its device is not its parent's).
bool IsMountPoint(const std::string& path);

}  // namespace beaconbox::plugins
