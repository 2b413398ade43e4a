// The one place vminitd collects exit statuses. As PID 1 it inherits every orphan
// (container processes are reparented to it when crun exits), so a single thread
// waits for SIGCHLD and reaps with waitpid(-1); each status goes to whoever watches
// that pid — a crun invocation waiting for its result, or the process table. A
// status nobody watches yet is kept (bounded) for a watcher that registers late, so
// a pid read from crun's pid file after the process already died is not lost.
#pragma once

#include <sys/types.h>

#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox::guest {

class Reaper {
 public:
  using ExitCallback = std::function<void(int wait_status)>;

  // Blocks SIGCHLD in the calling thread; call before any other thread exists so
  // that every thread inherits the mask and only the reaper sees the signal.
  static void BlockSigchld();

  static Reaper& Instance();
  void Start();

  // Calls `on_exit` (on the reaper thread, or right here if the pid already exited)
  // with the raw wait status of `pid`.
  void Watch(pid_t pid, ExitCallback on_exit);

  // Blocks until `pid` (a child started by vminitd) exits; returns its wait status.
  int WaitFor(pid_t pid);

 private:
  void Run();
  void Deliver(pid_t pid, int status);

  std::mutex mu_;
  std::map<pid_t, ExitCallback> watchers_;
  std::map<pid_t, int> unclaimed_;
  std::deque<pid_t> unclaimed_order_;
  std::thread thread_;
};

// Stdio for a spawned program: -1 means /dev/null.
struct SpawnStdio {
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
};

// Starts `argv` with a clean signal mask and the given stdio; other fds are not
// inherited (everything vminitd opens is O_CLOEXEC).
Result<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnStdio& stdio);

// Runs `argv` to completion; returns its output (stdout+stderr, bounded) on exit 0,
// an error with the output's last line otherwise.
Result<std::string> RunCommand(const std::vector<std::string>& argv, const SpawnStdio& stdio = {});

// Exit code as containerd reports it: the exit status, or 128 + signal.
unsigned ExitCodeFromWaitStatus(int wait_status);

}  // namespace beaconbox::guest
