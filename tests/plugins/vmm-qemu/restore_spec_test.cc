// The checks of a VmSpec that restores a saved VM (VmSpec.restore_dir), before
// anything starts: plain names in restore_files, vm.state among them, no virtio-fs,
// and vm.state a non-empty regular file reached without a symlink.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "plugins/vmm-qemu/qemu_vm.h"
#include "tests/plugins/common/temp_dir.h"

namespace beaconbox::qemu {
namespace {

using plugins::testing::TempDir;
namespace pluginapi = ::beaconbox::plugin::v1;

pluginapi::VmSpec RestoreSpec(const std::string& dir) {
  pluginapi::VmSpec spec;
  spec.set_restore_dir(dir);
  spec.add_restore_files(kSavedStateName);
  return spec;
}

std::string MessageOf(const Status& status) { return status.ok() ? "" : status.error().message; }

TEST(RestoreSpecTest, ASpecWithoutRestoreDirPasses) {
  EXPECT_TRUE(CheckRestoreSpec(pluginapi::VmSpec()).ok());
}

TEST(RestoreSpecTest, RestoreFilesMustBePlainNamesAndHoldVmState) {
  for (const std::string& bad :
       std::vector<std::string>{"", ".", "..", "../vm.state", "a/b", "/etc/passwd",
                                std::string("vm\0state", 8), std::string(256, 'x')}) {
    pluginapi::VmSpec spec = RestoreSpec("/tmp/saved");
    spec.add_restore_files(bad);
    Status checked = CheckRestoreSpec(spec);
    ASSERT_FALSE(checked.ok()) << bad;
    EXPECT_EQ(checked.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(MessageOf(checked).find("VmSpec.restore_files entry"), std::string::npos)
        << MessageOf(checked);
  }
  pluginapi::VmSpec without_state;
  without_state.set_restore_dir("/tmp/saved");
  without_state.add_restore_files("memory.bin");
  EXPECT_NE(MessageOf(CheckRestoreSpec(without_state)).find("does not name vm.state"),
            std::string::npos);
  pluginapi::VmSpec relative = RestoreSpec("saved");
  EXPECT_NE(MessageOf(CheckRestoreSpec(relative)).find("must be an absolute path"),
            std::string::npos);
  pluginapi::VmSpec fine = RestoreSpec("/tmp/saved");
  fine.add_restore_files("beaconbox-checkpoint.json");
  EXPECT_TRUE(CheckRestoreSpec(fine).ok()) << MessageOf(CheckRestoreSpec(fine));
}

TEST(RestoreSpecTest, VirtioFsSharesAreRefused) {
  pluginapi::VmSpec spec = RestoreSpec("/tmp/saved");
  spec.add_devices()->mutable_share()->set_tag("rootfs");
  Status checked = CheckRestoreSpec(spec);
  ASSERT_FALSE(checked.ok());
  EXPECT_EQ(checked.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(MessageOf(checked).find("QEMU 7.2 cannot migrate vhost-user-fs"), std::string::npos);
}

TEST(RestoreSpecTest, TheStateFileIsANonEmptyRegularFileNotASymlink) {
  TempDir dir;
  const pluginapi::VmSpec spec = RestoreSpec(dir.path());
  auto missing = OpenSavedState(spec);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find(dir / "vm.state"), std::string::npos);

  const std::string real = dir.Write("real.state", "QEVM");
  ASSERT_EQ(::symlink(real.c_str(), (dir / "vm.state").c_str()), 0);
  auto symlinked = OpenSavedState(spec);
  ASSERT_FALSE(symlinked.ok());
  EXPECT_NE(symlinked.error().message.find("is a symlink"), std::string::npos)
      << symlinked.error().message;
  ASSERT_EQ(::unlink((dir / "vm.state").c_str()), 0);

  ASSERT_EQ(::mkfifo((dir / "vm.state").c_str(), 0600), 0);
  auto fifo = OpenSavedState(spec);  // must not block
  ASSERT_FALSE(fifo.ok());
  EXPECT_NE(fifo.error().message.find("not a regular file"), std::string::npos);
  ASSERT_EQ(::unlink((dir / "vm.state").c_str()), 0);

  ASSERT_EQ(::mkdir((dir / "vm.state").c_str(), 0700), 0);
  EXPECT_FALSE(OpenSavedState(spec).ok());
  ASSERT_EQ(::rmdir((dir / "vm.state").c_str()), 0);

  dir.Write("vm.state", "");
  auto empty = OpenSavedState(spec);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().message.find("is empty"), std::string::npos);

  dir.Write("vm.state", "QEVM-and-more");
  auto opened = OpenSavedState(spec);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_GE(opened->get(), 0);
}

}  // namespace
}  // namespace beaconbox::qemu
