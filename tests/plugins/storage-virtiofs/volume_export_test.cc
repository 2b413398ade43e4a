#include "plugins/common/volume_export.h"

#include <fcntl.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/base/mount_table.h"
#include "plugins/storage-virtiofs/rootfs_export.h"
#include "tests/plugins/common/volume_request.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
using plugins::kVolumesDir;
using plugins::StageVolumes;
using plugins::UnstageVolumes;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The errno of creating `path` for writing (0 when it worked).
int WriteErrno(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int written = ::write(fd, "x", 1) == 1 ? 0 : errno;
  ::close(fd);
  return written;
}

// Mount points at or under `dir` in this process's mount namespace.
int MountsUnder(const std::string& dir) {
  std::istringstream table(ReadAll("/proc/self/mountinfo"));
  std::string line;
  int count = 0;
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string field, mount_point;
    for (int i = 0; i < 5 && fields >> field; ++i) mount_point = field;
    if (mount_point == dir || mount_point.starts_with(dir + "/")) ++count;
  }
  return count;
}

// containerd's removal of a bundle (runtime/v2 bundle.Delete): renamed to .<name>, then
// Go's os.RemoveAll, which goes on past what it cannot remove and descends into
// every directory, mount points too.
void RemoveBundleAsContainerdDoes(const std::string& bundle) {
  const fs::path path(bundle);
  const std::string renamed = (path.parent_path() / ("." + path.filename().string())).string();
  ASSERT_EQ(::rename(bundle.c_str(), renamed.c_str()), 0) << std::strerror(errno);
  ::nftw(
      renamed.c_str(),
      [](const char* entry, const struct stat*, int, struct FTW*) {
        ::remove(entry);  // errors ignored: the walk goes on, as RemoveAll's does
        return 0;
      },
      16, FTW_DEPTH | FTW_PHYS);
}

// Each test in a mount namespace of its own: what it mounts never reaches the host,
// and goes with the test process even when a test fails half-way.
class VolumeExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting needs root";
    ASSERT_EQ(::unshare(CLONE_NEWNS), 0) << std::strerror(errno);
    ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
    char tmpl[] = "/tmp/bbx-volumes-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    bundle_ = dir_ + "/bundle";
    fs::create_directories(bundle_);
    fs::create_directories(dir_ + "/data");
    fs::create_directories(dir_ + "/config");
    std::ofstream(dir_ + "/config/setting") << "keep";
    std::ofstream(dir_ + "/hostname") << "pod-1\n";
  }
  void TearDown() override {
    if (dir_.empty()) return;
    (void)UnstageVolumes(bundle_);
    ::umount2((dir_ + "/config/sub").c_str(), MNT_DETACH);
    // Also after a failed test: whatever it left mounted below dir_ is detached first.
    Status removed = RemoveTreeDetachingMounts(dir_);
    EXPECT_TRUE(removed.ok()) << removed.error().message;
  }
  pluginapi::Volume* Add(pluginapi::StoragePrepareRequest& request, const std::string& source,
                         const std::string& destination, bool read_only) {
    return plugins::testing::AddVolume(request, source, destination, read_only);
  }
  pluginapi::StoragePrepareRequest Request() {
    pluginapi::StoragePrepareRequest request;
    request.set_container_id("c1");
    request.set_bundle(bundle_);
    return request;
  }
  std::string dir_, bundle_;
};

TEST_F(VolumeExportTest, SharesDirectoriesAndFilesReadOnlyEnforcedOnTheHost) {
  auto request = Request();
  Add(request, dir_ + "/data", "/data", false);
  Add(request, dir_ + "/config", "/config", true);
  Add(request, dir_ + "/hostname", "/etc/hostname", true);
  RootfsExporter exporter({});
  auto plan = exporter.Prepare(request);
  ASSERT_TRUE(plan.ok()) << plan.error().message;

  const std::string staging = bundle_ + "/" + kVolumesDir;
  ASSERT_EQ(plan->devices_size(), 2);
  EXPECT_EQ(plan->devices(1).share().tag(), "volumes");
  EXPECT_EQ(plan->devices(1).share().host_path(), staging);
  EXPECT_FALSE(plan->devices(1).share().read_only());
  ASSERT_EQ(plan->guest_mounts_size(), 2);
  EXPECT_EQ(plan->guest_mounts(1).type(), "virtiofs");
  EXPECT_EQ(plan->guest_mounts(1).source(), "volumes");
  EXPECT_EQ(plan->guest_mounts(1).target(), "volumes");
  ASSERT_EQ(plan->guest_volume_paths_size(), 3);
  EXPECT_EQ(plan->guest_volume_paths(0), "volumes/0");
  EXPECT_EQ(plan->guest_volume_paths(2), "volumes/2");

  // What virtiofsd serves is what the host allows: the read-write volume takes
  // writes (at once on the source), the read-only ones and the share's root do not.
  EXPECT_EQ(WriteErrno(staging + "/0/from-guest"), 0);
  EXPECT_EQ(ReadAll(dir_ + "/data/from-guest"), "x");
  EXPECT_EQ(ReadAll(staging + "/1/setting"), "keep");
  EXPECT_EQ(WriteErrno(staging + "/1/setting"), EROFS);
  EXPECT_EQ(WriteErrno(staging + "/1/new"), EROFS);
  EXPECT_EQ(ReadAll(staging + "/2"), "pod-1\n");
  EXPECT_EQ(WriteErrno(staging + "/2"), EROFS);
  EXPECT_EQ(WriteErrno(staging + "/extra"), EROFS);
  EXPECT_NE(::rmdir((staging + "/0").c_str()), 0);

  ASSERT_TRUE(exporter.Release("default", "c1", bundle_).ok());
  EXPECT_FALSE(fs::exists(staging));
  EXPECT_EQ(MountsUnder(bundle_), 0);
  // The volumes' own files are untouched.
  EXPECT_EQ(ReadAll(dir_ + "/data/from-guest"), "x");
  EXPECT_EQ(ReadAll(dir_ + "/config/setting"), "keep");
  EXPECT_EQ(ReadAll(dir_ + "/hostname"), "pod-1\n");
  EXPECT_TRUE(exporter.Release("default", "c1", bundle_).ok());  // again: nothing to do
}

// containerd (1.7, a dead shim) may remove the bundle while the shim's delete action
// releases. Volumes staged in the bundle were then walked into by that removal, which
// emptied a read-write volume on the host; they are staged in the VM's run directory
// now, and release finds them by the record under the state directory.
TEST_F(VolumeExportTest, RemovingTheBundleFirstNeitherEmptiesVolumesNorLeaksTheirMounts) {
  auto request = Request();
  request.set_namespace_("default");
  const std::string vm_run_dir = dir_ + "/vm";
  request.set_vm_run_dir(vm_run_dir);
  std::ofstream(dir_ + "/data/kept") << "host data";
  Add(request, dir_ + "/data", "/data", false);
  Add(request, dir_ + "/hostname", "/etc/hostname", false);
  const std::string records = dir_ + "/state";
  RootfsExporter exporter({.record_dir = records});
  auto plan = exporter.Prepare(request);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  const std::string staging = vm_run_dir + "/volumes/default--c1/" + kVolumesDir;
  ASSERT_EQ(plan->devices_size(), 2);
  EXPECT_EQ(plan->devices(1).share().host_path(), staging);
  EXPECT_EQ(ReadAll(staging + "/0/kept"), "host data");

  RemoveBundleAsContainerdDoes(bundle_);
  EXPECT_EQ(ReadAll(dir_ + "/data/kept"), "host data");
  EXPECT_EQ(ReadAll(dir_ + "/hostname"), "pod-1\n");
  Status released = exporter.Release("default", "c1", bundle_);
  EXPECT_TRUE(released.ok()) << released.error().message;
  EXPECT_EQ(MountsUnder(dir_), 0);
  EXPECT_FALSE(fs::exists(vm_run_dir + "/volumes"));
  EXPECT_TRUE(fs::is_empty(records + "/volumes"));
  EXPECT_EQ(ReadAll(dir_ + "/data/kept"), "host data");
  EXPECT_TRUE(exporter.Release("default", "c1", bundle_).ok());  // again: nothing to do
}

TEST_F(VolumeExportTest, ReadOnlyReachesMountsBelowARecursiveBind) {
  fs::create_directories(dir_ + "/config/sub");
  ASSERT_EQ(::mount("tmpfs", (dir_ + "/config/sub").c_str(), "tmpfs", 0, "size=64k"), 0);
  auto request = Request();
  Add(request, dir_ + "/config", "/config", true);
  ASSERT_TRUE(StageVolumes(bundle_, request.volumes()).ok());
  const std::string staging = bundle_ + "/" + kVolumesDir;
  EXPECT_EQ(WriteErrno(staging + "/0/sub/x"), EROFS);
  EXPECT_EQ(WriteErrno(dir_ + "/config/sub/x"), 0);  // the host's own mount stays writable
  ASSERT_TRUE(UnstageVolumes(bundle_).ok());
  EXPECT_EQ(MountsUnder(bundle_), 0);
}

TEST_F(VolumeExportTest, MissingSourceIsOneLineAndLeavesNothing) {
  auto request = Request();
  Add(request, dir_ + "/data", "/data", false);
  Add(request, dir_ + "/absent", "/vol", false);
  RootfsExporter exporter({});
  auto plan = exporter.Prepare(request);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(plan.error().message, "volume " + dir_ +
                                      "/absent (mounted at /vol in the container): the source "
                                      "does not exist on the host: create it or remove the mount");
  EXPECT_FALSE(fs::exists(bundle_ + "/" + kVolumesDir));
  EXPECT_EQ(MountsUnder(bundle_), 0);
}

TEST_F(VolumeExportTest, RefusesSourcesThatCannotReachAVm) {
  const std::string socket_path = dir_ + "/sock";
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  socket_path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  for (const std::string& source :
       {socket_path, std::string("relative/dir"), dir_ + "/data/../config"}) {
    auto request = Request();
    Add(request, source, "/x", false);
    Status staged = StageVolumes(bundle_, request.volumes());
    ASSERT_FALSE(staged.ok()) << source;
    EXPECT_NE(staged.error().message.find("mounted at /x"), std::string::npos);
    EXPECT_EQ(MountsUnder(bundle_), 0);
  }
}

TEST(RootfsExportPlan, ReadOnlyRootfsIsAnOverlayOverTheReadOnlyShare) {
  char tmpl[] = "/tmp/bbx-rorootfs-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string bundle = tmpl;
  RootfsExporter exporter({});
  pluginapi::StoragePrepareRequest request;
  request.set_bundle(bundle);
  request.set_rootfs_read_only(true);
  auto plan = exporter.Prepare(request);
  fs::remove_all(bundle);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ASSERT_EQ(plan->devices_size(), 1);
  EXPECT_TRUE(plan->devices(0).share().read_only());
  ASSERT_EQ(plan->guest_mounts_size(), 3);
  EXPECT_EQ(plan->guest_mounts(0).type(), "virtiofs");
  EXPECT_EQ(plan->guest_mounts(0).target(), "rootfs-image");
  EXPECT_EQ(plan->guest_mounts(0).options(0), "ro");
  EXPECT_EQ(plan->guest_mounts(1).type(), "tmpfs");
  EXPECT_EQ(plan->guest_mounts(2).type(), "overlay");
  EXPECT_EQ(plan->guest_mounts(2).target(), "rootfs");
  EXPECT_EQ(plan->guest_mounts(2).options(0), "lowerdir=rootfs-image");
  EXPECT_EQ(plan->guest_rootfs(), "rootfs");
  EXPECT_EQ(plan->guest_volume_paths_size(), 0);
}

// A pod's containers share one read-only share (rootfs_export.h). virtiofsd keeps the
// directories the guest looked up open, also after a container left; the share used
// to be remounted read-only after each change, which then failed with EBUSY, so the
// next container of the pod could not start.
TEST_F(VolumeExportTest, PodShareTakesAContainerAfterOneLeftWhoseDirectoryIsStillOpen) {
  RootfsExporter exporter({.record_dir = dir_ + "/state"});
  const std::string vm_run_dir = dir_ + "/vm";
  fs::create_directories(vm_run_dir);
  auto prepare = [&](const std::string& id) {
    const std::string bundle = dir_ + "/bundle-" + id;
    fs::create_directories(bundle + "/rootfs");
    std::ofstream(bundle + "/rootfs/name") << id;
    pluginapi::StoragePrepareRequest request;
    request.set_bundle(bundle);
    request.set_vm_run_dir(vm_run_dir);
    request.set_namespace_("default");
    request.set_container_id(id);
    request.set_pod_share(true);
    return exporter.Prepare(request);
  };
  const std::string share = vm_run_dir + "/" + kPodShareDir;
  auto first = prepare("c1");
  ASSERT_TRUE(first.ok()) << first.error().message;
  ASSERT_TRUE(prepare("c2").ok());
  EXPECT_EQ(ReadAll(share + "/c1/rootfs/name"), "c1");
  EXPECT_EQ(first->devices(0).share().host_path(), share);
  EXPECT_EQ(WriteErrno(share + "/made-by-the-guest"), EROFS);
  EXPECT_EQ(WriteErrno(share + "/c1/rootfs/written-by-c1"), 0) << "the rootfs stays writable";

  int held = ::open((share + "/c1").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(held, 0);
  Status released = exporter.Release("default", "c1", dir_ + "/bundle-c1");
  EXPECT_TRUE(released.ok()) << released.error().message;
  EXPECT_FALSE(fs::exists(share + "/c1"));
  auto third = prepare("c3");
  EXPECT_TRUE(third.ok()) << third.error().message;
  ::close(held);
  EXPECT_EQ(WriteErrno(share + "/made-by-the-guest"), EROFS);

  EXPECT_TRUE(exporter.Release("default", "c2", dir_ + "/bundle-c2").ok());
  EXPECT_TRUE(exporter.Release("default", "c3", dir_ + "/bundle-c3").ok());
  EXPECT_EQ(MountsUnder(vm_run_dir), 0);
  EXPECT_FALSE(fs::exists(share));
  EXPECT_FALSE(fs::exists(vm_run_dir + "/" + kPodShareWritableDir));
}

// containerd (1.7, a dead shim) may remove the bundle (rename to .<id>, then remove
// all) while the shim's delete action releases: release must find a pod container's
// directory, its rootfs mount and its volumes without the bundle.
TEST_F(VolumeExportTest, PodContainersAreReleasedWhenTheirBundlesAreGone) {
  const std::string records = dir_ + "/state";
  RootfsExporter exporter({.record_dir = records});
  const std::string vm_run_dir = dir_ + "/vm";
  fs::create_directories(vm_run_dir);
  const std::string share = vm_run_dir + "/" + kPodShareDir;
  for (const std::string id : {"sandbox", "app"}) {
    const std::string bundle = dir_ + "/bundle-" + id;
    fs::create_directories(bundle + "/rootfs");
    pluginapi::StoragePrepareRequest request;
    request.set_bundle(bundle);
    request.set_vm_run_dir(vm_run_dir);
    request.set_namespace_("k8s.io");
    request.set_container_id(id);
    request.set_pod_share(true);
    Add(request, dir_ + "/data", "/data", false);
    auto plan = exporter.Prepare(request);
    ASSERT_TRUE(plan.ok()) << plan.error().message;
  }
  std::ofstream(share + "/app/" + kVolumesDir + "/0/written") << "by the app";
  ASSERT_GT(MountsUnder(vm_run_dir), 0);
  for (const std::string id : {"app", "sandbox"}) {
    const std::string bundle = dir_ + "/bundle-" + id;
    RemoveBundleAsContainerdDoes(bundle);
    Status released = exporter.Release("k8s.io", id, bundle);
    EXPECT_TRUE(released.ok()) << released.error().message;
  }
  EXPECT_EQ(MountsUnder(vm_run_dir), 0);
  EXPECT_FALSE(fs::exists(share));
  EXPECT_FALSE(fs::exists(vm_run_dir + "/" + kPodShareWritableDir));
  EXPECT_TRUE(fs::is_empty(records + "/pod-share"));
  EXPECT_EQ(ReadAll(dir_ + "/data/written"), "by the app") << "the volume's host data stays";
  // Another namespace's container of the same id is not this one.
  EXPECT_TRUE(exporter.Release("other", "app", dir_ + "/bundle-app").ok());
}

// A pod container needs a namespace and a place for its record; one line otherwise.
TEST_F(VolumeExportTest, PodShareWithoutNamespaceOrRecordDirIsRefused) {
  const std::string vm_run_dir = dir_ + "/vm";
  pluginapi::StoragePrepareRequest request;
  request.set_bundle(bundle_);
  request.set_vm_run_dir(vm_run_dir);
  request.set_container_id("c1");
  request.set_pod_share(true);
  auto no_namespace = RootfsExporter({.record_dir = dir_ + "/records"}).Prepare(request);
  ASSERT_FALSE(no_namespace.ok());
  EXPECT_NE(no_namespace.error().message.find("namespace"), std::string::npos);
  request.set_namespace_("default");
  auto no_records = RootfsExporter({}).Prepare(request);
  ASSERT_FALSE(no_records.ok());
  EXPECT_NE(no_records.error().message.find("state_dir"), std::string::npos);
  EXPECT_EQ(MountsUnder(dir_), 0);
  EXPECT_FALSE(fs::exists(vm_run_dir));
}

}  // namespace
}  // namespace beaconbox::storage
