#include "plugins/storage-virtiofs/rootfs_export.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "common/base/errno_error.h"

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

MountOptions ParseMountOptions(const std::vector<std::string>& options) {
  // (set flags, clear flags) per option, as mount(8) understands them.
  static const std::map<std::string, std::pair<unsigned long, unsigned long>> kFlags = {
      {"ro", {MS_RDONLY, 0}},        {"rw", {0, MS_RDONLY}},
      {"nosuid", {MS_NOSUID, 0}},    {"suid", {0, MS_NOSUID}},
      {"nodev", {MS_NODEV, 0}},      {"dev", {0, MS_NODEV}},
      {"noexec", {MS_NOEXEC, 0}},    {"exec", {0, MS_NOEXEC}},
      {"sync", {MS_SYNCHRONOUS, 0}}, {"async", {0, MS_SYNCHRONOUS}},
      {"noatime", {MS_NOATIME, 0}},  {"atime", {0, MS_NOATIME}},
      {"relatime", {MS_RELATIME, 0}}, {"strictatime", {MS_STRICTATIME, 0}},
      {"bind", {MS_BIND, 0}},        {"rbind", {MS_BIND | MS_REC, 0}},
      {"remount", {MS_REMOUNT, 0}},  {"defaults", {0, 0}},
  };
  MountOptions parsed;
  for (const auto& option : options) {
    if (auto it = kFlags.find(option); it != kFlags.end()) {
      parsed.flags |= it->second.first;
      parsed.flags &= ~it->second.second;
      if (option == "rbind") parsed.recursive_bind = true;
      continue;
    }
    if (!parsed.data.empty()) parsed.data += ',';
    parsed.data += option;
  }
  return parsed;
}

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
    if (mount.type() == "bind") parsed.flags |= MS_BIND;
    unsigned long flags = parsed.flags;
    // A read-only bind needs a second, remounting call: the kernel ignores MS_RDONLY
    // on the first.
    bool read_only_bind = (flags & MS_BIND) && (flags & MS_RDONLY);
    if (::mount(mount.source().c_str(), rootfs.c_str(), mount.type().c_str(), flags & ~MS_RDONLY,
                parsed.data.empty() ? nullptr : parsed.data.c_str()) != 0) {
      return ErrnoError("mounting the container rootfs (" + mount.type() + ") on", rootfs);
    }
    if (read_only_bind) {
      ::mount(nullptr, rootfs.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr);
    }
    std::ofstream(request.bundle() + "/" + kMountedMarker) << rootfs << '\n';
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
