// virtiofsd's lifecycle against a FAKE virtiofsd (a shell script written by the test,
// named as such): start until its socket exists, the log tail when it does not
// start, stop by pid, and the lock files it leaves in /run/virtiofsd.
#include "plugins/common/virtiofsd.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "tests/plugins/common/temp_dir.h"

namespace beaconbox::plugins {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
using namespace std::chrono_literals;
using testing::TempDir;

constexpr char kFakeVirtiofsd[] = R"(#!/bin/sh
# FAKE virtiofsd for tests: creates its socket path and waits to be ended.
for arg; do case "$arg" in --socket-path=*) socket="${arg#--socket-path=}";; esac; done
echo "fake virtiofsd: $*"
touch "$socket"
exec sleep 600
)";

constexpr char kFailingVirtiofsd[] = R"(#!/bin/sh
echo "fake virtiofsd: bad option" >&2
echo "second line" >&2
exit 1
)";

pluginapi::Share ShareOf(const std::string& host_path, bool read_only = false) {
  pluginapi::Share share;
  share.set_tag("rootfs");
  share.set_host_path(host_path);
  share.set_read_only(read_only);
  return share;
}

TEST(VirtiofsdCommandTest, SocketSourceCacheAndChrootSandbox) {
  EXPECT_EQ(
      BuildVirtiofsdCommand("/usr/lib/qemu/virtiofsd", ShareOf("/b/rootfs"), "/run/vm/fs0.sock"),
      (std::vector<std::string>{"/usr/lib/qemu/virtiofsd", "--socket-path=/run/vm/fs0.sock", "-o",
                                "source=/b/rootfs", "-o", "cache=auto", "-o", "sandbox=chroot"}));
  // Read-only is the read-only bind of the spawn, not an option this virtiofsd lacks.
  EXPECT_EQ(BuildVirtiofsdCommand("/v", ShareOf("/b", true), "/s"),
            BuildVirtiofsdCommand("/v", ShareOf("/b", false), "/s"));
}

TEST(VirtiofsdTest, StartsUntilItsSocketExistsAndStopsByPid) {
  TempDir dir;
  const std::string binary = dir.Write("fake-virtiofsd.sh", kFakeVirtiofsd, 0755);
  fs::create_directories(dir / "share");
  const std::string socket = dir / "fs0.sock";
  const std::string log = dir / "virtiofsd.log";
  Spawner spawner;
  auto pid = StartVirtiofsd(spawner, binary, ShareOf(dir / "share"), socket, log, 10s);
  ASSERT_TRUE(pid.ok()) << pid.error().message;
  EXPECT_TRUE(fs::exists(socket));
  EXPECT_TRUE(ChildRunning(*pid));
  EXPECT_NE(testing::ReadAll(log).find("--socket-path=" + socket), std::string::npos);
  StopVirtiofsd(*pid, socket, 1s);
  EXPECT_FALSE(ChildRunning(*pid));
}

TEST(VirtiofsdTest, ADaemonThatExitsIsAnErrorWithItsLogTail) {
  TempDir dir;
  const std::string binary = dir.Write("fake-virtiofsd-failing.sh", kFailingVirtiofsd, 0755);
  fs::create_directories(dir / "share");
  Spawner spawner;
  auto pid = StartVirtiofsd(spawner, binary, ShareOf(dir / "share"), dir / "fs0.sock",
                            dir / "virtiofsd.log", 10s);
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.error().code, ErrorCode::kUnavailable);
  // One line: the log's newlines became '|'.
  EXPECT_NE(pid.error().message.find("fake virtiofsd: bad option|second line|"), std::string::npos)
      << pid.error().message;
}

TEST(VirtiofsdTest, RefusesAShareThatIsNotADirectory) {
  TempDir dir;
  Spawner spawner;
  auto pid = StartVirtiofsd(spawner, "/bin/true", ShareOf(dir / "missing"), dir / "fs0.sock",
                            dir / "virtiofsd.log", 1s);
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.error().code, ErrorCode::kNotFound);
  auto relative = StartVirtiofsd(spawner, "/bin/true", ShareOf("share"), dir / "fs0.sock",
                                 dir / "virtiofsd.log", 1s);
  EXPECT_FALSE(relative.ok());
}

TEST(VirtiofsdLockFileTest, NamedAfterTheSocketPath) {
  EXPECT_EQ(VirtiofsdLockFilePath("/run/beacon/vm/7/fs0.sock"),
            "/run/virtiofsd/.run.beacon.vm.7.fs0.sock.pid");
}

TEST(VirtiofsdLockFileTest, StopAndStaleCleanupRemoveOnlyThisVmsLockFiles) {
  std::error_code error;
  const bool made_lock_dir =
      !fs::exists("/run/virtiofsd") && fs::create_directories("/run/virtiofsd", error);
  if (::access("/run/virtiofsd", W_OK) != 0) GTEST_SKIP() << "/run/virtiofsd is not writable";
  TempDir vm_dir;
  TempDir other_vm_dir;
  auto touch = [](const std::string& path) { std::ofstream(path) << "1\n"; };
  const std::string stopped = VirtiofsdLockFilePath(vm_dir / "fs0.sock");
  const std::string stale = VirtiofsdLockFilePath(vm_dir / "fs1.sock");
  const std::string other = VirtiofsdLockFilePath(other_vm_dir / "fs0.sock");
  for (const auto& path : {stopped, stale, other}) touch(path);

  StopVirtiofsd(-1, vm_dir / "fs0.sock", 0ms);  // the daemon is already gone
  EXPECT_FALSE(fs::exists(stopped));
  RemoveVirtiofsdLockFilesUnder(vm_dir.path());
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(other)) << "another VM's lock file was removed";
  RemoveVirtiofsdLockFilesUnder("relative");  // refused, removes nothing
  RemoveVirtiofsdLockFilesUnder("/");         // refused, removes nothing
  EXPECT_TRUE(fs::exists(other));

  fs::remove(other, error);
  if (made_lock_dir) fs::remove("/run/virtiofsd", error);
}

}  // namespace
}  // namespace beaconbox::plugins
