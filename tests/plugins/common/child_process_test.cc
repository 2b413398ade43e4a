// Children die with their owner (the forking thread), are ended by pid, log into
// the given file, and can see a directory read-only.
#include "plugins/common/child_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <thread>

#include "tests/plugins/common/temp_dir.h"

namespace beaconbox::plugins {
namespace {

using namespace std::chrono_literals;
using testing::ReadAll;
using testing::TempDir;

// Generous bounds for the kernel to deliver a signal; never a timing assertion.
constexpr auto kExitBound = 10s;

// Ends `pid` at the end of a test, also when an assertion failed.
struct ChildGuard {
  pid_t pid = -1;
  ~ChildGuard() {
    if (pid > 0) EndChild(pid, 0ms);
  }
};

SpawnOptions LogTo(const std::string& path, bool truncate = false) {
  SpawnOptions options;
  options.log_path = path;
  options.truncate_log = truncate;
  return options;
}

SpawnOptions ReadOnly(const std::string& log, const std::string& dir) {
  SpawnOptions options = LogTo(log);
  options.read_only_dir = dir;
  return options;
}

bool ProcessExists(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

TEST(SpawnerTest, CapturesStdoutAndStderrInTheLog) {
  TempDir dir;
  Spawner spawner;
  const std::string log = dir / "child.log";
  auto pid =
      spawner.Spawn({"/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2; read x"}, LogTo(log));
  ASSERT_TRUE(pid.ok()) << pid.error().message;
  ChildGuard guard{*pid};
  ASSERT_TRUE(WaitChildExit(*pid, kExitBound));  // stdin is /dev/null: read returns at once
  guard.pid = -1;
  EXPECT_EQ(ReadAll(log), "to-stdout\nto-stderr\n");
}

TEST(SpawnerTest, AppendsOrTruncatesTheLog) {
  TempDir dir;
  const std::string log = dir.Write("child.log", "before\n");
  auto appended = ForkExec({"/bin/echo", "one"}, LogTo(log));
  ASSERT_TRUE(appended.ok());
  ASSERT_TRUE(WaitChildExit(*appended, kExitBound));
  EXPECT_EQ(ReadAll(log), "before\none\n");
  auto truncated = ForkExec({"/bin/echo", "two"}, LogTo(log, /*truncate=*/true));
  ASSERT_TRUE(truncated.ok());
  ASSERT_TRUE(WaitChildExit(*truncated, kExitBound));
  EXPECT_EQ(ReadAll(log), "two\n");
}

TEST(SpawnerTest, RefusesARelativeProgramOrAMissingLogDirectory) {
  Spawner spawner;
  auto relative = spawner.Spawn({"sleep", "1"}, LogTo("/dev/null"));
  ASSERT_FALSE(relative.ok());
  EXPECT_EQ(relative.error().code, ErrorCode::kInvalidArgument);
  auto no_log = spawner.Spawn({"/bin/true"}, LogTo("/nonexistent-dir/x.log"));
  ASSERT_FALSE(no_log.ok());
  EXPECT_NE(no_log.error().message.find("/nonexistent-dir/x.log"), std::string::npos);
}

TEST(SpawnerTest, EndChildEndsItByPidAndReapsIt) {
  Spawner spawner;
  auto pid = spawner.Spawn({"/bin/sleep", "600"}, LogTo("/dev/null"));
  ASSERT_TRUE(pid.ok()) << pid.error().message;
  ChildGuard guard{*pid};
  EXPECT_TRUE(ChildRunning(*pid));
  EndChild(*pid, 2s);
  guard.pid = -1;
  EXPECT_FALSE(ChildRunning(*pid));
  EXPECT_FALSE(ProcessExists(*pid)) << "reaped, not a zombie";
  EndChild(*pid, 0ms);  // twice is harmless
}

TEST(SpawnerTest, ChildOutlivesTheCallingThreadButNotTheSpawner) {
  pid_t pid = -1;
  auto spawner = std::make_unique<Spawner>();
  // The host calls plugin ops from short-lived threads.
  std::thread caller([&] {
    auto spawned = spawner->Spawn({"/bin/sleep", "600"}, LogTo("/dev/null"));
    if (spawned.ok()) pid = *spawned;
  });
  caller.join();
  ASSERT_GT(pid, 0);
  ChildGuard guard{pid};
  EXPECT_FALSE(WaitChildExit(pid, 200ms)) << "the child died with the op's thread";
  spawner.reset();  // the spawner thread ends: the kernel sends SIGKILL
  EXPECT_TRUE(WaitChildExit(pid, kExitBound)) << "the child outlived its owner";
  guard.pid = -1;
}

TEST(ForkExecTest, ChildDiesWithTheThreadThatForkedIt) {
  TempDir dir;
  const std::string started = dir / "started";
  pid_t pid = -1;
  std::thread owner([&] {
    auto spawned =
        ForkExec({"/bin/sh", "-c", "touch " + started + "; exec sleep 600"}, LogTo("/dev/null"));
    if (!spawned.ok()) return;
    pid = *spawned;
    // The owner lives until the child has armed PR_SET_PDEATHSIG (it runs the shell).
    WaitForPath(started, pid, kExitBound);
  });
  owner.join();
  ASSERT_GT(pid, 0);
  ChildGuard guard{pid};
  EXPECT_TRUE(WaitChildExit(pid, kExitBound)) << "PR_SET_PDEATHSIG did not end the child";
  guard.pid = -1;
}

TEST(SpawnerTest, ReadOnlyDirIsReadOnlyForTheChildOnly) {
  if (::geteuid() != 0) GTEST_SKIP() << "a private mount namespace needs root";
  TempDir dir;
  const std::string shared = dir / "share";
  std::filesystem::create_directories(shared);
  const std::string log = dir / "child.log";
  Spawner spawner;
  auto pid =
      spawner.Spawn({"/bin/sh", "-c", "touch " + shared + "/written"}, ReadOnly(log, shared));
  ASSERT_TRUE(pid.ok()) << pid.error().message;
  ChildGuard guard{*pid};
  ASSERT_TRUE(WaitChildExit(*pid, kExitBound));
  guard.pid = -1;
  EXPECT_FALSE(std::filesystem::exists(shared + "/written"));
  EXPECT_NE(ReadAll(log).find("Read-only file system"), std::string::npos) << ReadAll(log);
  // The bind lived in the child's mount namespace: here the directory is writable.
  std::ofstream(shared + "/from-test") << "x";
  EXPECT_TRUE(std::filesystem::exists(shared + "/from-test"));
}

TEST(WaitForPathTest, SeesThePathOrTheOwnerExit) {
  TempDir dir;
  const std::string socket = dir / "ready";
  auto creates =
      ForkExec({"/bin/sh", "-c", "touch " + socket + "; exec sleep 600"}, LogTo("/dev/null"));
  ASSERT_TRUE(creates.ok());
  ChildGuard guard{*creates};
  EXPECT_TRUE(WaitForPath(socket, *creates, kExitBound));
  EndChild(*creates, 0ms);
  guard.pid = -1;
  auto exits = ForkExec({"/bin/true"}, LogTo("/dev/null"));
  ASSERT_TRUE(exits.ok());
  EXPECT_FALSE(WaitForPath(dir / "never", *exits, 600s)) << "waited although the owner exited";
}

TEST(ProcessStartTimeTest, ReadsField22OfStat) {
  auto sleeper = ForkExec({"/bin/sleep", "600"}, LogTo("/dev/null"));
  ASSERT_TRUE(sleeper.ok());
  ChildGuard guard{*sleeper};
  const uint64_t start_time = ProcessStartTime(*sleeper);
  EXPECT_NE(start_time, 0u);
  EXPECT_EQ(ProcessStartTime(*sleeper), start_time);    // stable for the process' life
  EXPECT_GE(start_time, ProcessStartTime(::getpid()));  // started after this test
  EXPECT_EQ(ProcessStartTime(0), 0u);
  EXPECT_EQ(ProcessStartTime(-5), 0u);
  EXPECT_EQ(ProcessStartTime(99999999), 0u);
}

TEST(KillStaleProcessesTest, KillsOnlyRecordedProcessesRunningTheNamedBinaries) {
  auto sleeper = ForkExec({"/bin/sleep", "600"}, LogTo("/dev/null"));
  ASSERT_TRUE(sleeper.ok());
  ChildGuard guard{*sleeper};
  const uint64_t start_time = ProcessStartTime(*sleeper);
  ASSERT_NE(start_time, 0u);
  // Wait for the exec, so that /proc/<pid>/exe is sleep and not this test.
  const std::string exe = std::filesystem::canonical("/bin/sleep").string();
  for (int i = 0; i < 1000; ++i) {
    std::error_code error;
    if (std::filesystem::read_symlink("/proc/" + std::to_string(*sleeper) + "/exe", error) == exe)
      break;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(KillStaleProcesses({{*sleeper, start_time}, {0, 1}, {1, 1}, {-5, 1}, {99999999, 1}},
                               {"/bin/true"}),
            0u);
  EXPECT_TRUE(ChildRunning(*sleeper));
  // The same pid and binary with another start time: a recycled pid, not ours.
  EXPECT_EQ(KillStaleProcesses({{*sleeper, start_time + 1}}, {"/bin/sleep"}), 0u);
  EXPECT_TRUE(ChildRunning(*sleeper));
  // A state file from before start times were recorded: unsure, so not killed.
  EXPECT_EQ(KillStaleProcesses({{*sleeper, 0}}, {"/bin/sleep"}), 0u);
  EXPECT_TRUE(ChildRunning(*sleeper));
  EXPECT_EQ(KillStaleProcesses({{*sleeper, start_time}}, {"", "/bin/sleep"}), 1u);
  EXPECT_TRUE(WaitChildExit(*sleeper, kExitBound));
  guard.pid = -1;
}

}  // namespace
}  // namespace beaconbox::plugins
