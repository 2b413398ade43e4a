// The one mount option parser (common/base/mount_options.h) as the storage plugin
// uses it on containerd's rootfs mounts; tests/guest covers vminitd's uses.
#include "common/base/mount_options.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

namespace beaconbox {
namespace {

TEST(MountOptionsTest, OverlayFlagsSplitFromFilesystemData) {
  MountOptions parsed = ParseMountOptions(
      {"index=off", "lowerdir=/a:/b", "upperdir=/u", "workdir=/w", "nosuid", "ro"});
  EXPECT_EQ(parsed.flags, static_cast<unsigned long>(MS_NOSUID | MS_RDONLY));
  EXPECT_EQ(parsed.data, "index=off,lowerdir=/a:/b,upperdir=/u,workdir=/w");
  EXPECT_FALSE(parsed.bind);
  EXPECT_FALSE(parsed.remount_readonly);
}

TEST(MountOptionsTest, RecursiveReadOnlyBindNeedsARemount) {
  MountOptions bind = ParseMountOptions({"rbind", "rw"});
  EXPECT_TRUE(bind.bind);
  EXPECT_EQ(bind.flags, static_cast<unsigned long>(MS_BIND | MS_REC));
  EXPECT_FALSE(bind.remount_readonly);
  MountOptions read_only = ParseMountOptions({"bind", "ro"});
  EXPECT_EQ(read_only.flags, static_cast<unsigned long>(MS_BIND | MS_RDONLY));
  EXPECT_TRUE(read_only.remount_readonly);
}

TEST(MountOptionsTest, LaterWordsWinAndPropagationIsNotData) {
  MountOptions parsed =
      ParseMountOptions({"ro", "rw", "noexec", "exec", "defaults", "", "relatime", "rprivate"});
  EXPECT_EQ(parsed.flags, static_cast<unsigned long>(MS_RELATIME));
  EXPECT_EQ(parsed.propagation, static_cast<unsigned long>(MS_PRIVATE | MS_REC));
  EXPECT_EQ(parsed.data, "");
}

}  // namespace
}  // namespace beaconbox
