#include "plugins/storage-virtiofs/rootfs_export.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/mount_options.h"

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
  if (error) return MakeError(ErrorCode::kPermission, "creating " + rootfs + ": " + error.message());

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
  auto* guest_mount = plan.add_guest_mounts();
  guest_mount->set_type("virtiofs");
  guest_mount->set_source(config_.share_tag);
  guest_mount->set_target("rootfs");
  if (request.rootfs_read_only()) guest_mount->add_options("ro");
  plan.set_guest_rootfs("rootfs");
  return plan;
}

Status RootfsExporter::Release(const std::string& container_id, const std::string& bundle) const {
  if (!IsAbsoluteClean(bundle)) {
    return MakeError(ErrorCode::kInvalidArgument, "bundle '" + bundle + "' is not a clean absolute path");
  }
  const std::string marker = bundle + "/" + kMountedMarker;
  if (::access(marker.c_str(), F_OK) != 0) return Status::Ok();
  const std::string rootfs = bundle + "/rootfs";
  if (::umount2(rootfs.c_str(), 0) != 0 && errno != EINVAL && errno != ENOENT) {
    // Still busy (virtiofsd not yet gone): detach it now, the kernel finishes later.
    if (::umount2(rootfs.c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
      return ErrnoError("unmounting", rootfs);
    }
  }
  ::unlink(marker.c_str());
  return Status::Ok();
}

}  // namespace beaconbox::storage
