// One container in a sandbox's VM: its init process and its execs. Each process owns
// its IO relay and the thread that waits for its exit; every task event about the
// container (create, start, exec-added, exec-started, exit, paused, resumed, delete) is
// published from here. Each call first checks the process state as runc's shim does
// (process_state.h).
#pragma once

#include <google/protobuf/timestamp.pb.h>

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
#include "host/shim/process_state.h"
#include "host/shim/runtime_layout.h"

namespace beaconbox::shim {

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

google::protobuf::Timestamp Now();

class Container {
 public:
  // Pauses (true) or resumes (false) what runs the container: the VM when the
  // container is alone in it, else the container in the guest. Given by the Sandbox.
  using PauseFunction = std::function<Status(bool pause)>;

  // The guest created the init process of `request` with `init_pid`: starts its IO
  // relay and exit waiter and publishes /tasks/create.
  Container(ContainerKey key, std::shared_ptr<GuestClient> guest, EventSink& events,
            PauseFunction pause, const task::CreateTaskRequest& request, uint32_t init_pid);
  ~Container();
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;

  const ContainerKey& key() const { return key_; }
  const std::string& bundle() const { return bundle_; }
  uint32_t init_pid() const;

  // Task API; exec_id empty = the init process.
  Result<uint32_t> Start(const std::string& exec_id);
  Status Exec(const task::ExecProcessRequest& request);
  Status Kill(const std::string& exec_id, uint32_t signal, bool all);
  Result<ExitInfo> Wait(const std::string& exec_id);
  Result<ProcessView> State(const std::string& exec_id);
  Result<std::vector<uint32_t>> Pids();
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
  // first (Sandbox teardown), so that waiters blocked on the guest return.
  void Shutdown();

 private:
  // Pause or Resume: the state check, the VM or guest call, the state and the event.
  Status SetPaused(bool pause);
  struct Process {
    std::string exec_id;
    uint32_t pid = 0;
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

  const ContainerKey key_;
  const std::string bundle_;
  const std::shared_ptr<GuestClient> guest_;  // thread-safe; closed by the Sandbox
  EventSink& events_;                         // thread-safe
  const PauseFunction pause_;

  mutable std::mutex mutex_;
  std::condition_variable exited_;         // with mutex_: a process's exit was reported
  std::condition_variable start_settled_;  // with mutex_: a start_pending was cleared
  // Guarded by mutex_: the map, and every Process field but `io` (thread-safe
  // itself) and `waiter` (joined only by whoever removed the process from the map,
  // or by Shutdown).
  std::map<std::string, std::shared_ptr<Process>> processes_;  // key: exec id ("" = init)
  bool deleted_ = false;                                       // guarded by mutex_
};

}  // namespace beaconbox::shim
