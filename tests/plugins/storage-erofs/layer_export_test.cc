#include "plugins/storage-erofs/layer_export.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/base/mount_table.h"
#include "common/base/unique_fd.h"
#include "tests/plugins/common/temp_dir.h"
#include "tests/plugins/common/volume_request.h"
#include "tests/plugins/storage-erofs/erofs_test_support.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
using plugins::testing::AddVolume;
using plugins::testing::ReadAll;
using plugins::testing::TempDir;
using testing::HaveMkfsErofs;
using testing::Listing;
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

// What a pod test mounts (the pod volume share) stays in a mount namespace of the test
// process's own, also when a test fails half-way; TearDown detaches what is left
// before removing the directory, so no removal goes through a volume's bind.
class ErofsPodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs not installed";
    if (::geteuid() != 0) GTEST_SKIP() << "mounting needs root";
    ASSERT_EQ(::unshare(CLONE_NEWNS), 0) << std::strerror(errno);
    ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
    for (const char* layer : {"1", "2"}) {
      fs::create_directories(dir_ / ("snapshots/" + std::string(layer) + "/fs"));
      std::ofstream(dir_ / ("snapshots/" + std::string(layer) + "/fs/file")) << layer;
    }
    config_.cache.cache_dir = dir_ / "cache";
    config_.record_dir = dir_ / "state/storage-erofs";
  }
  void TearDown() override {
    Status removed = RemoveTreeDetachingMounts(dir_.path());
    EXPECT_TRUE(removed.ok()) << removed.error().message;
  }
  pluginapi::StoragePrepareRequest PodRequest(const std::string& id) {
    fs::create_directories(dir_ / ("bundle-" + id));
    pluginapi::StoragePrepareRequest request;
    request.set_container_id(id);
    request.set_namespace_("k8s.io");
    request.set_bundle(dir_ / ("bundle-" + id));
    request.set_vm_run_dir(dir_ / "run/vm1");
    request.set_pod_share(true);
    *request.add_rootfs() = OverlayMount(dir_ / "snapshots/2/fs" + ":" + dir_ / "snapshots/1/fs");
    return request;
  }

  TempDir dir_;
  ErofsExportConfig config_;
};

// The mount points below `dir` in this process's mount namespace.
std::vector<std::string> Mounts(const std::string& dir) {
  return MountPointsUnder(dir, ReadAll("/proc/self/mountinfo"));
}

// The errno of opening `path` for writing and writing a byte (0 when it worked).
int WriteErrno(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd) return errno;
  return ::write(fd.get(), "x", 1) == 1 ? 0 : errno;
}

// A pod's containers (pod_share), even with the blk transport: one read-only share per
// VM, the same device for every container (so one joins the running VM without a new
// disk), each container's images in its own directory; the last release removes it.
TEST_F(ErofsPodTest, PodContainersShareOneLayerShareOfTheVm) {
  ErofsExporter exporter(config_);
  std::vector<pluginapi::MountPlan> plans;
  std::vector<std::string> images;
  for (const std::string id : {"sandbox", "app"}) {
    auto prepared = exporter.Prepare(PodRequest(id));
    ASSERT_TRUE(prepared.ok()) << prepared.error().message;
    plans.push_back(prepared->plan);
    images.push_back(prepared->layers[1].image_path);
  }
  const std::string root = exporter.PodLayerShareDir(dir_ / "run/vm1");
  EXPECT_EQ(fs::path(root).parent_path(), fs::path(dir_ / "cache/shares"));
  EXPECT_NE(root, exporter.PodLayerShareDir(dir_ / "run/vm2"));
  for (int c = 0; c < 2; ++c) {
    const auto& plan = plans[c];
    const std::string name = std::string("k8s.io--") + (c == 0 ? "sandbox" : "app");
    ASSERT_EQ(plan.devices_size(), 2) << "no disk: the running VM cannot get one";
    EXPECT_EQ(plan.devices(0).share().tag(), "erofs-layers");
    EXPECT_EQ(plan.devices(0).share().host_path(), root);
    EXPECT_TRUE(plan.devices(0).share().read_only());
    EXPECT_EQ(plan.devices(1).share().tag(), "volumes") << "the pod's volume share, see below";
    ASSERT_EQ(plan.guest_mounts_size(), 6);
    EXPECT_EQ(plan.guest_mounts(0).target(), "layer-images");
    EXPECT_EQ(plan.guest_mounts(2).source(), "layer-images/" + name + "/1.erofs");
    EXPECT_EQ(plan.guest_mounts(2).options(1), "loop");
    EXPECT_TRUE(SameFile(root + "/" + name + "/1.erofs", images[c]));
  }
  ASSERT_TRUE(exporter.Release(ReleaseRequest("k8s.io", "sandbox", dir_ / "bundle-sandbox")).ok());
  EXPECT_FALSE(fs::exists(root + "/k8s.io--sandbox"));
  EXPECT_TRUE(fs::exists(root + "/k8s.io--app/0.erofs")) << "the app's images stay";
  EXPECT_FALSE(fs::exists(dir_ / "bundle-sandbox/beaconbox-erofs-pod-layers"));
  // The app's bundle, marker included, is gone before its release (containerd 1.7's
  // task Delete of a dead shim): its directory is still found and the pod's taken.
  fs::remove_all(dir_ / "bundle-app");
  const auto release = ReleaseRequest("k8s.io", "app", dir_ / "bundle-app");
  ASSERT_TRUE(exporter.Release(release).ok());
  EXPECT_FALSE(fs::exists(root)) << "the last container takes the pod's directory";
  EXPECT_TRUE(fs::exists(images[0])) << "the cache keeps its images";
  fs::create_directories(dir_ / "bundle-app");

  // A marker naming anything but a pod share directory is not followed.
  fs::create_directories(dir_ / "victim/x");
  std::ofstream(dir_ / "bundle-app/beaconbox-erofs-pod-layers") << dir_ / "victim/x";
  auto refused = exporter.Release(release);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("not touched"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir_ / "victim/x"));
}

// CRI's volumes of a pod's app container (issue 17): the sandbox, without volumes,
// plans the pod's one volume share (<vm_run_dir>/volumes), so the VM boots with it; the
// app container plans the same device and gets its volumes staged in its directory of
// that share, with CRI's modes: read-only volumes refuse writes on the host already, a
// read-write one's writes land in its host directory, a file volume is the host file.
// The guest can change no entry of the share. Releasing the app leaves the sandbox's
// share; the last release leaves no mount, directory or record, and the sources whole.
TEST_F(ErofsPodTest, AppContainersVolumesGoOverThePodsOneVolumeShare) {
  fs::create_directories(dir_ / "emptydir");
  fs::create_directories(dir_ / "config");
  std::ofstream(dir_ / "config/key") << "value";
  std::ofstream(dir_ / "hosts") << "10.0.0.9 pod-entry\n";
  ErofsExporter exporter(config_);
  auto sandbox = exporter.Prepare(PodRequest("sandbox"));
  ASSERT_TRUE(sandbox.ok()) << sandbox.error().message;
  auto request = PodRequest("app");
  AddVolume(request, dir_ / "emptydir", "/data", false);
  AddVolume(request, dir_ / "config", "/etc/config", true);
  AddVolume(request, dir_ / "hosts", "/etc/hosts", false);
  auto app = exporter.Prepare(request);
  ASSERT_TRUE(app.ok()) << app.error().message;

  const std::string share = dir_ / "run/vm1/volumes";
  for (const auto* plan : {&sandbox->plan, &app->plan}) {
    ASSERT_EQ(plan->devices_size(), 2);
    const auto& device = plan->devices(1).share();
    EXPECT_EQ(device.tag(), "volumes");
    EXPECT_EQ(device.host_path(), share);
    EXPECT_FALSE(device.read_only());
    EXPECT_EQ(plan->guest_mounts(plan->guest_mounts_size() - 1).target(), "volumes");
  }
  EXPECT_EQ(sandbox->plan.guest_volume_paths_size(), 0);
  ASSERT_EQ(app->plan.guest_volume_paths_size(), 3);
  EXPECT_EQ(app->plan.guest_volume_paths(1), "volumes/k8s.io--app/beaconbox-volumes/1");
  const std::string staged = share + "/k8s.io--app/beaconbox-volumes";
  EXPECT_EQ(Listing(share), (std::vector<std::string>{"k8s.io--app", "k8s.io--sandbox"}));

  EXPECT_EQ(WriteErrno(staged + "/0/written"), 0);
  EXPECT_EQ(ReadAll(dir_ / "emptydir/written"), "x") << "a read-write volume's write is the host's";
  EXPECT_EQ(WriteErrno(staged + "/1/key"), EROFS);
  EXPECT_EQ(WriteErrno(staged + "/1/new"), EROFS);
  EXPECT_EQ(ReadAll(staged + "/1/key"), "value");
  EXPECT_EQ(ReadAll(staged + "/2"), "10.0.0.9 pod-entry\n") << "the file volume is CRI's file";
  // What the guest reaches through virtiofsd: no entry of the share can change.
  EXPECT_EQ(WriteErrno(share + "/planted"), EROFS);
  EXPECT_NE(::mkdir((share + "/k8s.io--next").c_str(), 0755), 0);
  EXPECT_NE(::rename((share + "/k8s.io--sandbox").c_str(), (share + "/moved").c_str()), 0);
  EXPECT_EQ(WriteErrno(staged + "/planted"), EROFS);
  EXPECT_NE(::rmdir((share + "/k8s.io--sandbox").c_str()), 0);

  ASSERT_TRUE(exporter.Release(ReleaseRequest("k8s.io", "app", dir_ / "bundle-app")).ok());
  EXPECT_EQ(Listing(share), (std::vector<std::string>{"k8s.io--sandbox"}))
      << "the sandbox keeps the share its VM booted with";
  EXPECT_EQ(Mounts(dir_ / "run").size(), 2u) << "the share and its writable tmpfs";
  EXPECT_EQ(ReadAll(dir_ / "emptydir/written"), "x");
  EXPECT_EQ(ReadAll(dir_ / "config/key"), "value");
  // A further app container joins the same share.
  auto next = exporter.Prepare(PodRequest("next"));
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->plan.devices(1).share().host_path(), share);
  ASSERT_TRUE(exporter.Release(ReleaseRequest("k8s.io", "next", dir_ / "bundle-next")).ok());
  ASSERT_TRUE(exporter.Release(ReleaseRequest("k8s.io", "sandbox", dir_ / "bundle-sandbox")).ok());
  EXPECT_TRUE(Mounts(dir_.path()).empty());
  EXPECT_FALSE(fs::exists(share));
  EXPECT_FALSE(fs::exists(dir_ / "run/vm1/volumes-writable"));
  EXPECT_TRUE(Listing(dir_ / "state/storage-erofs/volumes").empty()) << "no record left";
  EXPECT_EQ(ReadAll(dir_ / "hosts"), "10.0.0.9 pod-entry\n");
}

// A pod container whose volume cannot be staged fails in one line naming it and
// leaves nothing: no mount, share directory, record or layer share.
TEST_F(ErofsPodTest, AFailedVolumeOfAPodContainerLeavesNothing) {
  ErofsExporter exporter(config_);
  auto request = PodRequest("app");
  AddVolume(request, dir_ / "missing", "/data", false);
  auto refused = exporter.Prepare(request);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find(dir_ / "missing"), std::string::npos);
  EXPECT_NE(refused.error().message.find("does not exist"), std::string::npos);
  EXPECT_EQ(refused.error().message.find('\n'), std::string::npos);
  EXPECT_TRUE(Mounts(dir_.path()).empty());
  EXPECT_FALSE(fs::exists(dir_ / "run/vm1/volumes"));
  EXPECT_TRUE(Listing(dir_ / "state/storage-erofs/volumes").empty());
  EXPECT_TRUE(Listing(dir_ / "cache/shares").empty());

  // Without a state directory a pod container cannot be recorded: refused, naming it.
  config_.record_dir.clear();
  ErofsExporter unrecorded(config_);
  auto no_record = unrecorded.Prepare(PodRequest("app"));
  ASSERT_FALSE(no_record.ok());
  EXPECT_NE(no_record.error().message.find("paths.state_dir"), std::string::npos);
  EXPECT_TRUE(Mounts(dir_.path()).empty());
  EXPECT_TRUE(Listing(dir_ / "cache/shares").empty());
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
