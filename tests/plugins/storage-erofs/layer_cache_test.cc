#include "plugins/storage-erofs/layer_cache.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "tests/plugins/common/temp_dir.h"
#include "tests/plugins/storage-erofs/erofs_test_support.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;
using plugins::testing::ReadAll;
using plugins::testing::TempDir;
using testing::HaveMkfsErofs;
using testing::Listing;

class LayerCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    layer_ = dir_ / "snapshots/7/fs";
    fs::create_directories(layer_ + "/etc");
    std::ofstream(layer_ + "/etc/hello") << "hello\n";
    config_.cache_dir = dir_ / "cache";
  }
  TempDir dir_;
  std::string layer_;
  LayerCacheConfig config_;
};

TEST_F(LayerCacheTest, KeyChangesWhenTheLayerDirectoryIsAnotherOne) {
  auto first = IdentifyLayer(layer_);
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto again = IdentifyLayer(layer_ + "/");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(CacheKey(*first), CacheKey(*again));

  // A snapshot id reused after deletion: same path, a new directory.
  fs::remove_all(dir_ / "snapshots/7");
  fs::create_directories(layer_ + "/etc");
  std::ofstream(layer_ + "/etc/hello") << "other\n";
  auto reused = IdentifyLayer(layer_);
  ASSERT_TRUE(reused.ok());
  EXPECT_NE(CacheKey(*first), CacheKey(*reused));

  // An entry added at the top of the layer changes its mtime and ctime.
  std::ofstream(layer_ + "/new") << "x";
  auto changed = IdentifyLayer(layer_);
  ASSERT_TRUE(changed.ok());
  EXPECT_NE(CacheKey(*reused), CacheKey(*changed));

  // Another path to another directory.
  fs::create_directories(dir_ / "snapshots/8/fs");
  auto other = IdentifyLayer(dir_ / "snapshots/8/fs");
  ASSERT_TRUE(other.ok());
  EXPECT_NE(CacheKey(*changed), CacheKey(*other));
}

TEST_F(LayerCacheTest, RefusesRelativePathsAndFiles) {
  EXPECT_FALSE(IdentifyLayer("snapshots/7/fs").ok());
  EXPECT_FALSE(IdentifyLayer(dir_ / "snapshots/7/../7/fs").ok());
  auto file = IdentifyLayer(layer_ + "/etc/hello");
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.error().message.find(layer_ + "/etc/hello"), std::string::npos);
}

TEST_F(LayerCacheTest, ConvertsOnceThenHits) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  LayerCache cache(config_);
  auto first = cache.Get(layer_);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_TRUE(first->converted);
  EXPECT_TRUE(ValidateErofsImage(first->image_path).ok());
  EXPECT_EQ(first->image_path.rfind(config_.cache_dir + "/", 0), 0u);
  auto second = cache.Get(layer_);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->converted);
  EXPECT_EQ(second->image_path, first->image_path);
  // Only the image, its lock and its source record: no temp or log files.
  const std::string key = fs::path(first->image_path).stem().string();
  EXPECT_EQ(Listing(config_.cache_dir),
            (std::vector<std::string>{key + ".erofs", key + ".lock", key + ".source"}));
  EXPECT_EQ(ReadAll(config_.cache_dir + "/" + key + ".source"), layer_ + "\n");
}

TEST_F(LayerCacheTest, ImageHoldsTheLayersFilesWhenMounted) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  if (::geteuid() != 0) GTEST_SKIP() << "mounting needs root";
  ::mknod((layer_ + "/whiteout").c_str(), S_IFCHR | 0, 0);
  ASSERT_EQ(::setxattr((layer_ + "/etc").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  ::chown((layer_ + "/etc/hello").c_str(), 1000, 1001);
  LayerCache cache(config_);
  auto image = cache.Get(layer_);
  ASSERT_TRUE(image.ok()) << image.error().message;
  const std::string mnt = dir_ / "mnt";
  fs::create_directories(mnt);
  if (::system(("mount -t erofs -o ro,loop " + image->image_path + " " + mnt).c_str()) != 0) {
    GTEST_SKIP() << "no loop device or erofs in this kernel";
  }
  EXPECT_EQ(ReadAll(mnt + "/etc/hello"), "hello\n");
  struct stat info {};
  ASSERT_EQ(::lstat((mnt + "/etc/hello").c_str(), &info), 0);
  EXPECT_EQ(info.st_uid, 1000u);
  EXPECT_EQ(info.st_gid, 1001u);
  ASSERT_EQ(::lstat((mnt + "/whiteout").c_str(), &info), 0);
  EXPECT_TRUE(S_ISCHR(info.st_mode));
  EXPECT_EQ(info.st_rdev, 0u);
  char value[4] = {};
  EXPECT_EQ(::getxattr((mnt + "/etc").c_str(), "trusted.overlay.opaque", value, sizeof(value)), 1);
  EXPECT_EQ(value[0], 'y');
  ::umount2(mnt.c_str(), MNT_DETACH);
}

// A crash mid-conversion leaves a temp file, or (a disk fault, a hand copy) a
// truncated image under the final name: neither is ever used, the next Get converts
// again and the leftovers are gone.
TEST_F(LayerCacheTest, LeftoversOfACrashAreNeverUsed) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  std::ofstream(layer_ + "/big") << std::string(200000, 'b');
  LayerCache cache(config_);
  auto good = cache.Get(layer_);
  ASSERT_TRUE(good.ok()) << good.error().message;
  const std::string image = good->image_path;
  const std::string whole = ReadAll(image);
  ASSERT_GT(whole.size(), 8192u);

  // A truncated image under the final name.
  std::ofstream(image, std::ios::binary | std::ios::trunc) << whole.substr(0, 8192);
  EXPECT_FALSE(ValidateErofsImage(image).ok());
  std::ofstream(image + ".tmp.999999.0", std::ios::binary) << whole.substr(0, 4096);
  auto again = cache.Get(layer_);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->converted);
  EXPECT_EQ(ReadAll(image).size(), whole.size());
  EXPECT_FALSE(fs::exists(image + ".tmp.999999.0"));

  // Not EROFS at all.
  std::ofstream(image, std::ios::binary | std::ios::trunc) << std::string(whole.size(), 'x');
  auto error = ValidateErofsImage(image);
  ASSERT_FALSE(error.ok());
  EXPECT_NE(error.error().message.find("not EROFS"), std::string::npos);
  auto third = cache.Get(layer_);
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE(third->converted);
  EXPECT_TRUE(ValidateErofsImage(image).ok());
}

TEST_F(LayerCacheTest, MissingMkfsErofsIsOneLineAndLeavesNothing) {
  config_.mkfs_erofs = dir_ / "no/such/mkfs.erofs";
  LayerCache cache(config_);
  auto got = cache.Get(layer_);
  ASSERT_FALSE(got.ok());
  const std::string& message = got.error().message;
  EXPECT_NE(message.find(layer_), std::string::npos) << message;
  EXPECT_NE(message.find("install erofs-utils"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_TRUE(Listing(config_.cache_dir).empty());
}

// FAKE mkfs.erofs: writes half an image and fails, as the real one does on a file it
// cannot convert. The message names the layer and mkfs.erofs's own words.
TEST_F(LayerCacheTest, FailedConversionNamesTheLayerAndLeavesNothing) {
  config_.mkfs_erofs =
      dir_.Write("fake-mkfs-erofs.sh",
                 "#!/bin/sh\n# FAKE: fails half way\n"
                 "head -c 3000 /dev/zero > \"$3\"\n"
                 "echo '<E> erofs: failed to build: Invalid argument' >&2\nexit 1\n",
                 0755);
  LayerCache cache(config_);
  auto got = cache.Get(layer_);
  ASSERT_FALSE(got.ok());
  const std::string& message = got.error().message;
  EXPECT_NE(message.find(layer_), std::string::npos) << message;
  EXPECT_NE(message.find("failed to build: Invalid argument"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_TRUE(Listing(config_.cache_dir).empty()) << Listing(config_.cache_dir).size();

  // The next container is not poisoned: with the real mkfs.erofs it converts.
  if (!HaveMkfsErofs()) return;
  config_.mkfs_erofs = "/usr/bin/mkfs.erofs";
  auto next = LayerCache(config_).Get(layer_);
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_TRUE(next->converted);
}

// A full disk: the cache on a 256 KiB tmpfs, a layer of 1 MB. The real mkfs.erofs fails.
TEST_F(LayerCacheTest, FullDiskIsOneLineAndLeavesNothing) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  fs::create_directories(config_.cache_dir);
  ASSERT_EQ(::mount("tmpfs", config_.cache_dir.c_str(), "tmpfs", 0, "size=256k"), 0);
  std::ofstream(layer_ + "/big") << std::string(1 << 20, 'b');
  auto got = LayerCache(config_).Get(layer_);
  EXPECT_FALSE(got.ok());
  if (!got.ok()) {
    EXPECT_NE(got.error().message.find(layer_), std::string::npos) << got.error().message;
    EXPECT_EQ(got.error().message.find('\n'), std::string::npos);
    std::cout << "full disk: " << got.error().message << "\n";
  }
  EXPECT_TRUE(Listing(config_.cache_dir).empty());
  ::umount2(config_.cache_dir.c_str(), MNT_DETACH);
}

TEST_F(LayerCacheTest, MkfsErofsVersionIsReported) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  auto version = MkfsErofsVersion("/usr/bin/mkfs.erofs");
  ASSERT_TRUE(version.ok()) << version.error().message;
  EXPECT_EQ(version->rfind("mkfs.erofs ", 0), 0u) << *version;
}

}  // namespace
}  // namespace beaconbox::storage
