#include "common/base/mount_options.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

namespace beaconbox::guest {
namespace {

TEST(MountOptionsTest, FlagsAndData) {
  MountOptions o = ParseMountOptions({"ro", "nosuid", "nodev", "size=64m", "mode=755", "noexec"});
  EXPECT_EQ(o.flags, static_cast<unsigned long>(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC));
  EXPECT_EQ(o.data, "size=64m,mode=755");
  EXPECT_FALSE(o.bind);
  EXPECT_FALSE(o.remount_readonly);
}

TEST(MountOptionsTest, LaterWordsOverrideEarlier) {
  MountOptions o = ParseMountOptions({"ro", "rw", "nosuid", "suid", "defaults"});
  EXPECT_EQ(o.flags, 0ul);
  EXPECT_EQ(o.data, "");
}

TEST(MountOptionsTest, BindAndPropagation) {
  MountOptions o = ParseMountOptions({"rbind", "ro", "rprivate"});
  EXPECT_TRUE(o.bind);
  EXPECT_TRUE(o.flags & MS_BIND);
  EXPECT_TRUE(o.flags & MS_REC);
  EXPECT_TRUE(o.remount_readonly);
  EXPECT_EQ(o.propagation, static_cast<unsigned long>(MS_PRIVATE | MS_REC));
  EXPECT_EQ(o.data, "");
}

}  // namespace
}  // namespace beaconbox::guest
