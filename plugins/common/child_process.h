// Child processes of a plugin (a VMM, virtiofsd, a probe). They must never outlive
// the shim: each gets PR_SET_PDEATHSIG(SIGKILL). The kernel sends that signal when
// the *thread* that forked exits, and the host calls plugin ops from short-lived
// threads, so a child that outlives one op is forked by a Spawner: one thread that
// lives as long as the plugin (from init to fini; the host destroys every VM before
// fini). A child that the calling thread waits for itself may use ForkExec directly.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/base/process_start_time.h"
#include "common/base/result.h"

namespace beaconbox::plugins {

struct SpawnOptions {
  // stdout and stderr go here (appended, or truncated first); stdin is /dev/null.
  std::string log_path;
  bool truncate_log = false;
  // When set, the child enters a private mount namespace and bind-mounts this
  // directory read-only onto itself before exec (a read-only virtio-fs export);
  // mounts below it become read-only too (mount_setattr, AT_RECURSIVE).
  std::string read_only_dir;
  // Descriptors the child keeps under their own numbers (FD_CLOEXEC cleared in the
  // child only): a TAP opened in another network namespace for QEMU's `fd=`.
  std::vector<int> inherit_fds;
};

// Makes the mount at `dir` and every mount below it read-only (mount_setattr(2),
// AT_RECURSIVE). A plain MS_REMOUNT|MS_RDONLY changes only the top mount: a file
// system mounted inside would stay writable; that is the fallback on kernels before
// 5.12. 0 on success, else -1 with errno. Async-signal-safe.
int MakeReadOnlyRecursively(const char* dir);

// fork + exec of argv[0] (an absolute path) from the calling thread, with
// PR_SET_PDEATHSIG(SIGKILL) tied to that thread; returns the child's pid. The thread
// must live until the child has exec'd: a thread ending before the child armed the
// signal leaves the child running (its new parent is another thread of the process).
Result<pid_t> ForkExec(const std::vector<std::string>& argv, const SpawnOptions& options);

class Spawner {
 public:
  Spawner();
  ~Spawner();
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // ForkExec on the spawner thread: the child lives until it ends or the plugin does.
  Result<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options);

 private:
  void Run();
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

// True while `pid` (our child) has not exited; reaps it when it has.
bool ChildRunning(pid_t pid);
// SIGTERM, up to `grace` for it to exit, then SIGKILL; always reaps.
void EndChild(pid_t pid, std::chrono::milliseconds grace);
// Waits up to `timeout` for `pid` to exit by itself; reaps it. Returns whether it did.
bool WaitChildExit(pid_t pid, std::chrono::milliseconds timeout);
// Waits up to `timeout` for `path` to exist (a socket the child creates); false when
// the child `owner` exits first or the time runs out.
bool WaitForPath(const std::string& path, pid_t owner, std::chrono::milliseconds timeout);

// The start time of `pid` (/proc/<pid>/stat field 22; common/base/process_start_time.h).
using ::beaconbox::ProcessStartTime;

// A process recorded by a shim for the cleanup after its death.
struct RecordedProcess {
  int64_t pid = 0;
  uint64_t start_time = 0;  // 0: not recorded (a state file from before it was)
};

// For the cleanup after a dead shim: SIGKILLs each recorded process that still runs,
// i.e. whose pid has the recorded start time and runs one of `binaries` (by
// /proc/<pid>/exe). A recycled pid (another VM, any other process) has another start
// time and is left alone; so is a process without a recorded start time, since its
// identity cannot be proved. The signal goes through a pidfd opened before the checks,
// so a pid recycled while checking is not hit either. Returns how many it signalled.
size_t KillStaleProcesses(const std::vector<RecordedProcess>& processes,
                          const std::vector<std::string>& binaries);

}  // namespace beaconbox::plugins

namespace beaconbox::plugins {

// What RunCaptured saw: the exit (code, or the signal as 128 + n), and the first
// bytes of stdout and stderr (each bounded; `*_truncated` says more was written).
struct CapturedRun {
  int exit_code = -1;
  std::string stdout_text;
  bool stdout_truncated = false;
  std::string stderr_text;
  bool stderr_truncated = false;
};

struct CapturedRunOptions {
  std::vector<std::string> env;  // the child's whole environment, "NAME=value"
  std::string stdin_text;        // written to its stdin, then closed
  size_t max_stdout = 1 << 20;   // bytes kept; the rest is read and dropped
  size_t max_stderr = 8 << 10;
  std::chrono::milliseconds timeout{30000};  // then SIGKILL: kTimeout
};

// Runs argv[0] (absolute) from the calling thread (ForkExec's death signal) with its
// stdin fed from `stdin_text` and stdout/stderr read into bounded buffers, waits for
// it, and reaps it. A program writing without end or never exiting cannot make the
// caller allocate without bound or wait forever. For short helpers (a CNI plugin).
Result<CapturedRun> RunCaptured(const std::vector<std::string>& argv,
                                const CapturedRunOptions& options);

}  // namespace beaconbox::plugins
