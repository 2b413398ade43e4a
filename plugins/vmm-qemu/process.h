// Child processes of the VMM plugin (qemu, virtiofsd). They must never outlive the
// shim: each gets PR_SET_PDEATHSIG(SIGKILL). The kernel sends that signal when the
// *thread* that forked exits, and the host calls plugin ops from short-lived
// threads, so every fork happens on one spawner thread that lives as long as the
// plugin (from init to fini; the host destroys every VM before fini).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::qemu {

struct SpawnOptions {
  // stdout and stderr are appended here; stdin is /dev/null.
  std::string log_path;
  // When set, the child enters a private mount namespace and bind-mounts this
  // directory read-only onto itself before exec (a read-only virtio-fs export).
  std::string read_only_dir;
};

class Spawner {
 public:
  Spawner();
  ~Spawner();
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // Starts argv[0] (an absolute path) and returns its pid.
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
// The last `max_bytes` of a file as one printable line (newlines become '|'), for
// error messages: the file may hold guest output.
std::string FileTail(const std::string& path, size_t max_bytes);

}  // namespace beaconbox::qemu
