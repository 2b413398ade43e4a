#include "plugins/storage-virtiofs/rootfs_export.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/mount_options.h"
#include "plugins/common/container_names.h"
#include "plugins/common/volume_export.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
using plugins::ContainerKeyName;
using plugins::IsAbsoluteClean;
using plugins::IsContainerdName;
using plugins::IsMountPoint;
using plugins::kGuestVolumesDir;
using plugins::kVolumesDir;
using plugins::ReleaseContainerVolumes;
using plugins::StageContainerVolumes;
using plugins::StageVolumes;
using plugins::UnstageVolumes;

// A pod container's record under ExportConfig.record_dir (volumes/ is
// StageContainerVolumes's).
constexpr char kPodShareRecords[] = "pod-share";

// Mounts containerd's rootfs mount (one, or none: `source` bound) on `target`.
Status MountRootfs(const pluginapi::HostMount& mount, const std::string& target) {
  std::vector<std::string> options(mount.options().begin(), mount.options().end());
  MountOptions parsed = ParseMountOptions(options);
  if (mount.type() != "bind" && (parsed.flags & MS_BIND) == 0 && mount.type() != "overlay") {
    return MakeError(ErrorCode::kNotImplemented,
                     "rootfs mount type '" + mount.type() +
                         "' is not supported yet: use the overlayfs or native snapshotter");
  }
  if (mount.type() == "bind") {
    parsed.flags |= MS_BIND;
    parsed.bind = true;
    parsed.remount_readonly = (parsed.flags & MS_RDONLY) != 0;
  }
  // A read-only bind needs a second, remounting call: the kernel ignores MS_RDONLY
  // on the first.
  const unsigned long flags = parsed.remount_readonly ? parsed.flags & ~MS_RDONLY : parsed.flags;
  if (::mount(mount.source().c_str(), target.c_str(), mount.type().c_str(), flags,
              parsed.data.empty() ? nullptr : parsed.data.c_str()) != 0) {
    return ErrnoError("mounting the container rootfs (" + mount.type() + ") on", target);
  }
  if (parsed.remount_readonly) {
    ::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr);
  }
  if (parsed.propagation != 0) {
    ::mount(nullptr, target.c_str(), nullptr, parsed.propagation, nullptr);
  }
  return Status::Ok();
}

}  // namespace

Result<pluginapi::MountPlan> RootfsExporter::Prepare(
    const pluginapi::StoragePrepareRequest& request) const {
  if (!IsAbsoluteClean(request.bundle())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "bundle '" + request.bundle() + "' is not a clean absolute path");
  }
  if (request.pod_share()) return PreparePodShare(request);
  const std::string rootfs = request.bundle() + "/rootfs";
  std::error_code error;
  fs::create_directories(rootfs, error);
  if (error)
    return MakeError(ErrorCode::kPermission, "creating " + rootfs + ": " + error.message());

  if (request.rootfs_size() > 1) {
    return MakeError(ErrorCode::kNotImplemented,
                     "a rootfs of " + std::to_string(request.rootfs_size()) +
                         " mounts is not supported yet: use the overlayfs or native snapshotter");
  }
  if (request.rootfs_size() == 1) {
    BBX_RETURN_IF_ERROR(MountRootfs(request.rootfs(0), rootfs));
    if (Status marked = WriteFileAtomic(request.bundle() + "/" + kMountedMarker, rootfs + "\n");
        !marked.ok()) {
      ::umount2(rootfs.c_str(), MNT_DETACH);  // Release would not know it is mounted
      return marked.error().Wrap("recording the rootfs mount");
    }
  }

  pluginapi::MountPlan plan;
  auto* share = plan.add_devices()->mutable_share();
  share->set_tag(config_.share_tag);
  share->set_host_path(rootfs);
  share->set_read_only(request.rootfs_read_only());
  if (request.rootfs_read_only()) {
    // The share stays read-only on the host. The container's mount points may be
    // missing from the image (a pause image holds only /pause), and crun creates them
    // before it makes the root read-only (root.readonly), as runc does: it gets an
    // overlay whose upper layer is a small guest tmpfs. Overlay paths are relative
    // to the guest bundle.
    auto* image = plan.add_guest_mounts();
    image->set_type("virtiofs");
    image->set_source(config_.share_tag);
    image->set_target(kGuestRootfsImage);
    image->add_options("ro");
    auto* scratch = plan.add_guest_mounts();
    scratch->set_type("tmpfs");
    scratch->set_source("tmpfs");
    scratch->set_target(kGuestRootfsScratch);
    scratch->add_options("mode=0755");
    scratch->add_options("size=16m");
    auto* overlay = plan.add_guest_mounts();
    overlay->set_type("overlay");
    overlay->set_source("overlay");
    overlay->set_target("rootfs");
    overlay->add_options(std::string("lowerdir=") + kGuestRootfsImage);
    overlay->add_options(std::string("upperdir=") + kGuestRootfsScratch + "/upper");
    overlay->add_options(std::string("workdir=") + kGuestRootfsScratch + "/work");
  } else {
    auto* guest_mount = plan.add_guest_mounts();
    guest_mount->set_type("virtiofs");
    guest_mount->set_source(config_.share_tag);
    guest_mount->set_target("rootfs");
  }
  plan.set_guest_rootfs("rootfs");

  if (!request.volumes().empty()) {
    // Not in the bundle: containerd's removal of a dead shim's bundle would go into
    // the read-write volumes staged there and empty them on the host.
    BBX_ASSIGN_OR_RETURN(std::string staging, StageContainerVolumes(request, config_.record_dir));
    auto* volumes = plan.add_devices()->mutable_share();
    volumes->set_tag(config_.volume_share_tag);
    volumes->set_host_path(staging);
    // Read-write: each read-only volume is a read-only mount on the host, and the
    // share's root is a read-only tmpfs.
    volumes->set_read_only(false);
    auto* guest_mount = plan.add_guest_mounts();
    guest_mount->set_type("virtiofs");
    guest_mount->set_source(config_.volume_share_tag);
    guest_mount->set_target(kGuestVolumesDir);
    for (int i = 0; i < request.volumes_size(); ++i) {
      plan.add_guest_volume_paths(std::string(kGuestVolumesDir) + "/" + std::to_string(i));
    }
  }
  return plan;
}

std::string RootfsExporter::RecordPath(const char* kind, const std::string& namespace_name,
                                       const std::string& id) const {
  return config_.record_dir + "/" + kind + "/" + ContainerKeyName(namespace_name, id);
}

Status RootfsExporter::Release(const std::string& namespace_name, const std::string& container_id,
                               const std::string& bundle) const {
  if (!IsAbsoluteClean(bundle)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "bundle '" + bundle + "' is not a clean absolute path");
  }
  if (IsAbsoluteClean(config_.record_dir) && IsContainerdName(namespace_name) &&
      IsContainerdName(container_id)) {
    const std::string record = RecordPath(kPodShareRecords, namespace_name, container_id);
    if (::access(record.c_str(), F_OK) == 0) return ReleasePodShare(record);
  }
  if (::access((bundle + "/" + kPodShareMarker).c_str(), F_OK) == 0) {
    return ReleasePodShare(bundle + "/" + kPodShareMarker);
  }
  // The VM (and its virtiofsd) is gone when the shim releases: nothing holds these.
  Status volumes =
      ReleaseContainerVolumes(namespace_name, container_id, bundle, config_.record_dir);
  const std::string marker = bundle + "/" + kMountedMarker;
  if (::access(marker.c_str(), F_OK) != 0) return volumes;
  const std::string rootfs = bundle + "/rootfs";
  if (::umount2(rootfs.c_str(), 0) != 0 && errno != EINVAL && errno != ENOENT) {
    // Still busy (virtiofsd not yet gone): detach it now, the kernel finishes later.
    if (::umount2(rootfs.c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
      return ErrnoError("unmounting", rootfs);
    }
  }
  ::unlink(marker.c_str());
  return volumes;
}

// virtiofsd runs chrooted in the host's mount namespace (plugins/common/virtiofsd.cc):
// what is mounted below the share after the VM booted reaches the guest through it.
Result<pluginapi::MountPlan> RootfsExporter::PreparePodShare(
    const pluginapi::StoragePrepareRequest& request) const {
  if (!IsAbsoluteClean(request.vm_run_dir())) {
    return MakeError(ErrorCode::kInvalidArgument, "pod share: the VM run directory '" +
                                                      request.vm_run_dir().substr(0, 256) +
                                                      "' is not a clean absolute path");
  }
  if (!IsContainerdName(request.container_id()) || !IsContainerdName(request.namespace_())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "pod share: container id '" + request.container_id().substr(0, 80) +
                         "' or namespace '" + request.namespace_().substr(0, 80) +
                         "' is not a containerd identifier");
  }
  if (!IsAbsoluteClean(config_.record_dir)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "pod share: no state directory to record the container in "
                     "(paths.state_dir): set it to an absolute path");
  }
  if (request.rootfs_size() > 1) {
    return MakeError(ErrorCode::kNotImplemented,
                     "a rootfs of " + std::to_string(request.rootfs_size()) +
                         " mounts is not supported yet: use the overlayfs or native snapshotter");
  }
  const std::string share = request.vm_run_dir() + "/" + kPodShareDir;
  const std::string writable = request.vm_run_dir() + "/" + kPodShareWritableDir;
  // Directories are made through the writable tmpfs, mounts on the share (exactly the
  // flags asked for, as the guest sees them).
  const std::string made_dir = writable + "/" + request.container_id();
  const std::string made_rootfs = made_dir + "/rootfs";
  const std::string dir = share + "/" + request.container_id();
  const std::string rootfs = dir + "/rootfs";
  std::error_code error;
  fs::create_directories(share, error);
  if (!error) fs::create_directories(writable, error);
  if (!error) fs::create_directories(config_.record_dir + "/" + kPodShareRecords, error);
  if (error) return MakeError(ErrorCode::kPermission, "creating " + share + ": " + error.message());
  if (!IsMountPoint(share))
    BBX_RETURN_IF_ERROR(plugins::MountReadOnlyView("beaconbox-pod-share", writable, share));
  if (::mkdir(made_dir.c_str(), 0755) != 0) {
    return ErrnoError("creating the container's directory in the pod share", made_dir);
  }
  if (::mkdir(made_rootfs.c_str(), 0755) != 0 ||
      ::mkdir((made_dir + "/" + kVolumesDir).c_str(), 0755) != 0) {
    Status failed = ErrnoError("creating the container's mount points in", made_dir);
    ::rmdir(made_rootfs.c_str());
    ::rmdir(made_dir.c_str());
    return failed.error();
  }
  // From here on Release undoes what is done. The record is not in the bundle:
  // containerd may remove the bundle before the shim's delete action releases.
  BBX_RETURN_IF_ERROR(WriteFileAtomic(
      RecordPath(kPodShareRecords, request.namespace_(), request.container_id()), dir + "\n"));

  pluginapi::HostMount bound;
  if (request.rootfs_size() == 1) {
    bound = request.rootfs(0);
  } else {
    bound.set_type("bind");
    bound.set_source(request.bundle() + "/rootfs");
    bound.add_options("rbind");
  }
  BBX_RETURN_IF_ERROR(MountRootfs(bound, rootfs));
  if (request.rootfs_read_only() &&
      ::mount(nullptr, rootfs.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
    return ErrnoError("making the read-only rootfs read-only", rootfs);
  }
  if (!request.volumes().empty()) BBX_RETURN_IF_ERROR(StageVolumes(dir, request.volumes()));

  // One device for every container of the VM: the same tag and host path.
  pluginapi::MountPlan plan;
  auto* device = plan.add_devices()->mutable_share();
  device->set_tag(config_.share_tag);
  device->set_host_path(share);
  device->set_read_only(false);
  auto* guest_share = plan.add_guest_mounts();
  guest_share->set_type("virtiofs");
  guest_share->set_source(config_.share_tag);
  guest_share->set_target(kGuestPodShare);
  const std::string guest_dir = std::string(kGuestPodShare) + "/" + request.container_id();
  if (request.rootfs_read_only()) {
    // As Prepare's: an overlay with a small guest tmpfs on top, so that crun can make
    // the mount points the image lacks.
    auto* scratch = plan.add_guest_mounts();
    scratch->set_type("tmpfs");
    scratch->set_source("tmpfs");
    scratch->set_target(kGuestRootfsScratch);
    scratch->add_options("mode=0755");
    scratch->add_options("size=16m");
    auto* overlay = plan.add_guest_mounts();
    overlay->set_type("overlay");
    overlay->set_source("overlay");
    overlay->set_target("rootfs");
    overlay->add_options("lowerdir=" + guest_dir + "/rootfs");
    overlay->add_options(std::string("upperdir=") + kGuestRootfsScratch + "/upper");
    overlay->add_options(std::string("workdir=") + kGuestRootfsScratch + "/work");
    plan.set_guest_rootfs("rootfs");
  } else {
    plan.set_guest_rootfs(guest_dir + "/rootfs");
  }
  for (int i = 0; i < request.volumes_size(); ++i) {
    plan.add_guest_volume_paths(guest_dir + "/" + kVolumesDir + "/" + std::to_string(i));
  }
  return plan;
}

Status RootfsExporter::ReleasePodShare(const std::string& marker) const {
  BBX_ASSIGN_OR_RETURN(std::string dir, ReadSmallFile(marker, 4096));
  while (!dir.empty() && dir.back() == '\n') dir.pop_back();
  const fs::path dir_path(dir);
  const std::string share = dir_path.parent_path().string();
  const std::string writable =
      dir_path.parent_path().parent_path().string() + "/" + kPodShareWritableDir;
  const std::string made_dir = writable + "/" + dir_path.filename().string();
  if (!IsAbsoluteClean(dir) || dir_path.parent_path().filename() != kPodShareDir ||
      !IsContainerdName(dir_path.filename().string())) {
    return MakeError(ErrorCode::kInternal, marker + " names '" + dir.substr(0, 256) +
                                               "', no container directory of a pod share: "
                                               "not touched; unmount and remove it by hand");
  }
  Status status = UnstageVolumes(dir);
  const std::string rootfs = dir + "/rootfs";
  if (::umount2(rootfs.c_str(), 0) != 0 && errno != EINVAL && errno != ENOENT) {
    if (::umount2(rootfs.c_str(), MNT_DETACH) != 0 && errno != EINVAL && status.ok()) {
      status = ErrnoError("unmounting", rootfs);
    }
  }
  if (status.ok()) {
    ::rmdir((made_dir + "/" + kVolumesDir).c_str());
    ::rmdir((made_dir + "/rootfs").c_str());
    ::rmdir(made_dir.c_str());
  }
  // The last container out takes the share and its tmpfs.
  std::error_code error;
  if (status.ok() && IsMountPoint(writable) && fs::is_empty(writable, error) && !error) {
    if (IsMountPoint(share) && ::umount2(share.c_str(), MNT_DETACH) != 0) {
      status = ErrnoError("unmounting", share);
    }
    if (status.ok() && ::umount2(writable.c_str(), MNT_DETACH) != 0) {
      status = ErrnoError("unmounting", writable);
    }
    if (status.ok()) {
      ::rmdir(share.c_str());
      ::rmdir(writable.c_str());
    }
  }
  if (status.ok()) ::unlink(marker.c_str());
  return status;
}

}  // namespace beaconbox::storage
