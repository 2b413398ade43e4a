// The EROFS cache's gc and size limit (plugins/storage-erofs/cache_gc.h): an image is
// removed only when its layer directory is gone (or another one) and no process holds
// it; a dead holder does not pin it; gc racing conversions never removes a fresh
// image; the size limit evicts the least recently used unused images.
#include "plugins/storage-erofs/cache_gc.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "plugins/storage-erofs/layer_cache.h"
#include "tests/plugins/common/temp_dir.h"
#include "tests/plugins/storage-erofs/erofs_test_support.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;
using plugins::testing::TempDir;
using testing::HaveMkfsErofs;
using testing::Listing;

std::string KeyOf(const std::string& image_path) { return fs::path(image_path).stem().string(); }

// Sets K.source's mtime (the last use) to `seconds` after the epoch.
void SetLastUse(const std::string& cache_dir, const std::string& image_path, time_t seconds) {
  const struct timespec times[2] = {{seconds, 0}, {seconds, 0}};
  ASSERT_EQ(
      ::utimensat(AT_FDCWD, (cache_dir + "/" + KeyOf(image_path) + ".source").c_str(), times, 0),
      0);
}

uint64_t Allocated(const std::string& path) {
  struct stat file_stat {};
  if (::stat(path.c_str(), &file_stat) != 0) return 0;
  return static_cast<uint64_t>(file_stat.st_blocks) * 512;
}

class CacheGcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    config_.cache_dir = dir_ / "cache";
  }
  // A committed snapshot's layer directory with `bytes` of incompressible data.
  std::string MakeLayer(const std::string& id, size_t bytes = 1000) {
    const std::string layer = dir_ / ("snapshots/" + id + "/fs");
    fs::create_directories(layer);
    std::mt19937 random(static_cast<unsigned>(std::hash<std::string>()(id)));
    std::string data(bytes, '\0');
    for (char& c : data) c = static_cast<char>(random());
    std::ofstream(layer + "/data", std::ios::binary) << data;
    return layer;
  }
  // Converts `layer` and lets go of the image (as a container's Release does).
  std::string Convert(const std::string& layer) {
    LayerCache cache(config_);
    auto got = cache.Get(layer);
    EXPECT_TRUE(got.ok()) << got.error().message;
    return got.ok() ? got->image_path : std::string();
  }
  static void RemoveSnapshot(const std::string& layer) {
    fs::remove_all(fs::path(layer).parent_path());
  }
  TempDir dir_;
  LayerCacheConfig config_;
};

TEST_F(CacheGcTest, RemovesImagesWhoseLayerIsGoneAndKeepsThoseWhoseLayerIsThere) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  const std::string gone_layer = MakeLayer("1");
  const std::string kept_layer = MakeLayer("2");
  const std::string gone = Convert(gone_layer);
  const std::string kept = Convert(kept_layer);
  RemoveSnapshot(gone_layer);

  auto result = CollectGarbage(config_.cache_dir);
  ASSERT_TRUE(result.ok()) << result.error().message;
  ASSERT_EQ(result->removed.size(), 1u);
  EXPECT_EQ(result->removed[0].image_path, gone);
  EXPECT_EQ(result->removed[0].layer, gone_layer);
  EXPECT_GT(result->removed[0].bytes, 0u);
  ASSERT_EQ(result->kept.size(), 1u);
  EXPECT_EQ(result->kept[0].image_path, kept);
  EXPECT_EQ(result->kept[0].reason, "its layer is present");
  // Nothing of the removed key is left; the kept one is whole.
  const std::string key = KeyOf(kept);
  EXPECT_EQ(Listing(config_.cache_dir),
            (std::vector<std::string>{key + ".erofs", key + ".lock", key + ".source"}));
  EXPECT_TRUE(ValidateErofsImage(kept).ok());
}

// A snapshot id reused after deletion: the path exists again but is another directory,
// so the old image is unused.
TEST_F(CacheGcTest, ALayerPathReusedByAnotherSnapshotDoesNotKeepTheOldImage) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  const std::string layer = MakeLayer("7");
  const std::string old_image = Convert(layer);
  RemoveSnapshot(layer);
  ::usleep(10000);  // a later ctime for the new directory
  MakeLayer("7");
  auto result = CollectGarbage(config_.cache_dir);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->removed.size(), 1u);
  EXPECT_EQ(result->removed[0].image_path, old_image);
  EXPECT_TRUE(result->kept.empty());
}

// A running container holds its images (the shim's fds) even when its snapshot is
// gone; once that process is dead (killed: no Release ran) gc removes them.
TEST_F(CacheGcTest, KeepsImagesALiveProcessHoldsAndRemovesThemAfterItDies) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  const std::string layer = MakeLayer("3");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t holder = ::fork();
  ASSERT_GE(holder, 0);
  if (holder == 0) {
    ::close(ready[0]);
    LayerCache cache(config_);
    auto got = cache.Get(layer);
    const char answer = got.ok() ? 'y' : 'n';
    (void)!::write(ready[1], &answer, 1);
    while (true) ::pause();  // holds the image until killed
  }
  ::close(ready[1]);
  char answer = 0;
  ASSERT_EQ(::read(ready[0], &answer, 1), 1);
  ::close(ready[0]);
  auto kill_holder = [&] {
    ::kill(holder, SIGKILL);
    int status = 0;
    ::waitpid(holder, &status, 0);
  };
  if (answer != 'y') {
    kill_holder();
    FAIL() << "the holder could not convert the layer";
  }
  RemoveSnapshot(layer);

  auto while_held = CollectGarbage(config_.cache_dir);
  ASSERT_TRUE(while_held.ok());
  EXPECT_TRUE(while_held->removed.empty());
  ASSERT_EQ(while_held->kept.size(), 1u);
  EXPECT_EQ(while_held->kept[0].reason, "held by a running container");
  EXPECT_TRUE(ValidateErofsImage(while_held->kept[0].image_path).ok());

  kill_holder();
  auto after = CollectGarbage(config_.cache_dir);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->removed.size(), 1u);
  EXPECT_TRUE(after->kept.empty());
  EXPECT_TRUE(Listing(config_.cache_dir).empty());
}

// A gc loop in another process while this one converts layers whose snapshot is
// removed right after mkfs.erofs ran (a FAKE wrapper removes it): only the key's lock
// and the hold protect each fresh image, and every one must survive.
TEST_F(CacheGcTest, GcRacingConversionsNeverRemovesAFreshImage) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  config_.mkfs_erofs = dir_.Write(
      "fake-mkfs-erofs.sh",
      "#!/bin/sh\n# FAKE: the real mkfs.erofs, then the snapshot is deleted (its last arg)\n"
      "for last; do :; done\n/usr/bin/mkfs.erofs \"$@\" || exit $?\n"
      "rm -rf \"$(dirname \"$last\")\"\n",
      0755);
  fs::create_directories(config_.cache_dir);
  const pid_t collector = ::fork();
  ASSERT_GE(collector, 0);
  if (collector == 0) {
    while (true) (void)CollectGarbage(config_.cache_dir);
  }
  int survived = 0;
  constexpr int kRounds = 12;
  for (int round = 0; round < kRounds; ++round) {
    const std::string layer = MakeLayer("race" + std::to_string(round));
    LayerCache cache(config_);
    auto got = cache.Get(layer);
    if (!got.ok()) {
      ADD_FAILURE() << got.error().message;
      continue;
    }
    EXPECT_FALSE(fs::exists(layer)) << "the FAKE wrapper removes the snapshot";
    // The image is still under its name, complete, and the file this process holds.
    struct stat held {
    }, named{};
    const bool same = ::fstat(got->hold.get(), &held) == 0 &&
                      ::stat(got->image_path.c_str(), &named) == 0 && held.st_ino == named.st_ino;
    if (same && ValidateErofsImage(got->image_path).ok()) ++survived;
    ::usleep(20000);  // the collector runs while the image is held
    if (::stat(got->image_path.c_str(), &named) == 0 && named.st_ino == held.st_ino) continue;
    ADD_FAILURE() << "round " << round << ": gc removed " << got->image_path << " while held";
  }
  ::kill(collector, SIGKILL);
  int status = 0;
  ::waitpid(collector, &status, 0);
  EXPECT_EQ(survived, kRounds);
  // Let go of everything: now gc removes it all.
  auto after = CollectGarbage(config_.cache_dir);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->kept.empty());
  EXPECT_TRUE(Listing(config_.cache_dir).empty()) << Listing(config_.cache_dir).size();
}

TEST_F(CacheGcTest, EvictsTheLeastRecentlyUsedUnusedImagesFirst) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  const std::string a = Convert(MakeLayer("a", 100000));
  const std::string b = Convert(MakeLayer("b", 100000));
  const std::string c = Convert(MakeLayer("c", 100000));
  // Last use: b, then c, then a (a hit on a touches it).
  SetLastUse(config_.cache_dir, a, 1000);
  SetLastUse(config_.cache_dir, b, 1000);
  SetLastUse(config_.cache_dir, c, 2000);
  ::usleep(10000);
  ASSERT_FALSE(Convert(dir_ / "snapshots/a/fs").empty());  // a cache hit
  SetLastUse(config_.cache_dir, b, 500);
  const uint64_t each = Allocated(a);
  ASSERT_GT(each, 100000u);

  // Room for two: b goes.
  auto first = EvictToLimit(config_.cache_dir, Allocated(a) + Allocated(c));
  ASSERT_TRUE(first.ok()) << first.error().message;
  ASSERT_EQ(first->removed.size(), 1u);
  EXPECT_EQ(first->removed[0].image_path, b);
  EXPECT_LE(first->bytes_after, Allocated(a) + Allocated(c));
  EXPECT_TRUE(fs::exists(a) && fs::exists(c) && !fs::exists(b));
  EXPECT_FALSE(fs::exists(config_.cache_dir + "/" + KeyOf(b) + ".source"));

  // Room for none: c (older) before a.
  auto second = EvictToLimit(config_.cache_dir, 0);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->removed.size(), 2u);
  EXPECT_EQ(second->removed[0].image_path, c);
  EXPECT_EQ(second->removed[1].image_path, a);
  EXPECT_EQ(second->bytes_after, 0u);
}

// cache_max_mib through LayerCache: a conversion over the limit evicts the unused
// images, never the one just made nor one a process holds; when only held images are
// left the conversion still succeeds and says the cache is over its limit.
TEST_F(CacheGcTest, AConversionOverTheLimitEvictsUnusedImagesAndKeepsHeldOnes) {
  if (!HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  const std::string old_image = Convert(MakeLayer("old", 600000));
  LayerCache holder_cache(config_);
  auto held = holder_cache.Get(MakeLayer("held", 600000));
  ASSERT_TRUE(held.ok());
  SetLastUse(config_.cache_dir, held->image_path, 100);  // the oldest, but held
  SetLastUse(config_.cache_dir, old_image, 200);

  config_.max_bytes = 1 << 20;  // room for one and a half
  LayerCache cache(config_);
  auto fresh = cache.Get(MakeLayer("fresh", 600000));
  ASSERT_TRUE(fresh.ok()) << fresh.error().message;
  EXPECT_TRUE(fresh->converted);
  EXPECT_NE(fresh->note.find("evicted 1 least recently used image(s)"), std::string::npos)
      << fresh->note;
  EXPECT_NE(fresh->note.find("over cache_max_mib 1: the other images are in use"),
            std::string::npos)
      << fresh->note;
  EXPECT_FALSE(fs::exists(old_image));
  EXPECT_TRUE(ValidateErofsImage(held->image_path).ok());
  EXPECT_TRUE(ValidateErofsImage(fresh->image_path).ok());

  // Under the limit once the holder lets go: the next conversion evicts it.
  held->hold.Reset();
  config_.max_bytes = 3 << 19;  // 1.5 MiB: room for two
  LayerCache roomy(config_);
  auto next = roomy.Get(MakeLayer("next", 600000));
  ASSERT_TRUE(next.ok());
  EXPECT_NE(next->note.find("evicted 1"), std::string::npos) << next->note;
  EXPECT_EQ(next->note.find("over cache_max_mib"), std::string::npos) << next->note;
  EXPECT_TRUE(ValidateErofsImage(fresh->image_path).ok());
  // A hit evicts nothing and says nothing.
  auto hit = roomy.Get(dir_ / "snapshots/next/fs");
  ASSERT_TRUE(hit.ok());
  EXPECT_FALSE(hit->converted);
  EXPECT_EQ(hit->note, "");
}

// A crash between writing K.source and the rename leaves K.source alone; a crashed
// mkfs leaves temp files: gc removes both for keys nobody converts.
TEST_F(CacheGcTest, RemovesWhatCrashedConversionsLeft) {
  fs::create_directories(config_.cache_dir);
  std::ofstream(config_.cache_dir + "/k1.source") << "/gone\n";
  std::ofstream(config_.cache_dir + "/k2.erofs.tmp.1.0") << "half";
  std::ofstream(config_.cache_dir + "/k2.lock");
  auto result = CollectGarbage(config_.cache_dir);
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->removed.empty());
  EXPECT_TRUE(Listing(config_.cache_dir).empty());
  // A missing cache directory is an empty one.
  auto none = CollectGarbage(dir_ / "no-such-cache");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->removed.empty() && none->kept.empty());
}

}  // namespace
}  // namespace beaconbox::storage
