#include "plugins/storage-erofs/layer_export.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>

#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/unique_fd.h"
#include "plugins/common/child_process.h"
#include "plugins/common/container_names.h"
#include "plugins/common/path_search.h"
#include "plugins/common/volume_export.h"
#include "plugins/storage-erofs/containerd_layer.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;

using plugins::ContainerKeyName;
using plugins::IsAbsoluteClean;
using plugins::IsContainerdName;
using plugins::IsContainerKeyName;
using plugins::kGuestVolumesDir;
using plugins::ReleaseContainerVolumes;
using plugins::StageContainerVolumes;
using plugins::StagePodContainerVolumes;

}  // namespace

Result<OverlayLayers> ParseOverlayRootfs(const pluginapi::HostMount& mount) {
  if (mount.type() != "overlay") {
    return MakeError(ErrorCode::kNotImplemented,
                     "the erofs storage driver takes an overlay rootfs of image layers (the "
                     "overlayfs snapshotter); this rootfs is a '" +
                         mount.type() + "' mount: use [storage] driver = \"virtiofs\"");
  }
  OverlayLayers layers;
  for (const std::string& option : mount.options()) {
    if (option.starts_with("lowerdir=")) {
      const std::string value = option.substr(9);
      size_t start = 0;
      while (start <= value.size()) {
        size_t colon = value.find(':', start);
        if (colon == std::string::npos) colon = value.size();
        const std::string layer = value.substr(start, colon - start);
        if (!IsAbsoluteClean(layer)) {
          return MakeError(ErrorCode::kInvalidArgument,
                           "overlay rootfs: lowerdir '" + layer + "' is not a clean absolute path");
        }
        layers.lowerdirs.push_back(layer);
        start = colon + 1;
      }
    } else if (option.starts_with("upperdir=")) {
      layers.upperdir = option.substr(9);
    } else if (option.starts_with("workdir=")) {
      layers.workdir = option.substr(8);
    } else if (option == "userxattr") {
      // The whiteout markers are user.overlay.* xattrs: the guest's overlay reads them so.
      layers.kept_options.push_back(option);
    }
    // upperdir and workdir are the host snapshot's: used only with writable_layer host.
  }
  if (layers.lowerdirs.empty()) {
    return MakeError(ErrorCode::kNotImplemented,
                     "overlay rootfs without lowerdir (an image without layers): use [storage] "
                     "driver = \"virtiofs\"");
  }
  if (layers.lowerdirs.size() > static_cast<size_t>(kMaxLayers)) {
    return MakeError(ErrorCode::kNotImplemented,
                     "the image has " + std::to_string(layers.lowerdirs.size()) +
                         " layers; the erofs storage driver attaches at most " +
                         std::to_string(kMaxLayers) + ": use [storage] driver = \"virtiofs\"");
  }
  return layers;
}

Result<ErofsPlan> ErofsExporter::Prepare(const pluginapi::StoragePrepareRequest& request) const {
  if (!IsAbsoluteClean(request.bundle())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "bundle '" + request.bundle() + "' is not a clean absolute path");
  }
  if (request.rootfs_size() != 1) {
    return MakeError(ErrorCode::kNotImplemented,
                     "the erofs storage driver takes one overlay rootfs mount, got " +
                         std::to_string(request.rootfs_size()) +
                         ": use [storage] driver = \"virtiofs\"");
  }
  // containerd 2.1+'s erofs snapshotter hands a read-only view of a single layer as
  // one "erofs" mount of its layer file; everything else is an overlay.
  const pluginapi::HostMount& rootfs = request.rootfs(0);
  OverlayLayers layers;
  std::string single_image;
  if (rootfs.type() == "erofs") {
    BBX_ASSIGN_OR_RETURN(single_image, ContainerdErofsMountImage(rootfs));
    layers.lowerdirs.push_back(rootfs.source());
  } else {
    BBX_ASSIGN_OR_RETURN(layers, ParseOverlayRootfs(rootfs));
  }

  ErofsPlan result;
  pluginapi::MountPlan& plan = result.plan;
  std::string lowerdir;
  // A pod's containers share the VM, which cannot get disks added while it runs: their
  // images go over one read-only share per VM (a directory per container in it).
  const bool pod = request.pod_share();
  const bool over_virtiofs = pod || config_.transport == LayerTransport::kVirtiofs;
  std::string share_dir, share_root, guest_images_dir = kGuestLayerImagesDir;
  if (over_virtiofs) {
    share_dir = LayerShareDir(request.namespace_(), request.container_id());
    share_root = share_dir;
    if (pod) {
      if (!IsAbsoluteClean(request.vm_run_dir()) || !IsContainerdName(request.namespace_()) ||
          !IsContainerdName(request.container_id())) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "pod layer share: VM run directory '" +
                             request.vm_run_dir().substr(0, 256) + "', namespace '" +
                             request.namespace_().substr(0, 80) + "' or container id '" +
                             request.container_id().substr(0, 80) +
                             "' is not a clean path or name: update beaconbox's shim");
      }
      share_root = PodLayerShareDir(request.vm_run_dir());
      const std::string name = ContainerKeyName(request.namespace_(), request.container_id());
      share_dir = share_root + "/" + name;
      guest_images_dir += "/" + name;
    }
    std::error_code error;
    fs::remove_all(share_dir, error);  // a leftover of a crashed shim
    fs::create_directories(share_dir, error);
    if (error) {
      return MakeError(ErrorCode::kPermission,
                       "creating the layer share " + share_dir + ": " + error.message());
    }
    if (pod) {
      // Release finds the container's directory by it (its request has no VM dir).
      if (Status marked =
              WriteFileAtomic(request.bundle() + "/" + kPodLayerShareMarker, share_dir + "\n");
          !marked.ok()) {
        fs::remove_all(share_dir, error);
        ::rmdir(share_root.c_str());
        return marked.error();
      }
    }
    auto* share = plan.add_devices()->mutable_share();
    share->set_tag(config_.layer_share_tag);
    share->set_host_path(share_root);
    share->set_read_only(true);
    auto* share_mount = plan.add_guest_mounts();
    share_mount->set_type("virtiofs");
    share_mount->set_source(config_.layer_share_tag);
    share_mount->set_target(kGuestLayerImagesDir);
    share_mount->add_options("ro");
  }
  std::string scratch_path;  // made below; removed again when Prepare fails
  auto undo_share = [&](Error error) -> Error {
    if (over_virtiofs) {
      std::error_code ignored;
      fs::remove_all(share_dir, ignored);
    }
    if (pod) {
      ::unlink((request.bundle() + "/" + kPodLayerShareMarker).c_str());
      ::rmdir(share_root.c_str());  // only when no other container of the pod is in it
    }
    if (!scratch_path.empty()) ::unlink(scratch_path.c_str());
    return error;
  };
  for (size_t i = 0; i < layers.lowerdirs.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    // A layer of containerd's erofs snapshotter is already EROFS: used as it is.
    auto given = single_image.empty() ? ContainerdErofsLayer(layers.lowerdirs[i])
                                      : Result<std::string>(single_image);
    if (!given.ok()) return undo_share(given.error());
    CachedLayer cached;
    if (!given->empty()) {
      cached.image_path = *given;
    } else {
      auto got = cache_.Get(layers.lowerdirs[i]);
      if (!got.ok()) return undo_share(got.error());
      cached = std::move(got).value();
    }
    const std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - start;
    result.layers.push_back({layers.lowerdirs[i], cached.image_path, cached.converted, took.count(),
                             cached.note, !given->empty()});
    result.holds.push_back(std::move(cached.hold));

    const std::string target = std::string(kGuestLayersDir) + "/" + std::to_string(i);
    auto* layer_mount = plan.add_guest_mounts();
    layer_mount->set_type("erofs");
    layer_mount->set_target(target);
    layer_mount->add_options("ro");
    if (over_virtiofs) {
      // A hard link: the guest sees this container's images only, and a gc or a
      // reconversion of the cache does not pull the file from under the VM.
      const std::string name = std::to_string(i) + ".erofs";
      const std::string link = share_dir + "/" + name;
      if (::link(cached.image_path.c_str(), link.c_str()) != 0) {
        if (errno == EXDEV && !given->empty()) {
          // containerd's own layer file cannot be hard-linked across file systems.
          return undo_share(MakeError(
              ErrorCode::kFailedPrecondition,
              "containerd's EROFS layer " + cached.image_path +
                  " is on another file system than cache_dir " + config_.cache.cache_dir +
                  (pod ? ": set cache_dir on containerd's file system (a pod's containers get "
                         "their images over a share of the VM)"
                       : ": set cache_dir on containerd's file system or use transport = "
                         "\"blk\"")));
        }
        return undo_share(ErrnoError("linking " + cached.image_path + " to", link));
      }
      layer_mount->set_source(guest_images_dir + "/" + name);
      layer_mount->add_options("loop");  // vminitd attaches it to a loop device
    } else {
      // virtio-blk serials hold at most 20 bytes: "erofs<i>" fits.
      const std::string id = "erofs" + std::to_string(i);
      auto* disk = plan.add_devices()->mutable_block();
      disk->set_id(id);
      disk->set_host_path(cached.image_path);
      disk->set_read_only(true);
      layer_mount->set_source("/dev/disk/by-id/virtio-" + id);
    }
    if (!lowerdir.empty()) lowerdir += ':';
    lowerdir += target;  // same order as containerd's lowerdir: topmost first
  }
  std::string upper = std::string(kGuestWritableDir) + "/upper";
  std::string work = std::string(kGuestWritableDir) + "/work";
  auto* writable = plan.add_guest_mounts();
  writable->set_target(kGuestWritableDir);
  if (config_.writable_layer == WritableLayer::kHost && !layers.upperdir.empty()) {
    // containerd's upperdir and workdir, siblings in the snapshot's directory (both
    // snapshotters): one read-write share of that directory, so that the overlay's
    // upper and work directories are on one file system in the guest too.
    const fs::path upper_host(layers.upperdir), work_host(layers.workdir);
    if (!IsAbsoluteClean(layers.upperdir) || !IsAbsoluteClean(layers.workdir) ||
        upper_host.parent_path() != work_host.parent_path() || upper_host == work_host ||
        upper_host.filename().empty() || work_host.filename().empty()) {
      return undo_share(MakeError(
          ErrorCode::kNotImplemented,
          "writable_layer = \"host\" needs containerd's upperdir and workdir side by side in "
          "one snapshot directory, got '" +
              layers.upperdir + "' and '" + layers.workdir +
              "': use writable_layer = \"vm\" or [storage] driver = \"virtiofs\""));
    }
    auto* share = plan.add_devices()->mutable_share();
    share->set_tag(config_.upper_share_tag);
    share->set_host_path(upper_host.parent_path().string());
    share->set_read_only(false);
    share->set_overlay_upper(true);
    writable->set_type("virtiofs");
    writable->set_source(config_.upper_share_tag);
    upper = std::string(kGuestWritableDir) + "/" + upper_host.filename().string();
    work = std::string(kGuestWritableDir) + "/" + work_host.filename().string();
  } else if (config_.writable_layer == WritableLayer::kVm && config_.scratch_size_mib > 0) {
    if (!IsAbsoluteClean(request.vm_run_dir())) {
      return undo_share(MakeError(ErrorCode::kInvalidArgument,
                                  "scratch_size_mib: the host gave no VM run directory ('" +
                                      request.vm_run_dir() + "'): update beaconbox's shim"));
    }
    scratch_path =
        ScratchDiskPath(request.vm_run_dir(), request.namespace_(), request.container_id());
    if (Status made = MakeScratchDisk(config_.mkfs_ext4, scratch_path, config_.scratch_size_mib);
        !made.ok()) {
      scratch_path.clear();  // removed by MakeScratchDisk
      return undo_share(made.error());
    }
    const std::string id = ScratchDiskId(request.namespace_(), request.container_id());
    auto* disk = plan.add_devices()->mutable_block();
    disk->set_id(id);
    disk->set_host_path(scratch_path);
    disk->set_read_only(false);
    writable->set_type("ext4");
    writable->set_source("/dev/disk/by-id/virtio-" + id);
  } else {
    writable->set_type("tmpfs");
    writable->set_source("tmpfs");
    writable->add_options("mode=0755");
    if (config_.writable_layer_size_mib > 0) {
      writable->add_options("size=" + std::to_string(config_.writable_layer_size_mib) + "m");
    }
  }
  auto* overlay = plan.add_guest_mounts();
  overlay->set_type("overlay");
  overlay->set_source("overlay");
  overlay->set_target("rootfs");
  overlay->add_options("lowerdir=" + lowerdir);
  overlay->add_options("upperdir=" + upper);
  overlay->add_options("workdir=" + work);
  for (const std::string& option : layers.kept_options) overlay->add_options(option);
  plan.set_guest_rootfs("rootfs");

  if (pod) {
    // The pod's one volume share, in the VM from its boot (a share cannot be added to
    // a running VM): every container of the pod plans the same device, also one
    // without volumes, so the first boots the VM with it and the others join.
    auto staged = StagePodContainerVolumes(request, config_.record_dir);
    if (!staged.ok()) return undo_share(staged.error());
    auto* volumes = plan.add_devices()->mutable_share();
    volumes->set_tag(config_.volume_share_tag);
    volumes->set_host_path(staged->share);
    volumes->set_read_only(false);  // read-only: its root, and each read-only volume
    auto* guest_mount = plan.add_guest_mounts();
    guest_mount->set_type("virtiofs");
    guest_mount->set_source(config_.volume_share_tag);
    guest_mount->set_target(kGuestVolumesDir);
    for (int i = 0; i < request.volumes_size(); ++i) {
      plan.add_guest_volume_paths(std::string(kGuestVolumesDir) + "/" + staged->staging + "/" +
                                  std::to_string(i));
    }
  } else if (!request.volumes().empty()) {
    auto staging = StageContainerVolumes(request, config_.record_dir);
    if (!staging.ok()) return undo_share(staging.error());
    auto* volumes = plan.add_devices()->mutable_share();
    volumes->set_tag(config_.volume_share_tag);
    volumes->set_host_path(*staging);
    volumes->set_read_only(false);  // as in storage-virtiofs: each read-only bind is so
    auto* guest_mount = plan.add_guest_mounts();
    guest_mount->set_type("virtiofs");
    guest_mount->set_source(config_.volume_share_tag);
    guest_mount->set_target(kGuestVolumesDir);
    for (int i = 0; i < request.volumes_size(); ++i) {
      plan.add_guest_volume_paths(std::string(kGuestVolumesDir) + "/" + std::to_string(i));
    }
  }
  return result;
}

std::string ScratchDiskPath(const std::string& vm_run_dir, const std::string& namespace_name,
                            const std::string& id) {
  return vm_run_dir + "/erofs-scratch-" + ContainerKeyName(namespace_name, id) + ".ext4";
}

std::string ScratchDiskId(const std::string& namespace_name, const std::string& id) {
  // FNV-1a of the container's name: a serial of 14 bytes, unique enough per VM.
  uint32_t hash = 2166136261u;
  for (unsigned char c : namespace_name + "/" + id) {
    hash ^= c;
    hash *= 16777619u;
  }
  char text[16];
  std::snprintf(text, sizeof(text), "scratch%08x", hash);
  return text;
}

Status MakeScratchDisk(const std::string& mkfs_ext4, const std::string& path, uint64_t size_mib) {
  std::error_code error;
  fs::create_directories(fs::path(path).parent_path(), error);
  if (error) {
    return MakeError(ErrorCode::kPermission, "scratch disk: creating " +
                                                 fs::path(path).parent_path().string() + ": " +
                                                 error.message() + " (config key paths.run_dir)");
  }
  {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return ErrnoError("scratch disk: creating", path);
    if (::ftruncate(fd.get(), static_cast<off_t>(size_mib) << 20) != 0) {
      Error truncate_error = ErrnoError("scratch disk: sizing", path);
      ::unlink(path.c_str());
      return truncate_error;
    }
  }
  const std::string mkfs = plugins::FindInPath(mkfs_ext4);
  if (::access(mkfs.c_str(), X_OK) != 0) {
    ::unlink(path.c_str());
    return MakeError(ErrorCode::kFailedPrecondition,
                     "scratch disk: " + mkfs +
                         " not found (config key mkfs_ext4): install "
                         "e2fsprogs or set scratch_size_mib = 0 (a tmpfs in the VM)");
  }
  const std::string log = path + ".mkfs.log";
  plugins::SpawnOptions options;
  options.log_path = log;
  options.truncate_log = true;
  auto pid = plugins::ForkExec({mkfs, "-q", "-F", "-m", "0", "-O", "^has_journal", "-E",
                                "nodiscard,lazy_itable_init=1", path},
                               options);
  int status = -1;
  if (pid.ok()) {
    while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  const std::string reason = ReadFileTail(log, 300);
  ::unlink(log.c_str());
  if (!pid.ok() || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ::unlink(path.c_str());
    return MakeError(ErrorCode::kUnavailable,
                     "scratch disk: " + mkfs + " failed on " + path +
                         (pid.ok() ? "" : ": " + pid.error().message) +
                         (reason.empty() ? "" : ": " + reason) +
                         ": check free space in paths.run_dir or set scratch_size_mib = 0");
  }
  return Status::Ok();
}

std::string ErofsExporter::LayerShareDir(const std::string& namespace_name,
                                         const std::string& id) const {
  return config_.cache.cache_dir + "/shares/" + ContainerKeyName(namespace_name, id);
}

std::string ErofsExporter::PodLayerShareDir(const std::string& vm_run_dir) const {
  char name[32];
  std::snprintf(name, sizeof(name), "pod-%016zx", std::hash<std::string>{}(vm_run_dir));
  return config_.cache.cache_dir + "/shares/" + name;
}

Status ErofsExporter::ReleasePodLayerShare(const std::string& bundle) const {
  const std::string marker = bundle + "/" + kPodLayerShareMarker;
  BBX_ASSIGN_OR_RETURN(std::string dir, ReadSmallFile(marker, 4096));
  while (!dir.empty() && dir.back() == '\n') dir.pop_back();
  const fs::path dir_path(dir);
  const fs::path root = dir_path.parent_path();
  if (!IsAbsoluteClean(dir) ||
      root.parent_path() != fs::path(config_.cache.cache_dir + "/shares") ||
      !root.filename().string().starts_with("pod-") ||
      !IsContainerKeyName(dir_path.filename().string())) {
    return MakeError(ErrorCode::kInternal, marker + " names '" + dir.substr(0, 256) +
                                               "', no container directory of a pod layer share "
                                               "in cache_dir: not touched; remove it by hand");
  }
  std::error_code error;
  fs::remove_all(dir_path, error);  // hard links only
  if (error) return MakeError(ErrorCode::kInternal, "removing " + dir + ": " + error.message());
  ::rmdir(root.c_str());  // the last container of the pod takes the pod's directory
  ::unlink(marker.c_str());
  return Status::Ok();
}

Status ErofsExporter::Release(const pluginapi::StorageReleaseRequest& request) const {
  if (!IsAbsoluteClean(request.bundle())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "bundle '" + request.bundle() + "' is not a clean absolute path");
  }
  Status volumes = ReleaseContainerVolumes(request.namespace_(), request.container_id(),
                                           request.bundle(), config_.record_dir);
  if (::access((request.bundle() + "/" + kPodLayerShareMarker).c_str(), F_OK) == 0) {
    Status layers = ReleasePodLayerShare(request.bundle());
    return volumes.ok() ? layers : volumes;
  }
  // Namespace and id are containerd's; the directory only holds hard links.
  if (IsContainerdName(request.namespace_()) && IsContainerdName(request.container_id())) {
    std::error_code ignored;
    fs::remove_all(LayerShareDir(request.namespace_(), request.container_id()), ignored);
    // A pod container whose bundle (and marker) is gone: containerd 1.7 removes the
    // bundle in its task Delete while its cleanup of a dead shim may be running the
    // `delete` action. Its directory is found by name in the pod shares (namespace and
    // id make it unique); only a pod directory it was in is taken when left empty.
    const std::string name = ContainerKeyName(request.namespace_(), request.container_id());
    for (const auto& pod : fs::directory_iterator(config_.cache.cache_dir + "/shares", ignored)) {
      if (!pod.path().filename().string().starts_with("pod-")) continue;
      const fs::path container_dir = pod.path() / name;
      if (!fs::is_directory(fs::symlink_status(container_dir, ignored))) continue;
      fs::remove_all(container_dir, ignored);  // hard links only
      ::rmdir(pod.path().c_str());
    }
  }
  return volumes;
}

}  // namespace beaconbox::storage
