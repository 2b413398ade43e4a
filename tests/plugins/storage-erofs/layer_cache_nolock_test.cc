// layer_cache.cc built with BEACONBOX_EROFS_TEST_NO_KEY_LOCK (this test binary only):
// without the key's lock two processes converting one layer both run mkfs.erofs. The
// same scenario with the lock (storage_erofs_test,
// LayerCacheTest.TwoProcessesConvertTheSameLayerOnce) runs it once: the lock is what
// makes that test pass.
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

namespace beaconbox::storage {
namespace {

using plugins::testing::ReadAll;
using plugins::testing::TempDir;

TEST(LayerCacheWithoutKeyLock, TwoProcessesBothConvertTheSameLayer) {
  if (::access("/usr/bin/mkfs.erofs", X_OK) != 0) GTEST_SKIP() << "mkfs.erofs not installed";
  TempDir dir;
  const std::string layer = dir / "snapshots/7/fs";
  std::filesystem::create_directories(layer);
  std::ofstream(layer + "/hello") << "hello\n";
  const std::string runs = dir / "runs";
  LayerCacheConfig config;
  config.cache_dir = dir / "cache";
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
  // Neither waits and reuses the other's image (with the lock: one 10, one 11); one
  // may even fail, its temp file removed by the other as a "leftover".
  EXPECT_EQ(std::count(codes.begin(), codes.end(), 11), 0) << "without the lock both convert";
  EXPECT_EQ(ReadAll(runs), "run\nrun\n");
}

}  // namespace
}  // namespace beaconbox::storage
