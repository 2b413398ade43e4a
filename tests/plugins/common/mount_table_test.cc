// Removing a VM directory that may still hold mounts (a pod's rootfs and volumes):
// the mountinfo parsing, and a real tree with a bind mount of a "volume" whose files
// must survive.
#include "common/base/mount_table.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>

#include "tests/plugins/common/temp_dir.h"

namespace beaconbox {
namespace {

using plugins::testing::TempDir;
namespace fs = std::filesystem;

TEST(MountTableTest, MountPointsAtOrBelowADirectoryDeepestFirst) {
  const std::string mountinfo =
      "22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n"
      "90 22 0:50 / /run/bbx/vm/a/pod-share rw - tmpfs tmpfs rw\n"
      "91 90 8:1 /data /run/bbx/vm/a/pod-share/c1/beaconbox-volumes/0 rw - ext4 /dev/sda1 rw\n"
      "92 22 0:51 / /run/bbx/vm/ab rw - tmpfs tmpfs rw\n"
      "93 22 0:52 / /run/bbx/vm/a/with\\040space rw - tmpfs tmpfs rw\n"
      "truncated line\n";
  EXPECT_EQ(MountPointsUnder("/run/bbx/vm/a", mountinfo),
            (std::vector<std::string>{"/run/bbx/vm/a/pod-share/c1/beaconbox-volumes/0",
                                      "/run/bbx/vm/a/with space", "/run/bbx/vm/a/pod-share"}));
  EXPECT_TRUE(MountPointsUnder("/run/bbx/vm/b", mountinfo).empty());
}

TEST(MountTableTest, RemovingATreeNeverDeletesThroughABindMount) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
  TempDir dir;
  const fs::path volume = fs::path(dir.path()) / "volume";
  const fs::path vm_dir = fs::path(dir.path()) / "vm";
  const fs::path share = vm_dir / "pod-share";
  const fs::path target = share / "c1" / "volume";
  fs::create_directories(volume);
  dir.Write("volume/data", "the user's data");
  fs::create_directories(share);
  ASSERT_EQ(::mount("tmpfs", share.c_str(), "tmpfs", 0, "size=1m"), 0);
  fs::create_directories(target);
  ASSERT_EQ(::mount(volume.c_str(), target.c_str(), nullptr, MS_BIND, nullptr), 0);

  Status removed = RemoveTreeDetachingMounts(vm_dir);
  EXPECT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_FALSE(fs::exists(vm_dir));
  EXPECT_TRUE(fs::exists(volume / "data")) << "deleted through the bind mount";
  if (fs::exists(target)) ::umount2(target.c_str(), MNT_DETACH);
  if (fs::exists(share)) ::umount2(share.c_str(), MNT_DETACH);
}

}  // namespace
}  // namespace beaconbox
