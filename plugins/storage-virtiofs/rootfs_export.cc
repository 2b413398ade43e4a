#include "plugins/storage-virtiofs/rootfs_export.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/mount_options.h"
#include "plugins/storage-virtiofs/volume_export.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;

bool IsAbsoluteClean(const std::string& path) {
  if (path.empty() || path[0] != '/') return false;
  for (const auto& part : fs::path(path)) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

Result<pluginapi::MountPlan> RootfsExporter::Prepare(
    const pluginapi::StoragePrepareRequest& request) const {
  if (!IsAbsoluteClean(request.bundle())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "bundle '" + request.bundle() + "' is not a clean absolute path");
  }
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
    const auto& mount = request.rootfs(0);
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
    if (::mount(mount.source().c_str(), rootfs.c_str(), mount.type().c_str(), flags,
                parsed.data.empty() ? nullptr : parsed.data.c_str()) != 0) {
      return ErrnoError("mounting the container rootfs (" + mount.type() + ") on", rootfs);
    }
    if (parsed.remount_readonly) {
      ::mount(nullptr, rootfs.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr);
    }
    if (parsed.propagation != 0) {
      ::mount(nullptr, rootfs.c_str(), nullptr, parsed.propagation, nullptr);
    }
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
    BBX_RETURN_IF_ERROR(StageVolumes(request.bundle(), request.volumes()));
    auto* volumes = plan.add_devices()->mutable_share();
    volumes->set_tag(config_.volume_share_tag);
    volumes->set_host_path(request.bundle() + "/" + kVolumesDir);
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

Status RootfsExporter::Release(const std::string& container_id, const std::string& bundle) const {
  if (!IsAbsoluteClean(bundle)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "bundle '" + bundle + "' is not a clean absolute path");
  }
  // The VM (and its virtiofsd) is gone when the shim releases: nothing holds these.
  Status volumes = UnstageVolumes(bundle);
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

}  // namespace beaconbox::storage
