// virtiofsd's lifecycle against a FAKE virtiofsd (a shell script written by the test,
// named as such): start until its socket exists, the log tail when it does not
// start, stop by pid, and the lock files it leaves in /run/virtiofsd.
#include "plugins/common/virtiofsd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

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

TEST(VirtiofsdCommandTest, AnOverlayUpperShareKeepsXattrsAndSysAdmin) {
  pluginapi::Share share = ShareOf("/snapshots/4");
  share.set_overlay_upper(true);
  EXPECT_EQ(BuildVirtiofsdCommand("/v", share, "/s"),
            (std::vector<std::string>{"/v", "--socket-path=/s", "-o", "source=/snapshots/4", "-o",
                                      "cache=auto", "-o", "sandbox=chroot", "-o", "xattr", "-o",
                                      "modcaps=+sys_admin"}));
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

constexpr char kRealVirtiofsd[] = "/usr/lib/qemu/virtiofsd";

// Creates `file` as the daemon `pid` would: from inside its mount namespace (in a
// forked child, so this process stays where it is). Returns 0 or the errno.
int CreateInMountNamespaceOf(pid_t pid, const std::string& file) {
  pid_t child = ::fork();
  if (child == 0) {
    int ns = ::open(("/proc/" + std::to_string(pid) + "/ns/mnt").c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || ::setns(ns, CLONE_NEWNS) != 0) ::_exit(200);
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ::_exit(fd >= 0 ? 0 : errno);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

// Runs `body` in a forked child in its own mount namespace (so it may mount what it
// likes); returns the child's message, "" for success.
std::string InPrivateMountNamespace(const std::function<std::string()>& body) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return "pipe failed";
  pid_t child = ::fork();
  if (child == 0) {
    ::close(pipe_fds[0]);
    std::string message = "cannot make a private mount namespace";
    if (::unshare(CLONE_NEWNS) == 0 &&
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0) {
      message = body();
    }
    (void)!::write(pipe_fds[1], message.data(), message.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string message;
  char buffer[512];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buffer, sizeof(buffer))) > 0) message.append(buffer, n);
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!WIFEXITED(status)) return "child died: " + message;
  return message;
}

// The real virtiofsd with a read-only share: the daemon (which serves every guest
// write) cannot write into the share, nor into a file system mounted below it; a
// read-write share stays writable, and the host's own view is untouched.
TEST(VirtiofsdTest, AReadOnlyShareIsReadOnlyForTheDaemonSubmountsIncluded) {
  if (::access(kRealVirtiofsd, X_OK) != 0) GTEST_SKIP() << kRealVirtiofsd << " missing";
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (virtiofsd, mounts)";
  TempDir dir;
  fs::create_directories(dir / "share/sub");
  std::string message = InPrivateMountNamespace([&]() -> std::string {
    // A file system below the share, as a rootfs may hold (visible only here).
    if (::mount("tmpfs", (dir / "share/sub").c_str(), "tmpfs", 0, "size=1m") != 0)
      return "mount tmpfs failed";
    std::string result;
    Spawner spawner;
    for (bool read_only : {true, false}) {
      const std::string socket = dir / (read_only ? "ro.sock" : "rw.sock");
      auto pid = StartVirtiofsd(spawner, kRealVirtiofsd, ShareOf(dir / "share", read_only), socket,
                                dir / "virtiofsd.log", 20s);
      if (!pid.ok()) return pid.error().message;
      const int top = CreateInMountNamespaceOf(*pid, dir / "share/file");
      const int below = CreateInMountNamespaceOf(*pid, dir / "share/sub/file");
      StopVirtiofsd(*pid, socket, 1s);
      std::error_code ignored;
      fs::remove(dir / "share/file", ignored);
      fs::remove(dir / "share/sub/file", ignored);
      const int expected = read_only ? EROFS : 0;
      if (top != expected) {
        result += std::string(read_only ? "read-only" : "read-write") + " share: creating a file " +
                  "gave " + std::to_string(top) + "; ";
      }
      if (below != expected) {
        result += std::string(read_only ? "read-only" : "read-write") +
                  " share's submount: " + "creating a file gave " + std::to_string(below) + "; ";
      }
    }
    // The read-only bind lived only in the daemon's namespace.
    int fd = ::open((dir / "share/host-file").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) result += "the host's view of the share became read-only; ";
    if (fd >= 0) ::close(fd);
    ::umount2((dir / "share/sub").c_str(), MNT_DETACH);
    return result;
  });
  EXPECT_EQ(message, "") << "(EROFS is " << EROFS << ")";
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
