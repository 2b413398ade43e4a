#include "plugins/storage-erofs/layer_export.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/plugins/common/temp_dir.h"
#include "tests/plugins/storage-erofs/erofs_test_support.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
using plugins::testing::TempDir;
using testing::OverlayMount;
using testing::ReleaseRequest;
using testing::SameFile;

TEST(ParseOverlayRootfsTest, KeepsTheLowerdirOrder) {
  auto layers = ParseOverlayRootfs(OverlayMount("/s/3/fs:/s/2/fs:/s/1/fs"));
  ASSERT_TRUE(layers.ok()) << layers.error().message;
  EXPECT_EQ(layers->lowerdirs, (std::vector<std::string>{"/s/3/fs", "/s/2/fs", "/s/1/fs"}));
  EXPECT_TRUE(layers->kept_options.empty());
}

TEST(ParseOverlayRootfsTest, RefusesWhatItCannotCarry) {
  pluginapi::HostMount bind;
  bind.set_type("bind");
  bind.set_source("/s/1/fs");
  auto refused = ParseOverlayRootfs(bind);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kNotImplemented);
  EXPECT_NE(refused.error().message.find("driver = \"virtiofs\""), std::string::npos);
  EXPECT_FALSE(ParseOverlayRootfs(OverlayMount("/s/1/fs:relative")).ok());
  EXPECT_FALSE(ParseOverlayRootfs(OverlayMount("/s/1/../fs")).ok());
  std::string many;
  for (int i = 0; i <= kMaxLayers; ++i) many += (i ? ":/s/" : "/s/") + std::to_string(i);
  EXPECT_FALSE(ParseOverlayRootfs(OverlayMount(many)).ok());
}

TEST(ErofsExporterTest, PlansOneDiskPerLayerAndAnOverlayInTheVm) {
  if (::access("/usr/bin/mkfs.erofs", X_OK) != 0) GTEST_SKIP() << "mkfs.erofs not installed";
  TempDir dir;
  for (const char* layer : {"1", "2"}) {
    fs::create_directories(dir / ("snapshots/" + std::string(layer) + "/fs"));
    std::ofstream(dir / ("snapshots/" + std::string(layer) + "/fs/file")) << layer;
  }
  fs::create_directories(dir / "bundle");
  ErofsExportConfig config;
  config.cache.cache_dir = dir / "cache";
  config.writable_layer_size_mib = 64;
  ErofsExporter exporter(config);
  pluginapi::StoragePrepareRequest request;
  request.set_container_id("c1");
  request.set_bundle(dir / "bundle");
  *request.add_rootfs() = OverlayMount(dir / "snapshots/2/fs" + ":" + dir / "snapshots/1/fs");
  auto prepared = exporter.Prepare(request);
  ASSERT_TRUE(prepared.ok()) << prepared.error().message;
  const auto& plan = prepared->plan;
  ASSERT_EQ(plan.devices_size(), 2);
  ASSERT_EQ(prepared->layers.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(plan.devices(i).block().id(), "erofs" + std::to_string(i));
    EXPECT_TRUE(plan.devices(i).block().read_only());
    EXPECT_EQ(plan.devices(i).block().host_path(), prepared->layers[i].image_path);
    EXPECT_TRUE(prepared->layers[i].converted);
    EXPECT_EQ(plan.guest_mounts(i).type(), "erofs");
    EXPECT_EQ(plan.guest_mounts(i).source(), "/dev/disk/by-id/virtio-erofs" + std::to_string(i));
    EXPECT_EQ(plan.guest_mounts(i).target(), "layers/" + std::to_string(i));
  }
  EXPECT_EQ(prepared->layers[0].layer_dir, dir / "snapshots/2/fs");
  ASSERT_EQ(plan.guest_mounts_size(), 4);
  EXPECT_EQ(plan.guest_mounts(2).type(), "tmpfs");
  EXPECT_EQ(plan.guest_mounts(2).options(1), "size=64m");
  const auto& overlay = plan.guest_mounts(3);
  EXPECT_EQ(overlay.type(), "overlay");
  EXPECT_EQ(overlay.target(), "rootfs");
  EXPECT_EQ(overlay.options(0), "lowerdir=layers/0:layers/1");
  EXPECT_EQ(overlay.options(1), "upperdir=rootfs-writable/upper");
  EXPECT_EQ(overlay.options(2), "workdir=rootfs-writable/work");
  EXPECT_EQ(plan.guest_rootfs(), "rootfs");
  // Nothing is mounted or written on the host side of the bundle.
  EXPECT_TRUE(fs::is_empty(dir / "bundle"));

  auto again = exporter.Prepare(request);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->layers[0].converted);
  EXPECT_FALSE(again->layers[1].converted);
  pluginapi::StorageReleaseRequest release;
  release.set_container_id("c1");
  release.set_bundle(dir / "bundle");
  EXPECT_TRUE(exporter.Release(release).ok());
}

TEST(ErofsExporterTest, VirtiofsTransportSharesHardLinksOfThisContainersImages) {
  if (::access("/usr/bin/mkfs.erofs", X_OK) != 0) GTEST_SKIP() << "mkfs.erofs not installed";
  TempDir dir;
  for (const char* layer : {"1", "2"}) {
    fs::create_directories(dir / ("snapshots/" + std::string(layer) + "/fs"));
    std::ofstream(dir / ("snapshots/" + std::string(layer) + "/fs/file")) << layer;
  }
  fs::create_directories(dir / "bundle");
  ErofsExportConfig config;
  config.cache.cache_dir = dir / "cache";
  config.transport = LayerTransport::kVirtiofs;
  ErofsExporter exporter(config);
  pluginapi::StoragePrepareRequest request;
  request.set_container_id("c1");
  request.set_namespace_("ns");
  request.set_bundle(dir / "bundle");
  *request.add_rootfs() = OverlayMount(dir / "snapshots/2/fs" + ":" + dir / "snapshots/1/fs");
  auto prepared = exporter.Prepare(request);
  ASSERT_TRUE(prepared.ok()) << prepared.error().message;
  const auto& plan = prepared->plan;
  const std::string share_dir = dir / "cache/shares/ns--c1";
  ASSERT_EQ(plan.devices_size(), 1);
  EXPECT_EQ(plan.devices(0).share().host_path(), share_dir);
  EXPECT_TRUE(plan.devices(0).share().read_only());
  ASSERT_EQ(plan.guest_mounts_size(), 5);
  EXPECT_EQ(plan.guest_mounts(0).type(), "virtiofs");
  EXPECT_EQ(plan.guest_mounts(0).target(), "layer-images");
  for (int i = 0; i < 2; ++i) {
    const auto& layer = plan.guest_mounts(1 + i);
    EXPECT_EQ(layer.type(), "erofs");
    EXPECT_EQ(layer.source(), "layer-images/" + std::to_string(i) + ".erofs");
    EXPECT_EQ(layer.options(1), "loop");
    EXPECT_TRUE(
        SameFile(share_dir + "/" + std::to_string(i) + ".erofs", prepared->layers[i].image_path));
  }
  EXPECT_EQ(plan.guest_mounts(4).options(0), "lowerdir=layers/0:layers/1");
  EXPECT_TRUE(exporter.Release(ReleaseRequest("ns", "c1", dir / "bundle")).ok());
  EXPECT_FALSE(fs::exists(share_dir));
  EXPECT_TRUE(fs::exists(prepared->layers[0].image_path));
}

// A pod's containers (pod_share), even with the blk transport: one read-only share per
// VM, the same device for every container (so one joins the running VM without a new
// disk), each container's images in its own directory; the last release removes it.
TEST(ErofsExporterTest, PodContainersShareOneLayerShareOfTheVm) {
  if (::access("/usr/bin/mkfs.erofs", X_OK) != 0) GTEST_SKIP() << "mkfs.erofs not installed";
  TempDir dir;
  for (const char* layer : {"1", "2"}) {
    fs::create_directories(dir / ("snapshots/" + std::string(layer) + "/fs"));
    std::ofstream(dir / ("snapshots/" + std::string(layer) + "/fs/file")) << layer;
  }
  ErofsExportConfig config;
  config.cache.cache_dir = dir / "cache";
  ErofsExporter exporter(config);
  std::vector<pluginapi::MountPlan> plans;
  std::vector<std::string> images;
  for (const std::string id : {"sandbox", "app"}) {
    fs::create_directories(dir / ("bundle-" + id));
    pluginapi::StoragePrepareRequest request;
    request.set_container_id(id);
    request.set_namespace_("k8s.io");
    request.set_bundle(dir / ("bundle-" + id));
    request.set_vm_run_dir(dir / "run/vm1");
    request.set_pod_share(true);
    *request.add_rootfs() = OverlayMount(dir / "snapshots/2/fs" + ":" + dir / "snapshots/1/fs");
    auto prepared = exporter.Prepare(request);
    ASSERT_TRUE(prepared.ok()) << prepared.error().message;
    plans.push_back(prepared->plan);
    images.push_back(prepared->layers[1].image_path);
  }
  const std::string root = exporter.PodLayerShareDir(dir / "run/vm1");
  EXPECT_EQ(fs::path(root).parent_path(), fs::path(dir / "cache/shares"));
  EXPECT_NE(root, exporter.PodLayerShareDir(dir / "run/vm2"));
  for (int c = 0; c < 2; ++c) {
    const auto& plan = plans[c];
    const std::string name = std::string("k8s.io--") + (c == 0 ? "sandbox" : "app");
    ASSERT_EQ(plan.devices_size(), 1) << "no disk: the running VM cannot get one";
    EXPECT_EQ(plan.devices(0).share().tag(), "erofs-layers");
    EXPECT_EQ(plan.devices(0).share().host_path(), root);
    EXPECT_TRUE(plan.devices(0).share().read_only());
    ASSERT_EQ(plan.guest_mounts_size(), 5);
    EXPECT_EQ(plan.guest_mounts(0).target(), "layer-images");
    EXPECT_EQ(plan.guest_mounts(2).source(), "layer-images/" + name + "/1.erofs");
    EXPECT_EQ(plan.guest_mounts(2).options(1), "loop");
    EXPECT_TRUE(SameFile(root + "/" + name + "/1.erofs", images[c]));
  }
  ASSERT_TRUE(exporter.Release(ReleaseRequest("k8s.io", "sandbox", dir / "bundle-sandbox")).ok());
  EXPECT_FALSE(fs::exists(root + "/k8s.io--sandbox"));
  EXPECT_TRUE(fs::exists(root + "/k8s.io--app/0.erofs")) << "the app's images stay";
  EXPECT_FALSE(fs::exists(dir / "bundle-sandbox/beaconbox-erofs-pod-layers"));
  // The app's bundle, marker included, is gone before its release (containerd 1.7's
  // task Delete of a dead shim): its directory is still found and the pod's taken.
  fs::remove_all(dir / "bundle-app");
  const auto release = ReleaseRequest("k8s.io", "app", dir / "bundle-app");
  ASSERT_TRUE(exporter.Release(release).ok());
  EXPECT_FALSE(fs::exists(root)) << "the last container takes the pod's directory";
  EXPECT_TRUE(fs::exists(images[0])) << "the cache keeps its images";
  fs::create_directories(dir / "bundle-app");

  // A marker naming anything but a pod share directory is not followed.
  fs::create_directories(dir / "victim/x");
  std::ofstream(dir / "bundle-app/beaconbox-erofs-pod-layers") << dir / "victim/x";
  auto refused = exporter.Release(release);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("not touched"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "victim/x"));
}

}  // namespace
}  // namespace beaconbox::storage

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
using plugins::testing::TempDir;

// A 2-layer overlay request over containerd-like snapshot directories.
pluginapi::StoragePrepareRequest WritableRequest(const TempDir& dir) {
  for (const char* layer : {"1", "2"}) {
    fs::create_directories(dir / ("snapshots/" + std::string(layer) + "/fs"));
    std::ofstream(dir / ("snapshots/" + std::string(layer) + "/fs/file")) << layer;
  }
  fs::create_directories(dir / "snapshots/9/fs");
  fs::create_directories(dir / "snapshots/9/work");
  fs::create_directories(dir / "bundle");
  pluginapi::StoragePrepareRequest request;
  request.set_container_id("c1");
  request.set_namespace_("ns");
  request.set_bundle(dir / "bundle");
  request.set_vm_run_dir(dir / "run/vm1");
  auto* mount = request.add_rootfs();
  mount->set_type("overlay");
  mount->set_source("overlay");
  mount->add_options("workdir=" + dir / "snapshots/9/work");
  mount->add_options("upperdir=" + dir / "snapshots/9/fs");
  mount->add_options("lowerdir=" + dir / "snapshots/2/fs" + ":" + dir / "snapshots/1/fs");
  return request;
}

TEST(WritableLayerTest, HostSharesContainerdsSnapshotDirectoryAsTheUpperLayer) {
  if (::access("/usr/bin/mkfs.erofs", X_OK) != 0) GTEST_SKIP() << "mkfs.erofs not installed";
  TempDir dir;
  ErofsExportConfig config;
  config.cache.cache_dir = dir / "cache";
  config.writable_layer = WritableLayer::kHost;
  ErofsExporter exporter(config);
  pluginapi::StoragePrepareRequest request = WritableRequest(dir);
  auto prepared = exporter.Prepare(request);
  ASSERT_TRUE(prepared.ok()) << prepared.error().message;
  const auto& plan = prepared->plan;
  ASSERT_EQ(plan.devices_size(), 3);  // two layer disks, the upper share
  const auto& share = plan.devices(2).share();
  EXPECT_EQ(share.host_path(), dir / "snapshots/9");
  EXPECT_FALSE(share.read_only());
  EXPECT_TRUE(share.overlay_upper());
  ASSERT_EQ(plan.guest_mounts_size(), 4);
  EXPECT_EQ(plan.guest_mounts(2).type(), "virtiofs");
  EXPECT_EQ(plan.guest_mounts(2).source(), share.tag());
  EXPECT_EQ(plan.guest_mounts(2).target(), "rootfs-writable");
  EXPECT_EQ(plan.guest_mounts(3).options(1), "upperdir=rootfs-writable/fs");
  EXPECT_EQ(plan.guest_mounts(3).options(2), "workdir=rootfs-writable/work");

  // A read-only view has no upperdir: its writable layer stays a tmpfs of the VM.
  pluginapi::StoragePrepareRequest view = request;
  auto* options = view.mutable_rootfs(0)->mutable_options();
  options->erase(options->begin(), options->begin() + 2);
  auto viewed = exporter.Prepare(view);
  ASSERT_TRUE(viewed.ok()) << viewed.error().message;
  EXPECT_EQ(viewed->plan.guest_mounts(2).type(), "tmpfs");

  // upperdir and workdir in different directories cannot be one share.
  pluginapi::StoragePrepareRequest apart = request;
  apart.mutable_rootfs(0)->set_options(0, "workdir=" + dir / "elsewhere/work");
  auto refused = exporter.Prepare(apart);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("writable_layer = \"vm\""), std::string::npos);
}

TEST(WritableLayerTest, ScratchDiskIsASparseExt4FileInTheVmRunDirectory) {
  if (::access("/usr/bin/mkfs.erofs", X_OK) != 0 || ::access("/sbin/mkfs.ext4", X_OK) != 0) {
    GTEST_SKIP() << "mkfs.erofs or mkfs.ext4 not installed";
  }
  TempDir dir;
  ErofsExportConfig config;
  config.cache.cache_dir = dir / "cache";
  config.scratch_size_mib = 64;
  config.mkfs_ext4 = "/sbin/mkfs.ext4";
  ErofsExporter exporter(config);
  pluginapi::StoragePrepareRequest request = WritableRequest(dir);
  auto prepared = exporter.Prepare(request);
  ASSERT_TRUE(prepared.ok()) << prepared.error().message;
  const auto& plan = prepared->plan;
  ASSERT_EQ(plan.devices_size(), 3);
  const auto& disk = plan.devices(2).block();
  const std::string file = ScratchDiskPath(dir / "run/vm1", "ns", "c1");
  EXPECT_EQ(disk.host_path(), file);
  EXPECT_FALSE(disk.read_only());
  EXPECT_EQ(disk.id(), ScratchDiskId("ns", "c1"));
  EXPECT_LE(disk.id().size(), 20u);
  EXPECT_NE(ScratchDiskId("ns", "c2"), disk.id());
  struct stat info {};
  ASSERT_EQ(::stat(file.c_str(), &info), 0);
  EXPECT_EQ(info.st_size, 64 << 20);
  EXPECT_LT(info.st_blocks * 512, 16 << 20);  // sparse
  EXPECT_EQ(::system(("/sbin/dumpe2fs -h " + file + " >/dev/null 2>&1").c_str()), 0);
  EXPECT_EQ(plan.guest_mounts(2).type(), "ext4");
  EXPECT_EQ(plan.guest_mounts(2).source(), "/dev/disk/by-id/virtio-" + disk.id());
  EXPECT_EQ(plan.guest_mounts(3).options(1), "upperdir=rootfs-writable/upper");
  // Nothing but the disk in the run directory (mkfs's log is gone).
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "run/vm1"), fs::directory_iterator()), 1);

  // mkfs.ext4 missing: one line, Create fails, no file left.
  config.mkfs_ext4 = dir / "no-mkfs.ext4";
  fs::remove(file);
  auto missing = ErofsExporter(config).Prepare(request);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("mkfs_ext4"), std::string::npos);
  EXPECT_FALSE(fs::exists(file));
  // No VM run directory from the host: refused, not a file somewhere else.
  request.clear_vm_run_dir();
  config.mkfs_ext4 = "/sbin/mkfs.ext4";
  EXPECT_FALSE(ErofsExporter(config).Prepare(request).ok());
}

}  // namespace
}  // namespace beaconbox::storage
