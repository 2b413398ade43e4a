// Child processes of the VMM plugin (qemu, virtiofsd). They must never outlive the
// shim: each gets PR_SET_PDEATHSIG(SIGKILL). The kernel sends that signal when the
// *thread* that forked exits, and the host calls plugin ops from short-lived
// threads, so every fork happens on one spawner thread that lives as long as the
// plugin.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::qemu {

class Spawner {
 public:
  Spawner();
  ~Spawner();
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // Starts argv[0] with stdout and stderr appended to `log_path` and stdin on
  // /dev/null. Returns the pid.
  Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path);

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
// The last `max_bytes` of a file, for error messages.
std::string FileTail(const std::string& path, size_t max_bytes);

}  // namespace beaconbox::qemu
