// Two processes (two shims) ask for the same layer at once. This source is compiled
// twice: into storage_erofs_test, against the cache as shipped, where mkfs.erofs runs
// once (one process converts, the other waits for the key's lock and reuses the
// image); and into storage_erofs_nolock_test, against layer_cache.cc built without
// that lock (BEACONBOX_EROFS_TEST_NO_KEY_LOCK), where both convert. The second build
// shows that the lock is what makes the first pass.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "plugins/storage-erofs/layer_cache.h"
#include "tests/plugins/common/temp_dir.h"
#include "tests/plugins/storage-erofs/erofs_test_support.h"

namespace beaconbox::storage {
namespace {

using plugins::testing::ReadAll;
using plugins::testing::TempDir;

TEST(LayerCacheRace, TwoProcessesAskForTheSameLayer) {
  if (!testing::HaveMkfsErofs()) GTEST_SKIP() << "mkfs.erofs (erofs-utils) not installed";
  TempDir dir;
  const std::string layer = dir / "snapshots/7/fs";
  std::filesystem::create_directories(layer);
  std::ofstream(layer + "/hello") << "hello\n";
  const std::string runs = dir / "runs";
  LayerCacheConfig config;
  config.cache_dir = dir / "cache";
  // FAKE wrapper around the real mkfs.erofs: counts its runs and sleeps so that the
  // two conversions overlap.
  config.mkfs_erofs = dir.Write("fake-mkfs-erofs.sh",
                                "#!/bin/sh\n# FAKE: counts runs, then the real mkfs.erofs\n"
                                "echo run >> " +
                                    runs + "\nsleep 1\nexec /usr/bin/mkfs.erofs \"$@\"\n",
                                0755);
  std::vector<pid_t> children;
  for (int i = 0; i < 2; ++i) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      LayerCache cache(config);
      auto got = cache.Get(layer);
      ::_exit(!got.ok() ? 2 : got->converted ? 10 : 11);
    }
    children.push_back(pid);
  }
  std::vector<int> codes;
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    codes.push_back(WEXITSTATUS(status));
  }
  std::sort(codes.begin(), codes.end());
#ifdef BEACONBOX_EROFS_TEST_NO_KEY_LOCK
  // Neither waits and reuses the other's image; one may even fail, its temp file
  // removed by the other as a "leftover".
  EXPECT_EQ(std::count(codes.begin(), codes.end(), 11), 0) << "without the lock both convert";
  EXPECT_EQ(ReadAll(runs), "run\nrun\n");
#else
  EXPECT_EQ(codes, (std::vector<int>{10, 11})) << "one converts, the other reuses";
  EXPECT_EQ(ReadAll(runs), "run\n");
#endif
}

}  // namespace
}  // namespace beaconbox::storage
