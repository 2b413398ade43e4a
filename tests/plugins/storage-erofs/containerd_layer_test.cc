// containerd 2.1+'s erofs snapshotter: its layer.erofs files are used as they are
// (no conversion, nothing in the cache), validated as input.
#include "plugins/storage-erofs/containerd_layer.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "plugins/storage-erofs/layer_export.h"
#include "tests/plugins/common/temp_dir.h"
#include "tests/plugins/storage-erofs/erofs_test_support.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
using plugins::testing::TempDir;
using testing::HaveMkfsErofs;
using testing::OverlayMount;

// A snapshot directory as containerd's erofs snapshotter leaves a committed one:
// <dir>/snapshots/<id>/{.erofslayer, layer.erofs, fs/}. The layer file is made by the
// real mkfs.erofs from a directory holding `file` with `text`.
std::string ErofsSnapshot(const TempDir& dir, const std::string& id, const std::string& text) {
  const std::string snapshot = dir / ("snapshots/" + id);
  fs::create_directories(snapshot + "/fs");
  fs::create_directories(snapshot + "/src");
  std::ofstream(snapshot + "/.erofslayer");
  std::ofstream(snapshot + "/src/file") << text;
  const std::string command =
      "/usr/bin/mkfs.erofs --quiet " + snapshot + "/layer.erofs " + snapshot + "/src >/dev/null";
  EXPECT_EQ(::system(command.c_str()), 0);
  fs::remove_all(snapshot + "/src");
  return snapshot;
}

TEST(ContainerdErofsLayerTest, OnlyDirectoriesOfTheErofsSnapshotterAreIts) {
  TempDir dir;
  fs::create_directories(dir / "overlayfs/snapshots/1/fs");
  auto plain = ContainerdErofsLayer(dir / "overlayfs/snapshots/1/fs");
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_EQ(*plain, "");  // the overlayfs snapshotter's: converted by the cache
  auto not_fs = ContainerdErofsLayer(dir / "overlayfs/snapshots/1");
  ASSERT_TRUE(not_fs.ok());
  EXPECT_EQ(*not_fs, "");
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  const std::string snapshot = ErofsSnapshot(dir, "3", "three");
  auto layer = ContainerdErofsLayer(snapshot + "/fs/");
  ASSERT_TRUE(layer.ok()) << layer.error().message;
  EXPECT_EQ(*layer, snapshot + "/layer.erofs");
}

TEST(ContainerdErofsLayerTest, TruncatedMissingOrForeignLayerFileIsOneLine) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  TempDir dir;
  const std::string snapshot = ErofsSnapshot(dir, "4", std::string(100000, 'x'));
  const std::string file = snapshot + "/layer.erofs";
  ASSERT_EQ(::truncate(file.c_str(), static_cast<off_t>(fs::file_size(file) / 2)), 0);
  auto truncated = ContainerdErofsLayer(snapshot + "/fs");
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.error().message.find(file + " is truncated"), std::string::npos)
      << truncated.error().message;
  EXPECT_NE(truncated.error().message.find("pull it again"), std::string::npos);
  EXPECT_EQ(truncated.error().message.find('\n'), std::string::npos);

  std::ofstream(file, std::ios::trunc) << std::string(4096, 'A');
  auto foreign = ContainerdErofsLayer(snapshot + "/fs");
  ASSERT_FALSE(foreign.ok());
  EXPECT_NE(foreign.error().message.find("not EROFS"), std::string::npos);

  fs::remove(file);
  auto missing = ContainerdErofsLayer(snapshot + "/fs");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find(file), std::string::npos);
}

TEST(ContainerdErofsLayerTest, ExporterUsesTheFilesAsTheyAreAndConvertsNothing) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  TempDir dir;
  const std::string upper = ErofsSnapshot(dir, "2", "two");
  const std::string lower = ErofsSnapshot(dir, "1", "one");
  fs::create_directories(dir / "bundle");
  ErofsExportConfig config;
  config.cache.cache_dir = dir / "cache";
  config.cache.mkfs_erofs = dir / "no-mkfs";  // a conversion would fail
  ErofsExporter exporter(config);
  pluginapi::StoragePrepareRequest request;
  request.set_container_id("c1");
  request.set_namespace_("ns");
  request.set_bundle(dir / "bundle");
  *request.add_rootfs() = OverlayMount(upper + "/fs:" + lower + "/fs");
  auto prepared = exporter.Prepare(request);
  ASSERT_TRUE(prepared.ok()) << prepared.error().message;
  ASSERT_EQ(prepared->layers.size(), 2u);
  EXPECT_TRUE(prepared->layers[0].provided);
  EXPECT_FALSE(prepared->layers[0].converted);
  ASSERT_EQ(prepared->plan.devices_size(), 2);
  EXPECT_EQ(prepared->plan.devices(0).block().host_path(), upper + "/layer.erofs");
  EXPECT_EQ(prepared->plan.devices(1).block().host_path(), lower + "/layer.erofs");
  EXPECT_TRUE(prepared->plan.devices(1).block().read_only());
  EXPECT_FALSE(fs::exists(dir / "cache"));  // nothing converted, nothing cached

  // The view of a single layer: one "erofs" mount of the layer file.
  pluginapi::StoragePrepareRequest view = request;
  view.clear_rootfs();
  auto* single = view.add_rootfs();
  single->set_type("erofs");
  single->set_source(lower + "/layer.erofs");
  single->add_options("ro");
  single->add_options("loop");
  auto viewed = exporter.Prepare(view);
  ASSERT_TRUE(viewed.ok()) << viewed.error().message;
  ASSERT_EQ(viewed->plan.devices_size(), 1);
  EXPECT_EQ(viewed->plan.devices(0).block().host_path(), lower + "/layer.erofs");
  EXPECT_EQ(viewed->plan.guest_rootfs(), "rootfs");
  single->set_source("relative/layer.erofs");
  EXPECT_FALSE(exporter.Prepare(view).ok());

  // Over virtio-fs: hard links of containerd's files in the container's share.
  config.transport = LayerTransport::kVirtiofs;
  ErofsExporter shared(config);
  auto linked = shared.Prepare(request);
  ASSERT_TRUE(linked.ok()) << linked.error().message;
  EXPECT_TRUE(
      testing::SameFile(shared.LayerShareDir("ns", "c1") + "/1.erofs", lower + "/layer.erofs"));
  EXPECT_TRUE(shared.Release(testing::ReleaseRequest("ns", "c1", dir / "bundle")).ok());

  // A damaged layer file: Create fails with one line, nothing is left.
  ASSERT_EQ(::truncate((upper + "/layer.erofs").c_str(), 2000), 0);
  auto bad = shared.Prepare(request);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find(upper + "/layer.erofs is truncated"), std::string::npos)
      << bad.error().message;
  EXPECT_FALSE(fs::exists(shared.LayerShareDir("ns", "c1")));
}

}  // namespace
}  // namespace beaconbox::storage
