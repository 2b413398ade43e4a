#include "plugins/storage-virtiofs/rootfs_export.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/base/mount_table.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;

class RootfsExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bbx-storage-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/bundle");
    fs::create_directories(dir_ + "/image");
    std::ofstream(dir_ + "/image/hello") << "hi";
  }
  void TearDown() override {
    ::umount2((dir_ + "/bundle/rootfs").c_str(), MNT_DETACH);
    // Also after a failed test: whatever it left mounted below dir_ is detached first.
    Status removed = RemoveTreeDetachingMounts(dir_);
    EXPECT_TRUE(removed.ok()) << removed.error().message;
  }
  std::string dir_;
};

TEST_F(RootfsExportTest, BindMountsTheRootfsAndPlansOneShare) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting needs root";
  RootfsExporter exporter({});
  beaconbox::plugin::v1::StoragePrepareRequest request;
  request.set_container_id("c1");
  request.set_bundle(dir_ + "/bundle");
  auto* mount = request.add_rootfs();
  mount->set_type("bind");
  mount->set_source(dir_ + "/image");
  mount->add_options("rbind");
  auto plan = exporter.Prepare(request);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_TRUE(fs::exists(dir_ + "/bundle/rootfs/hello"));
  ASSERT_EQ(plan->devices_size(), 1);
  EXPECT_EQ(plan->devices(0).share().host_path(), dir_ + "/bundle/rootfs");
  EXPECT_EQ(plan->devices(0).share().tag(), "rootfs");
  ASSERT_EQ(plan->guest_mounts_size(), 1);
  EXPECT_EQ(plan->guest_mounts(0).type(), "virtiofs");
  EXPECT_EQ(plan->guest_mounts(0).target(), "rootfs");

  ASSERT_TRUE(exporter.Release("default", "c1", dir_ + "/bundle").ok());
  EXPECT_FALSE(fs::exists(dir_ + "/bundle/rootfs/hello"));
  // Releasing again is harmless.
  EXPECT_TRUE(exporter.Release("default", "c1", dir_ + "/bundle").ok());
}

TEST_F(RootfsExportTest, RefusesRelativeBundleAndUnknownMountTypes) {
  RootfsExporter exporter({});
  beaconbox::plugin::v1::StoragePrepareRequest request;
  request.set_bundle("relative/bundle");
  EXPECT_EQ(exporter.Prepare(request).error().code, ErrorCode::kInvalidArgument);
  request.set_bundle(dir_ + "/bundle/../bundle");
  EXPECT_FALSE(exporter.Prepare(request).ok());
  request.set_bundle(dir_ + "/bundle");
  auto* mount = request.add_rootfs();
  mount->set_type("erofs");
  mount->set_source("/dev/null");
  auto plan = exporter.Prepare(request);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().code, ErrorCode::kNotImplemented);
}

}  // namespace
}  // namespace beaconbox::storage
