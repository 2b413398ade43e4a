// vminitd's container runtime: bundles under /run/beaconbox/bundles, containers and
// exec processes run by crun, their stdio pipes (or pty), and their exit statuses.
// The ttrpc services (services.cc) are thin wrappers around this class.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "beaconbox/guest/v1/guest.pb.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "guest/vminitd/stdio_pipe.h"

namespace beaconbox::guest {

namespace taskapi = ::containerd::task::v2;
namespace guestapi = ::beaconbox::guest::v1;

inline constexpr char kBundleRoot[] = "/run/beaconbox/bundles";
inline constexpr char kStateRoot[] = "/run/beaconbox/state";
inline constexpr char kCrunRoot[] = "/run/crun";

class Runtime {
 public:
  // --- beaconbox.guest.v1.Guest ---
  Result<guestapi::CreateBundleResponse> CreateBundle(const guestapi::CreateBundleRequest& req);
  Status RemoveBundle(const guestapi::RemoveBundleRequest& req);
  // A process's stdout or stderr, for ReadOutput. An exec's pipes exist from its
  // Start on, and the shim may ask before: this waits up to `wait` for them, then
  // gives null (nothing yet: ask again).
  Result<std::shared_ptr<StdioPipe>> Output(const std::string& id, const std::string& exec_id,
                                            guestapi::Stream stream,
                                            std::chrono::milliseconds wait);
  // A process's stdin, for WriteInput; null as for Output.
  Result<std::shared_ptr<StdioPipe>> Input(const std::string& id, const std::string& exec_id,
                                           std::chrono::milliseconds wait);
  // Closes a process's stdin (CloseInput, and Task.CloseIO). Not with a terminal:
  // the pty stays, as with runc.
  Status CloseInput(const std::string& id, const std::string& exec_id);

  // --- containerd.task.v2.Task ---
  Result<taskapi::CreateTaskResponse> Create(const taskapi::CreateTaskRequest& req);
  Result<taskapi::StartResponse> Start(const taskapi::StartRequest& req);
  Status Exec(const taskapi::ExecProcessRequest& req);
  Status Kill(const taskapi::KillRequest& req);
  Result<taskapi::WaitResponse> Wait(const taskapi::WaitRequest& req);
  Result<taskapi::DeleteResponse> Delete(const taskapi::DeleteRequest& req);
  Result<taskapi::StateResponse> State(const taskapi::StateRequest& req);
  Result<taskapi::PidsResponse> Pids(const taskapi::PidsRequest& req);
  Status CloseIO(const taskapi::CloseIORequest& req);
  Status ResizePty(const taskapi::ResizePtyRequest& req);
  Status Pause(const std::string& id);
  Status Resume(const std::string& id);
  Status Update(const taskapi::UpdateTaskRequest& req);  // update.cc
  Result<taskapi::ConnectResponse> Connect(const taskapi::ConnectRequest& req);
  // The container's cgroup v2 figures (runtime_stats.cc).
  Result<taskapi::StatsResponse> Stats(const taskapi::StatsRequest& req);
  // --- beaconbox.guest.v1.Guest, continued (runtime_stats.cc) ---
  // Waits (capped at 60 s) for the container's OOM kill count to exceed req.seen().
  Result<guestapi::WaitOomResponse> WaitOom(const guestapi::WaitOomRequest& req);

 private:
  enum class Phase { kCreated, kRunning, kPaused, kStopped };

  struct Process {
    std::string exec_id;  // empty for the container's init process
    std::string stdin_name, stdout_name, stderr_name;
    bool terminal = false;
    std::string process_spec_path;  // exec only: the OCI process JSON for crun exec
    pid_t pid = 0;
    Phase phase = Phase::kCreated;
    UniqueFd console_fd;  // the pty master with a terminal, for ResizePty
    // Our ends: the pipes' write end (stdin) and read ends, or dups of the pty
    // master. Closed when the process is deleted, which ends pending calls.
    std::shared_ptr<StdioPipe> stdin_pipe, stdout_pipe, stderr_pipe;
    bool launched = false;  // the pipes above are set (once crun ran it)
    bool deleted = false;
    std::condition_variable stdio_ready;  // with mu_: launched or deleted
    unsigned exit_status = 0;
    int64_t exited_at_ns = 0;
    std::condition_variable exited;
  };

  struct Container {
    std::string id;
    std::string bundle;
    std::shared_ptr<Process> init;
    std::map<std::string, std::shared_ptr<Process>> execs;
    // The container's cgroup v2 directory in the guest, from its init process's
    // /proc/PID/cgroup once crun created it; empty if it has none (runtime_stats.cc).
    std::string cgroup_dir;
  };
  // Finds the cgroup directory of `pid` (/proc/PID/cgroup), for Container::cgroup_dir.
  static std::string CgroupDirOf(pid_t pid, const std::string& id);

  Result<std::shared_ptr<Process>> FindProcess(const std::string& id, const std::string& exec_id);
  Result<Container*> FindContainer(const std::string& id);
  // Waits (mu_ held by `lock`) up to `wait` for `process` to be launched.
  void WaitLaunched(std::unique_lock<std::mutex>& lock, Process& process,
                    std::chrono::milliseconds wait);
  // Prepares pipes / console socket, runs crun (create or exec), reads the pid.
  Status Launch(const std::string& id, Process& process, const std::vector<std::string>& crun_args);
  void WatchExit(const std::shared_ptr<Process>& process);
  Result<std::string> Crun(const std::vector<std::string>& args);

  std::mutex mu_;
  std::map<std::string, Container> containers_;
  std::map<std::string, bool> bundles_;
};

}  // namespace beaconbox::guest
