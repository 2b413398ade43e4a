// The checks of a VmSpec that restores a saved VM (VmSpec.restore_dir), before
// anything starts: plain names in restore_files, vm.state among them, no virtio-fs,
// vm.state a non-empty regular file reached without a symlink, and the QEMU that saved
// it (restore_vmm_version) the one config key binary names (a FAKE QEMU script here,
// which records how it was run; vmm_qemu_restore_test compares the real one).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "plugins/vmm-qemu/qemu_version.h"
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
  spec.set_restore_vmm_version("QEMU emulator version 7.2.22");
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
  pluginapi::VmSpec without_state = RestoreSpec("/tmp/saved");
  without_state.clear_restore_files();
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

TEST(RestoreSpecTest, ARestoreWithoutTheSavingQemuVersionIsRefused) {
  pluginapi::VmSpec spec = RestoreSpec("/tmp/saved");
  spec.clear_restore_vmm_version();
  Status checked = CheckRestoreSpec(spec);
  ASSERT_FALSE(checked.ok());
  EXPECT_EQ(checked.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(MessageOf(checked).find("VmSpec.restore_vmm_version is empty"), std::string::npos)
      << MessageOf(checked);
}

TEST(RestoreSpecTest, QemuVersionOutputGivesTheTextASaveNamesItsQemuWith) {
  auto debian = ParseQemuVersionOutput(
      "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"
      "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n");
  ASSERT_TRUE(debian.ok()) << debian.error().message;
  EXPECT_EQ(*debian, "QEMU emulator version 7.2.22");
  EXPECT_EQ(*debian, VmmVersionText(7, 2, 22));  // what QemuVm::Save writes
  auto plain = ParseQemuVersionOutput("QEMU emulator version 8.0.50\n");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*plain, "QEMU emulator version 8.0.50");
  for (const std::string& bad : std::vector<std::string>{
           "", "qemu-system-x86_64: unknown option", "QEMU emulator version ",
           "QEMU emulator version x", "QEMU emulator version 7..2", "QEMU emulator version 7.2.",
           "busybox v1.35\nQEMU emulator version 7.2.22",
           std::string("QEMU emulator version 7.2\x01")}) {
    auto parsed = ParseQemuVersionOutput(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.error().message.find("is config key binary a QEMU?"), std::string::npos);
    EXPECT_EQ(parsed.error().message.find('\n'), std::string::npos) << parsed.error().message;
  }
}

// A FAKE QEMU: prints `version_line` for --version and appends its arguments to
// <dir>/runs each time it runs.
std::string FakeQemu(const TempDir& dir, const std::string& version_line) {
  return dir.Write(
      "fake-qemu",
      "#!/bin/sh\necho \"$*\" >> '" + (dir / "runs") + "'\necho '" + version_line + "'\n", 0755);
}

size_t Runs(const TempDir& dir) {
  std::ifstream in(dir / "runs");
  size_t lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  return lines;
}

TEST(RestoreSpecTest, TheBinaryVersionRunsOncePerInstalledBinary) {
  TempDir dir;
  std::string binary = FakeQemu(dir, "QEMU emulator version 9.1.0 (FAKE QEMU)");
  const std::string cache = dir / "cache";
  auto first = QemuBinaryVersion(binary, cache);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(*first, "QEMU emulator version 9.1.0");
  EXPECT_EQ(Runs(dir), 1u);
  auto second = QemuBinaryVersion(binary, cache);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, *first);
  EXPECT_EQ(Runs(dir), 1u) << "--version ran again although its answer was cached";
  // Without a cache directory it runs every time.
  ASSERT_TRUE(QemuBinaryVersion(binary, "").ok());
  EXPECT_EQ(Runs(dir), 2u);

  // A cache file that does not hold its key and a version is not believed.
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(cache)) files.push_back(entry);
  ASSERT_EQ(files.size(), 1u);
  std::ofstream(files[0], std::ios::trunc) << "another binary\nQEMU emulator version 1.0.0\n";
  auto rewritten = QemuBinaryVersion(binary, cache);
  ASSERT_TRUE(rewritten.ok());
  EXPECT_EQ(*rewritten, "QEMU emulator version 9.1.0");
  EXPECT_EQ(Runs(dir), 3u);

  // An upgraded binary (another file in its place) is asked again.
  ASSERT_EQ(::unlink(binary.c_str()), 0);
  binary = FakeQemu(dir, "QEMU emulator version 9.2.0 (FAKE QEMU, upgraded)");
  auto upgraded = QemuBinaryVersion(binary, cache);
  ASSERT_TRUE(upgraded.ok());
  EXPECT_EQ(*upgraded, "QEMU emulator version 9.2.0");
  EXPECT_EQ(Runs(dir), 4u);

  // Not a QEMU: one line naming the binary.
  const std::string other = dir.Write("not-qemu", "#!/bin/sh\necho 'BusyBox v1.35.0'\n", 0755);
  auto refused = QemuBinaryVersion(other, cache);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find(other), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("'BusyBox v1.35.0', not 'QEMU emulator version X.Y.Z'"),
            std::string::npos)
      << refused.error().message;
}

// QemuVm::Create with another QEMU than the one that saved: refused in one line naming
// both versions and what to do, before anything starts (the FAKE QEMU ran only for
// --version; nothing is in the run dir).
TEST(RestoreSpecTest, AnotherQemuVersionIsRefusedBeforeAnythingStarts) {
  TempDir dir;
  QemuConfig config;
  config.binary = FakeQemu(dir, "QEMU emulator version 8.2.2 (FAKE QEMU)");
  config.accelerator = "tcg";
  config.verdict_dir = dir / "cache";
  ASSERT_EQ(::mkdir((dir / "saved").c_str(), 0700), 0);
  dir.Write("saved/vm.state", "QEVM-and-more");
  ASSERT_EQ(::mkdir((dir / "run").c_str(), 0700), 0);
  pluginapi::VmSpec spec = RestoreSpec(dir / "saved");
  spec.set_id("restore");
  spec.set_namespace_("test");
  spec.set_kernel_path(dir.Write("kernel", "FAKE kernel"));
  spec.set_initrd_path(dir.Write("initrd", "FAKE initrd"));
  spec.set_run_dir(dir / "run");
  spec.set_console_log_path(dir / "console.log");
  auto* channel = spec.mutable_agent_channel();
  channel->set_kind(pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
  channel->set_serial_port_name("beaconbox.agent");
  channel->set_unix_socket_path(spec.run_dir() + "/agent.sock");
  spec.set_agent_token(std::string(64, 'a'));
  plugins::Spawner spawner;
  auto vm = QemuVm::Create(spec, config, spawner);
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(vm.error().code, ErrorCode::kInvalidArgument);
  const std::string& message = vm.error().message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_NE(message.find("its VM was saved by QEMU emulator version 7.2.22, this host's QEMU " +
                         config.binary +
                         " (config key binary) is QEMU emulator version 8.2.2; "
                         "restore it on a host with QEMU emulator version 7.2.22"),
            std::string::npos)
      << message;
  EXPECT_EQ(Runs(dir), 1u);
  std::ifstream runs(dir / "runs");
  std::string args;
  std::getline(runs, args);
  EXPECT_EQ(args, "--version");
  EXPECT_TRUE(std::filesystem::is_empty(dir / "run"));
  EXPECT_FALSE(std::filesystem::exists(dir / "console.log"));

  // The same QEMU passes this check (and goes on to start the FAKE QEMU, which is no
  // VM: that failure is not this test's).
  spec.set_restore_vmm_version("QEMU emulator version 8.2.2");
  EXPECT_TRUE(CheckRestoreVmmVersion(spec, config.binary, "QEMU emulator version 8.2.2").ok());
  // A checkpoint's version text is input from outside: one bounded line.
  spec.set_restore_vmm_version("QEMU\nemulator version " + std::string(1000, '9'));
  Status hostile = CheckRestoreVmmVersion(spec, config.binary, "QEMU emulator version 8.2.2");
  ASSERT_FALSE(hostile.ok());
  EXPECT_EQ(hostile.error().message.find('\n'), std::string::npos);
  EXPECT_LT(hostile.error().message.size(), 800u);
}

}  // namespace
}  // namespace beaconbox::qemu
