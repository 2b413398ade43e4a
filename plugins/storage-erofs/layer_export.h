// Exports a container's image layers to its VM as EROFS: the rootfs containerd hands
// over (an overlay of read-only lowerdirs from the overlayfs snapshotter) becomes one
// cached EROFS image per lowerdir (layer_cache.h), each a read-only virtio-blk disk.
// In the guest, vminitd mounts each disk (erofs, ro) and an overlay of them, in the
// lowerdir order containerd gave, with its upper and work directories on a tmpfs of
// the VM: the container's writes stay in the VM and the host's snapshot upperdir is
// never written. Nothing is mounted on the host.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "beaconbox/plugin/v1/storage.pb.h"
#include "common/base/result.h"
#include "plugins/storage-erofs/layer_cache.h"

namespace beaconbox::storage {

// How the images reach the guest: one read-only virtio-blk disk per layer, or one
// read-only virtio-fs share per container holding hard links of its images (in
// <cache_dir>/shares/<namespace>--<id>/, so a guest sees only its own layers), each
// attached to a loop device in the guest.
enum class LayerTransport { kBlock, kVirtiofs };

// Where the container's writes go: a file system of the VM (a tmpfs, or an ext4
// scratch disk when scratch_size_mib > 0), or containerd's own upperdir and workdir,
// shared read-write over virtio-fs, so that containerd sees the writes (ctr snapshot
// diff). README.md says why "vm" is the default.
enum class WritableLayer { kVm, kHost };

struct ErofsExportConfig {
  LayerCacheConfig cache;
  LayerTransport transport = LayerTransport::kBlock;
  std::string layer_share_tag = "erofs-layers";
  std::string volume_share_tag = "volumes";
  // Size of the VM's tmpfs holding the writable layer, MiB; 0: the kernel's default
  // (half the guest's memory).
  uint64_t writable_layer_size_mib = 0;
  WritableLayer writable_layer = WritableLayer::kVm;
  std::string upper_share_tag = "erofs-upper";
  // kVm only: > 0 puts the writable layer on a sparse ext4 disk of this size, made in
  // the VM's run directory (removed with the VM) instead of a tmpfs.
  uint64_t scratch_size_mib = 0;
  std::string mkfs_ext4 = "mkfs.ext4";  // a name searched in PATH, or a path
  // Where release finds a container's staged volumes without its bundle
  // (StageContainerVolumes): the plugin's <state_dir>/storage-erofs.
  std::string record_dir;
};

// Per layer, what Prepare did: for the log and the benchmark.
struct LayerReport {
  std::string layer_dir;
  std::string image_path;
  bool converted = false;
  double milliseconds = 0;  // host-side time for this layer (identify + lookup/convert)
  std::string cache_note;   // what the cache's size limit did, or ""
  bool provided = false;    // containerd's own EROFS layer file (erofs snapshotter), as is
};

struct ErofsPlan {
  beaconbox::plugin::v1::MountPlan plan;
  std::vector<LayerReport> layers;
  // flock(LOCK_SH) on each image (LayerCache::Get): keep them until Release, so that
  // gc and the size limit leave the images of a running container alone.
  std::vector<UniqueFd> holds;
};

// At most this many layers: each is a PCI device of the VM.
inline constexpr int kMaxLayers = 20;
// Where the layers and the writable layer are in the guest bundle.
inline constexpr char kGuestLayersDir[] = "layers";
inline constexpr char kGuestWritableDir[] = "rootfs-writable";
inline constexpr char kGuestLayerImagesDir[] = "layer-images";  // the virtiofs transport's share
// A pod's containers (StoragePrepareRequest.pod_share) get their images over one
// read-only share per VM, whatever the transport: <cache_dir>/shares/pod-<hash of the
// VM's run directory>/<namespace>--<id>/<i>.erofs (hard links; the guest can neither
// write nor add entries), so that a container joining the running VM needs no new
// device. The bundle file kPodLayerShareMarker names the container's directory. Their
// volumes go over the pod's one volume share (StagePodContainerVolumes,
// plugins/common/volume_export.h), planned by every container of the pod.
inline constexpr char kPodLayerShareMarker[] = "beaconbox-erofs-pod-layers";

// The lowerdirs of containerd's overlay rootfs mount, topmost first (as in the
// lowerdir option), and the options vminitd's overlay keeps (userxattr, ...).
struct OverlayLayers {
  std::vector<std::string> lowerdirs;
  std::vector<std::string> kept_options;
  std::string upperdir;  // containerd's, empty for a read-only view
  std::string workdir;
};

// The scratch disk's file in the VM's run directory, and its virtio-blk id (the
// serial: at most 20 bytes, unique per container of the VM).
std::string ScratchDiskPath(const std::string& vm_run_dir, const std::string& namespace_name,
                            const std::string& id);
std::string ScratchDiskId(const std::string& namespace_name, const std::string& id);
// Makes `path` a sparse file of `size_mib` MiB and an ext4 file system on it (no
// journal: it dies with the VM). On failure the file is removed.
Status MakeScratchDisk(const std::string& mkfs_ext4, const std::string& path, uint64_t size_mib);
Result<OverlayLayers> ParseOverlayRootfs(const beaconbox::plugin::v1::HostMount& mount);

class ErofsExporter {
 public:
  explicit ErofsExporter(ErofsExportConfig config)
      : config_(std::move(config)), cache_(config_.cache) {}

  Result<ErofsPlan> Prepare(const beaconbox::plugin::v1::StoragePrepareRequest& request) const;
  // Unstages the volumes and the virtiofs transport's share directory; the cached
  // images stay for the next container.
  Status Release(const beaconbox::plugin::v1::StorageReleaseRequest& request) const;

  // The virtiofs transport's per-container directory of hard links.
  std::string LayerShareDir(const std::string& namespace_name, const std::string& id) const;
  // A pod's share directory (kPodLayerShareMarker) of the VM whose run directory is
  // `vm_run_dir`.
  std::string PodLayerShareDir(const std::string& vm_run_dir) const;

  const LayerCache& cache() const { return cache_; }

 private:
  Status ReleasePodLayerShare(const std::string& bundle) const;

  ErofsExportConfig config_;
  LayerCache cache_;
};

}  // namespace beaconbox::storage
