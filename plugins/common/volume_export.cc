#include "plugins/common/volume_export.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string_view>
#include <vector>

#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/unique_fd.h"
#include "plugins/common/child_process.h"
#include "plugins/common/container_names.h"

namespace beaconbox::plugins {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;

// The staging tmpfs holds only empty mount points.
constexpr char kStagingTmpfsOptions[] = "mode=0755,size=64k";

std::string Describe(const pluginapi::Volume& volume) {
  return "volume " + volume.source().substr(0, 512) + " (mounted at " +
         volume.destination().substr(0, 512) + " in the container)";
}

// Whether the volume's source is a directory; an error names what is wrong with it.
Result<bool> CheckSource(const pluginapi::Volume& volume) {
  if (!IsAbsoluteClean(volume.source())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     Describe(volume) + ": the source is not an absolute path without '..': " +
                         "name the host path in full");
  }
  struct stat info {};
  if (::stat(volume.source().c_str(), &info) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return MakeError(ErrorCode::kNotFound, Describe(volume) +
                                                 ": the source does not exist on the host: "
                                                 "create it or remove the mount");
    }
    return ErrnoError(Describe(volume) + ": stat of the source", volume.source());
  }
  if (S_ISDIR(info.st_mode)) return true;
  if (S_ISREG(info.st_mode)) return false;
  return MakeError(ErrorCode::kNotImplemented,
                   Describe(volume) +
                       ": the source is neither a directory nor a regular file (a device, "
                       "socket or FIFO cannot reach a VM over virtio-fs): remove the mount");
}

// The mount point of one volume in the staging tmpfs, of the source's kind.
Status MakeMountPoint(const std::string& path, bool directory) {
  if (directory) {
    if (::mkdir(path.c_str(), 0755) != 0) return ErrnoError("mkdir", path);
    return Status::Ok();
  }
  UniqueFd file(::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!file) return ErrnoError("creating the mount point", path);
  return Status::Ok();
}

Status BindVolume(const pluginapi::Volume& volume, const std::string& target) {
  const unsigned long recursive = volume.recursive() ? MS_REC : 0;
  if (::mount(volume.source().c_str(), target.c_str(), nullptr, MS_BIND | recursive, nullptr) !=
      0) {
    return ErrnoError(Describe(volume) + ": bind mount onto", target);
  }
  // Private: the host's later mounts below the source do not reach the VM's view
  // half-way, and nothing the bind carries propagates back.
  if (::mount(nullptr, target.c_str(), nullptr, MS_PRIVATE | recursive, nullptr) != 0) {
    return ErrnoError(Describe(volume) + ": making private", target);
  }
  if (volume.read_only() && MakeReadOnlyRecursively(target.c_str()) != 0) {
    return ErrnoError(Describe(volume) + ": making read-only", target);
  }
  return Status::Ok();
}

Status Stage(const std::string& staging, const Volumes& volumes) {
  std::vector<bool> directories;
  for (const auto& volume : volumes) {
    BBX_ASSIGN_OR_RETURN(bool directory, CheckSource(volume));
    directories.push_back(directory);
  }
  std::error_code error;
  fs::create_directories(staging, error);
  if (error) {
    return MakeError(ErrorCode::kPermission, "creating " + staging + ": " + error.message());
  }
  if (::mount("beaconbox-volumes", staging.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              kStagingTmpfsOptions) != 0) {
    return ErrnoError("mounting the volume staging tmpfs on", staging);
  }
  if (::mount(nullptr, staging.c_str(), nullptr, MS_PRIVATE, nullptr) != 0) {
    return ErrnoError("making private", staging);
  }
  for (int i = 0; i < volumes.size(); ++i) {
    const std::string target = staging + "/" + std::to_string(i);
    BBX_RETURN_IF_ERROR(MakeMountPoint(target, directories[i]));
    BBX_RETURN_IF_ERROR(BindVolume(volumes[i], target));
  }
  // The binds keep their own flags; only the tmpfs (the share's root) becomes
  // read-only, so the guest can neither add entries nor remove a mount point.
  if (::mount(nullptr, staging.c_str(), nullptr,
              MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              kStagingTmpfsOptions) != 0) {
    return ErrnoError("making read-only", staging);
  }
  return Status::Ok();
}

// umount2 of `path` itself (never a symlink's target); lazily, so that a recursive
// bind with mounts below goes whole. Not mounted is success.
Status Unmount(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL &&
      errno != ENOENT) {
    return ErrnoError("unmounting", path);
  }
  return Status::Ok();
}

constexpr char kVolumeRecords[] = "volumes";
// A pod's containers stage where the containers of their own VM do: one release.
static_assert(std::string_view(kVolumeRecords) == kPodVolumeShareDir);

std::string VolumeRecordPath(const std::string& record_dir, const std::string& namespace_name,
                             const std::string& id) {
  return record_dir + "/" + kVolumeRecords + "/" + ContainerKeyName(namespace_name, id);
}

// The pod volume share's part of ReleaseContainerVolumes, once the container's
// volumes are unstaged: its directory goes (through the writable tmpfs), and with the
// last container's the share's mounts and directories.
Status ReleasePodVolumeShare(const std::string& vm_run_dir, const std::string& name) {
  const std::string share = vm_run_dir + "/" + kPodVolumeShareDir;
  const std::string writable = vm_run_dir + "/" + kPodVolumeShareWritableDir;
  const std::string made = writable + "/" + name;
  for (const std::string& dir : {made + "/" + kVolumesDir, made}) {
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError("pod volume share: removing", dir);
    }
  }
  std::error_code error;
  if (!fs::is_empty(writable, error) || error) return Status::Ok();
  if (IsMountPoint(share) && ::umount2(share.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) {
    return ErrnoError("unmounting the pod volume share", share);
  }
  if (::umount2(writable.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) {
    return ErrnoError("unmounting the pod volume share", writable);
  }
  ::rmdir(share.c_str());
  ::rmdir(writable.c_str());
  return Status::Ok();
}

}  // namespace

Result<std::string> StageContainerVolumes(const pluginapi::StoragePrepareRequest& request,
                                          const std::string& record_dir) {
  std::string base = request.bundle();
  if (IsAbsoluteClean(request.vm_run_dir()) && IsAbsoluteClean(record_dir) &&
      IsContainerdName(request.namespace_()) && IsContainerdName(request.container_id())) {
    const std::string records = record_dir + "/" + kVolumeRecords;
    std::error_code error;
    fs::create_directories(records, error);
    if (error) {
      return MakeError(ErrorCode::kPermission, "creating " + records + ": " + error.message());
    }
    // Recorded first: from here on release finds what is staged.
    BBX_RETURN_IF_ERROR(
        WriteFileAtomic(VolumeRecordPath(record_dir, request.namespace_(), request.container_id()),
                        request.vm_run_dir() + "\n"));
    // Per container: a pod's VM holds several.
    base = request.vm_run_dir() + "/" + kVolumeRecords + "/" +
           ContainerKeyName(request.namespace_(), request.container_id());
  }
  BBX_RETURN_IF_ERROR(StageVolumes(base, request.volumes()));
  return base + "/" + kVolumesDir;
}

Status ReleaseContainerVolumes(const std::string& namespace_name, const std::string& id,
                               const std::string& bundle, const std::string& record_dir) {
  Status status = IsAbsoluteClean(bundle) ? UnstageVolumes(bundle) : Status::Ok();
  if (!IsAbsoluteClean(record_dir) || !IsContainerdName(namespace_name) || !IsContainerdName(id)) {
    return status;
  }
  const std::string record = VolumeRecordPath(record_dir, namespace_name, id);
  if (::access(record.c_str(), F_OK) != 0) return status;
  BBX_ASSIGN_OR_RETURN(std::string base, ReadSmallFile(record, 4096));
  while (!base.empty() && base.back() == '\n') base.pop_back();
  if (!IsAbsoluteClean(base)) {
    return MakeError(ErrorCode::kInternal, record + " names '" + base.substr(0, 256) +
                                               "', no absolute path: not touched; unmount "
                                               "the volumes staged there by hand, then remove it");
  }
  const std::string staged_in =
      base + "/" + kVolumeRecords + "/" + ContainerKeyName(namespace_name, id);
  Status unstaged = UnstageVolumes(staged_in);
  if (unstaged.ok() && IsMountPoint(base + "/" + kPodVolumeShareWritableDir)) {
    unstaged = ReleasePodVolumeShare(base, ContainerKeyName(namespace_name, id));
  } else if (unstaged.ok()) {
    ::rmdir(staged_in.c_str());
    ::rmdir((base + "/" + kVolumeRecords).c_str());  // when it was the last
  }
  if (unstaged.ok()) ::unlink(record.c_str());
  return status.ok() ? unstaged : status;
}

Result<PodVolumes> StagePodContainerVolumes(const pluginapi::StoragePrepareRequest& request,
                                            const std::string& record_dir) {
  if (!IsAbsoluteClean(request.vm_run_dir()) || !IsContainerdName(request.namespace_()) ||
      !IsContainerdName(request.container_id())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "pod volume share: VM run directory '" + request.vm_run_dir().substr(0, 256) +
                         "', namespace '" + request.namespace_().substr(0, 80) +
                         "' or container id '" + request.container_id().substr(0, 80) +
                         "' is not a clean path or name: update beaconbox's shim");
  }
  if (!IsAbsoluteClean(record_dir)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "pod volume share: no state directory to record the container in "
                     "(paths.state_dir): set it to an absolute path");
  }
  if (request.volumes_size() > kMaxVolumes) {
    return MakeError(ErrorCode::kInvalidArgument, std::to_string(request.volumes_size()) +
                                                      " bind mounts of host paths: at most " +
                                                      std::to_string(kMaxVolumes) +
                                                      " per container; merge some");
  }
  const std::string name = ContainerKeyName(request.namespace_(), request.container_id());
  PodVolumes pod{request.vm_run_dir() + "/" + kPodVolumeShareDir, name + "/" + kVolumesDir};
  const std::string writable = request.vm_run_dir() + "/" + kPodVolumeShareWritableDir;
  std::error_code error;
  fs::create_directories(pod.share, error);
  if (!error) fs::create_directories(writable, error);
  if (!error) fs::create_directories(record_dir + "/" + kVolumeRecords, error);
  if (error) {
    return MakeError(ErrorCode::kPermission,
                     "pod volume share: creating " + pod.share + ": " + error.message());
  }
  if (!IsMountPoint(pod.share)) {
    BBX_RETURN_IF_ERROR(MountReadOnlyView("beaconbox-pod-volumes", writable, pod.share));
  }
  // Recorded first: from here on release undoes what is done, also the share's mounts
  // when this container was its only one.
  const std::string record =
      VolumeRecordPath(record_dir, request.namespace_(), request.container_id());
  if (Status recorded = WriteFileAtomic(record, request.vm_run_dir() + "\n"); !recorded.ok()) {
    if (fs::is_empty(writable, error) && !error) {
      ::umount2(pod.share.c_str(), MNT_DETACH);
      ::umount2(writable.c_str(), MNT_DETACH);
    }
    return recorded.error();
  }
  auto undo = [&](Error failed) -> Error {
    (void)ReleaseContainerVolumes(request.namespace_(), request.container_id(), request.bundle(),
                                  record_dir);
    return failed;
  };
  const std::string made = writable + "/" + name;
  if (::mkdir(made.c_str(), 0755) != 0 && errno != EEXIST) {
    return undo(ErrnoError("pod volume share: creating the container's directory", made));
  }
  if (!request.volumes().empty()) {
    const std::string staging = made + "/" + kVolumesDir;
    if (::mkdir(staging.c_str(), 0755) != 0 && errno != EEXIST) {
      return undo(ErrnoError("pod volume share: creating the staging directory", staging));
    }
    if (Status staged = StageVolumes(pod.share + "/" + name, request.volumes()); !staged.ok()) {
      return undo(staged.error());
    }
  }
  return pod;
}

Status MountReadOnlyView(const char* name, const std::string& writable, const std::string& share) {
  if (::mount(name, writable.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              kStagingTmpfsOptions) != 0) {
    return ErrnoError(std::string("mounting the ") + name + " tmpfs on", writable);
  }
  Status status = Status::Ok();
  if (::mount(nullptr, writable.c_str(), nullptr, MS_PRIVATE, nullptr) != 0) {
    status = ErrnoError("making private", writable);
  } else if (::mount(writable.c_str(), share.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    status = ErrnoError(std::string("binding the ") + name + " tmpfs on", share);
  } else if (::mount(nullptr, share.c_str(), nullptr, MS_PRIVATE, nullptr) != 0 ||
             ::mount(nullptr, share.c_str(), nullptr,
                     MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                     nullptr) != 0) {
    status = ErrnoError("making read-only", share);
    ::umount2(share.c_str(), MNT_DETACH);
  }
  if (!status.ok()) ::umount2(writable.c_str(), MNT_DETACH);
  return status;
}

bool IsMountPoint(const std::string& path) {
  struct stat self {};
  struct stat parent {};
  if (::stat(path.c_str(), &self) != 0) return false;
  if (::stat((path + "/..").c_str(), &parent) != 0) return false;
  return self.st_dev != parent.st_dev;
}

Status StageVolumes(const std::string& bundle, const Volumes& volumes) {
  if (volumes.empty()) return Status::Ok();
  if (volumes.size() > kMaxVolumes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::to_string(volumes.size()) + " bind mounts of host paths: at most " +
                         std::to_string(kMaxVolumes) + " per container; merge some");
  }
  const std::string staging = bundle + "/" + kVolumesDir;
  Status staged = Stage(staging, volumes);
  if (!staged.ok()) (void)UnstageVolumes(bundle);
  return staged;
}

Status UnstageVolumes(const std::string& bundle) {
  const std::string staging = bundle + "/" + kVolumesDir;
  struct stat info {};
  if (::lstat(staging.c_str(), &info) != 0) {
    return errno == ENOENT ? Status::Ok() : ErrnoError("stat", staging);
  }
  if (!S_ISDIR(info.st_mode)) {
    return MakeError(ErrorCode::kInternal,
                     staging + " is not a directory: not touched; remove it by hand");
  }
  // The entries are the tmpfs's (when it is mounted): the mount points, each
  // unmounted by name. Nothing below them is ever read or removed.
  std::vector<std::string> names;
  if (DIR* dir = ::opendir(staging.c_str())) {
    while (dirent* entry = ::readdir(dir)) {
      std::string name = entry->d_name;
      if (name != "." && name != "..") names.push_back(std::move(name));
    }
    ::closedir(dir);
  }
  Status status = Status::Ok();
  for (const auto& name : names) {
    if (Status unmounted = Unmount(staging + "/" + name); !unmounted.ok() && status.ok()) {
      status = unmounted;
    }
  }
  // The tmpfs, and any stacked on it: until the directory is no mount point.
  for (int layer = 0; layer < 16 && status.ok(); ++layer) {
    if (::umount2(staging.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) continue;
    if (errno != EINVAL) status = ErrnoError("unmounting", staging);
    break;
  }
  if (!status.ok()) return status;
  // In a pod share the directory is on a read-only bind: the pod share's release
  // removes it through its writable tmpfs (rootfs_export.h).
  if (::rmdir(staging.c_str()) != 0 && errno != ENOENT && errno != EROFS) {
    return ErrnoError("removing the volume staging directory", staging);
  }
  return Status::Ok();
}

}  // namespace beaconbox::plugins
