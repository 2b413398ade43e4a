// One container in a sandbox's VM: its init process and its execs. Each process owns
// its IO relay and the thread that waits for its exit; every task event about the
// container (create, start, exec-added, exec-started, exit, paused, resumed, delete) is
// published from here. Each call first checks the process state as runc's shim does
// (process_state.h).
//
// Authority over the VM (issue 10): the guest is hostile. Every guest call has a
// deadline except Wait, which teardown cancels; a SIGKILL of the init that the guest
// does not answer with an exit within vm.kill_timeout_ms stops the VM (exit 137, as
// runc reports a killed task); Wait always returns once the container is shut down.
//
// Pids: every pid reported to containerd (Create, Start, Exec, State, Delete, Pids,
// Connect, the task events) is a host pid: the VMM process's, as Kata Containers
// reports its hypervisor's. The container's processes exist only inside the VM; a
// guest pid handed to containerd would name some unrelated host process to any tool
// that reads /proc/<pid> or signals it. For the same reason Pids (`ctr task ps`)
// gives the VMM's pid where runc's shim lists the container's processes: on the host
// the VMM is the container's only process. The guest's pids stay in the shim's
// log; `ctr task exec ... ps` shows the processes inside. Pids has one entry per live
// process of the task -- the init unless it exited, each started exec still running --
// all with the VMM's pid, each exec's carrying its exec id (as runc's shim marks its
// exec processes, with containerd's runc ProcessDetails), so `ctr task ps` tells
// which exec is which.
#pragma once

#include <google/protobuf/any.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "host/shim/event_publisher.h"
#include "host/shim/guest_client.h"
#include "host/shim/io_relay.h"
#include "host/shim/oci_hooks.h"
#include "host/shim/oom_watch.h"
#include "host/shim/process_state.h"
#include "host/shim/runtime_layout.h"

namespace beaconbox::shim {

// Checks that each stdio path containerd gave is a FIFO, without following a
// symlink: the shim opens them as root. containerd's log URIs (binary://, file://)
// and anything else are refused with one line.
Status CheckStdioFifos(const std::string& stdin_path, const std::string& stdout_path,
                       const std::string& stderr_path);

struct ExitInfo {
  uint32_t pid = 0;
  uint32_t exit_status = 0;
  google::protobuf::Timestamp exited_at;
};

struct ProcessView {
  uint32_t pid = 0;
  ProcessState state = ProcessState::kCreated;
  uint32_t exit_status = 0;
  google::protobuf::Timestamp exited_at;
  StdioPaths stdio;
};

// One entry of Pids: the pid reported (the VMM's) and the exec id ("" = init).
struct PidEntry {
  uint32_t pid = 0;
  std::string exec_id;
};

google::protobuf::Timestamp Now();

class Container {
 public:
  // Pauses (true) or resumes (false) what runs the container: the VM when the
  // container is alone in it, else the container in the guest. Given by the Sandbox.
  using PauseFunction = std::function<Status(bool pause)>;
  // Stops the VM running the container and closes the guest connection; `why` is
  // logged. Given by the Sandbox; every container in the VM ends with it.
  using StopVmFunction = std::function<void(const std::string& why)>;

  // What the Sandbox decides for each of its containers.
  struct Options {
    uint32_t host_pid = 0;  // reported to containerd for every process (the VMM's)
    std::chrono::milliseconds guest_call_timeout{60000};
    std::chrono::milliseconds kill_timeout{5000};
    PauseFunction pause;
    StopVmFunction stop_vm;
    std::shared_ptr<const ContainerHooks> hooks;  // the OCI hooks run on the host, or null
    // The id the guest knows the container by: containerd's id, except for a container
    // restored from a checkpoint taken under another id (sandbox_restore.cc). Empty:
    // containerd's id.
    std::string guest_id;
    // The init already runs in the guest (a restored VM): Start asks the guest for
    // nothing, it only reports the start (README "Checkpoint and restore").
    bool init_running_in_guest = false;
  };

  // The guest created the init process of `request` with `guest_pid` (logged, never
  // reported): starts its IO relay and exit waiter and publishes /tasks/create.
  Container(ContainerKey key, std::shared_ptr<GuestClient> guest, EventSink& events,
            Options options, const task::CreateTaskRequest& request, uint32_t guest_pid);
  ~Container();
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;

  const ContainerKey& key() const { return key_; }
  const std::string& bundle() const { return bundle_; }
  // The id of the container in the guest (Options.guest_id).
  const std::string& guest_id() const { return guest_id_; }
  // The init's guest pid (untrusted, as the guest said) and stdio, for a checkpoint.
  uint32_t InitGuestPid();
  StdioPaths InitStdio();
  // The pid reported to containerd for every process of the container (the VMM's).
  uint32_t host_pid() const { return options_.host_pid; }
  const std::shared_ptr<const ContainerHooks>& hooks() const { return options_.hooks; }

  // Task API; exec_id empty = the init process.
  Result<uint32_t> Start(const std::string& exec_id);
  Status Exec(const task::ExecProcessRequest& request);
  Status Kill(const std::string& exec_id, uint32_t signal, bool all);
  Result<ExitInfo> Wait(const std::string& exec_id);
  Result<ProcessView> State(const std::string& exec_id);
  Result<std::vector<PidEntry>> Pids();  // see the top of this file
  // The guest's cgroup v2 figures of the container, checked, with the VM's cost on
  // the host (task_metrics.h): the Any Task.Stats answers.
  Result<google::protobuf::Any> Stats();
  Status CloseIo(const std::string& exec_id);
  Status ResizePty(const std::string& exec_id, uint32_t width, uint32_t height);
  Status Pause();
  Status Resume();
  // Deletes an exec process (Task.Delete with an exec id).
  Result<ExitInfo> DeleteExec(const std::string& exec_id);

  // Deleting the container, in two halves around the Sandbox's release of what it
  // holds: BeginDelete checks the init state and deletes the container in the guest;
  // FinishDelete stops every relay and waiter and publishes /tasks/delete.
  Result<ExitInfo> BeginDelete();
  void FinishDelete(const ExitInfo& exit);

  // Stops every relay and joins every waiter; the guest connection must be closed
  // first (Sandbox teardown), so that waiters blocked on the guest return. Every
  // Wait returns afterwards: a process whose exit was never reported is reported
  // killed (137).
  void Shutdown();

 private:
  // Pause or Resume: the state check, the VM or guest call, the state and the event.
  Status SetPaused(bool pause);
  struct Process {
    std::string exec_id;
    uint32_t guest_pid = 0;  // as the guest said: untrusted, only logged
    ProcessState state = ProcessState::kCreated;
    bool exit_reported = false;  // TaskExit published: Wait may return
    bool start_pending = false;  // Start is under way: its TaskStart goes before TaskExit
    ExitInfo exit;
    StdioPaths stdio;
    std::unique_ptr<IoRelay> io;
    std::thread waiter;
  };

  std::shared_ptr<Process> Find(const std::string& exec_id);                 // requires mutex_
  Result<std::shared_ptr<Process>> FindOrError(const std::string& exec_id);  // requires mutex_
  void StartWaiter(const std::shared_ptr<Process>& process);                 // requires mutex_
  void WatchExit(std::shared_ptr<Process> process);
  void StopProcess(Process& process);  // joins its waiter (once) and stops its relay
  // SIGKILL of the init: the guest's exit, or the VM stopped after kill_timeout.
  Status KillInit(const std::shared_ptr<Process>& init, const task::KillRequest& request);
  // Deadline of a call that does not start anything (kill, delete, resize).
  std::chrono::milliseconds ShortCallTimeout() const;

  const ContainerKey key_;
  const std::string bundle_;
  const std::string guest_id_;
  const std::shared_ptr<GuestClient> guest_;  // thread-safe; closed by the Sandbox
  EventSink& events_;                         // thread-safe
  const Options options_;

  mutable std::mutex mutex_;
  std::condition_variable exited_;         // with mutex_: a process's exit was reported
  std::condition_variable start_settled_;  // with mutex_: a start_pending was cleared
  // Guarded by mutex_: the map, and every Process field but `io` (thread-safe
  // itself) and `waiter` (joined only by whoever removed the process from the map,
  // or by Shutdown).
  std::map<std::string, std::shared_ptr<Process>> processes_;  // key: exec id ("" = init)
  bool deleted_ = false;                                       // guarded by mutex_
  std::unique_ptr<OomWatch> oom_watch_;                        // /tasks/oom; set in the constructor
};

}  // namespace beaconbox::shim
