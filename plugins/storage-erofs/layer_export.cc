#include "plugins/storage-erofs/layer_export.h"

#include <chrono>
#include <filesystem>

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
    } else if (option == "userxattr") {
      // The whiteout markers are user.overlay.* xattrs: the guest's overlay reads them so.
      layers.kept_options.push_back(option);
    }
    // upperdir and workdir are the host snapshot's: the writable layer is the VM's.
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
  BBX_ASSIGN_OR_RETURN(OverlayLayers layers, ParseOverlayRootfs(request.rootfs(0)));

  ErofsPlan result;
  pluginapi::MountPlan& plan = result.plan;
  std::string lowerdir;
  for (size_t i = 0; i < layers.lowerdirs.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    BBX_ASSIGN_OR_RETURN(CachedLayer cached, cache_.Get(layers.lowerdirs[i]));
    const std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - start;
    result.layers.push_back(
        {layers.lowerdirs[i], cached.image_path, cached.converted, took.count()});

    // virtio-blk serials hold at most 20 bytes: "erofs<i>" fits.
    const std::string id = "erofs" + std::to_string(i);
    auto* disk = plan.add_devices()->mutable_block();
    disk->set_id(id);
    disk->set_host_path(cached.image_path);
    disk->set_read_only(true);
    const std::string target = std::string(kGuestLayersDir) + "/" + std::to_string(i);
    auto* layer_mount = plan.add_guest_mounts();
    layer_mount->set_type("erofs");
    layer_mount->set_source("/dev/disk/by-id/virtio-" + id);
    layer_mount->set_target(target);
    layer_mount->add_options("ro");
    if (!lowerdir.empty()) lowerdir += ':';
    lowerdir += target;  // same order as containerd's lowerdir: topmost first
  }
  auto* writable = plan.add_guest_mounts();
  writable->set_type("tmpfs");
  writable->set_source("tmpfs");
  writable->set_target(kGuestWritableDir);
  writable->add_options("mode=0755");
  if (config_.writable_layer_size_mib > 0) {
    writable->add_options("size=" + std::to_string(config_.writable_layer_size_mib) + "m");
  }
  auto* overlay = plan.add_guest_mounts();
  overlay->set_type("overlay");
  overlay->set_source("overlay");
  overlay->set_target("rootfs");
  overlay->add_options("lowerdir=" + lowerdir);
  overlay->add_options(std::string("upperdir=") + kGuestWritableDir + "/upper");
  overlay->add_options(std::string("workdir=") + kGuestWritableDir + "/work");
  for (const std::string& option : layers.kept_options) overlay->add_options(option);
  plan.set_guest_rootfs("rootfs");

  if (!request.volumes().empty()) {
    BBX_RETURN_IF_ERROR(StageVolumes(request.bundle(), request.volumes()));
    auto* volumes = plan.add_devices()->mutable_share();
    volumes->set_tag(config_.volume_share_tag);
    volumes->set_host_path(request.bundle() + "/" + kVolumesDir);
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

Status ErofsExporter::Release(const std::string& bundle) const {
  if (!IsAbsoluteClean(bundle)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "bundle '" + bundle + "' is not a clean absolute path");
  }
  return UnstageVolumes(bundle);
}

}  // namespace beaconbox::storage
