#include "host/shim/container.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "host/shim/spec_adapter.h"

namespace beaconbox::shim {
namespace {

namespace events = ::containerd::events;
using namespace std::chrono_literals;

// After a process exits, how long its output may still drain before the exit is
// reported anyway (a background child can hold the pipe open forever).
constexpr auto kOutputDrainTimeout = 2s;
constexpr auto kGuestCallTimeout = 10s;

Error NoSuchProcess(const std::string& exec_id) {
  return MakeError(ErrorCode::kNotFound, exec_id.empty()
                                             ? "container has no init process"
                                             : "process " + exec_id + " does not exist");
}

}  // namespace

google::protobuf::Timestamp Now() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(std::chrono::duration_cast<std::chrono::seconds>(now).count());
  timestamp.set_nanos(static_cast<int32_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now).count() % 1000000000));
  return timestamp;
}

Container::Container(ContainerKey key, std::shared_ptr<GuestClient> guest, EventSink& events,
                     PauseFunction pause, const task::CreateTaskRequest& request, uint32_t init_pid)
    : key_(std::move(key)),
      bundle_(request.bundle()),
      guest_(std::move(guest)),
      events_(events),
      pause_(std::move(pause)) {
  auto init = std::make_shared<Process>();
  init->pid = init_pid;
  init->stdio = {request.stdin(), request.stdout(), request.stderr(), request.terminal()};
  init->io = std::make_unique<IoRelay>(*guest_, key_.id, "", init->stdio);
  init->io->Start();
  {
    std::lock_guard lock(mutex_);
    processes_[""] = init;
    // The init process exists in the guest from Create on: a kill before Start must
    // end it and make Wait return, as with runc.
    StartWaiter(init);
  }
  events::TaskCreate event;
  event.set_container_id(key_.id);
  event.set_bundle(request.bundle());
  for (const auto& mount : request.rootfs()) *event.add_rootfs() = mount;
  event.mutable_io()->set_stdin(request.stdin());
  event.mutable_io()->set_stdout(request.stdout());
  event.mutable_io()->set_stderr(request.stderr());
  event.mutable_io()->set_terminal(request.terminal());
  event.set_pid(init_pid);
  events_.Publish("/tasks/create", event);
}

Container::~Container() { Shutdown(); }

std::shared_ptr<Container::Process> Container::Find(const std::string& exec_id) {
  auto it = processes_.find(exec_id);
  return it == processes_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<Container::Process>> Container::FindOrError(const std::string& exec_id) {
  if (deleted_) return MakeError(ErrorCode::kNotFound, "container " + key_.id + " was deleted");
  auto process = Find(exec_id);
  if (!process) return NoSuchProcess(exec_id);
  return process;
}

uint32_t Container::init_pid() const {
  std::lock_guard lock(mutex_);
  auto it = processes_.find("");
  return it == processes_.end() ? 0 : it->second->pid;
}

void Container::StartWaiter(const std::shared_ptr<Process>& process) {
  process->waiter = std::thread([this, process] { WatchExit(process); });
}

void Container::WatchExit(std::shared_ptr<Process> process) {
  task::WaitRequest request;
  request.set_id(key_.id);
  request.set_exec_id(process->exec_id);
  task::WaitResponse response;
  Status status = guest_->CallTask("Wait", request, &response);
  ExitInfo exit;
  if (status.ok()) {
    exit.exit_status = response.exit_status();
    exit.exited_at = response.has_exited_at() ? response.exited_at() : Now();
  } else {
    // The VM or its agent is gone: the process is gone with it.
    spdlog::warn("waiting for process '{}' of {}: {}", process->exec_id, key_.ToString(),
                 status.error().message);
    exit.exit_status = 128 + SIGKILL;
    exit.exited_at = Now();
  }
  // Report the exit only once its output reached containerd, as runc's shim does.
  if (process->io && !process->io->WaitOutputDrained(kOutputDrainTimeout)) {
    spdlog::warn("process '{}' of {} exited but its output is still open", process->exec_id,
                 key_.ToString());
  }
  {
    std::unique_lock lock(mutex_);
    exit.pid = process->pid;
    process->exit = exit;
    process->state = ProcessState::kStopped;
    // A process that exits while it is being started (/bin/true) is reported after
    // its TaskStart, as runc's shim orders them: containerd expects start, then exit.
    start_settled_.wait(lock, [&] { return !process->start_pending; });
  }
  events::TaskExit event;
  event.set_container_id(key_.id);
  event.set_id(process->exec_id.empty() ? key_.id : process->exec_id);
  event.set_pid(exit.pid);
  event.set_exit_status(exit.exit_status);
  *event.mutable_exited_at() = exit.exited_at;
  events_.Publish("/tasks/exit", event);
  {
    std::lock_guard lock(mutex_);
    process->exit_reported = true;
  }
  exited_.notify_all();
}

Result<uint32_t> Container::Start(const std::string& exec_id) {
  std::shared_ptr<Process> process;
  {
    std::lock_guard lock(mutex_);
    BBX_ASSIGN_OR_RETURN(process, FindOrError(exec_id));
    BBX_RETURN_IF_ERROR(CheckProcessOp(process->state, ProcessOp::kStart, exec_id.empty()));
    process->start_pending = true;
  }
  // Lets the exit waiter publish, once the start event went out or the start failed.
  auto settle = [&] {
    {
      std::lock_guard lock(mutex_);
      process->start_pending = false;
    }
    start_settled_.notify_all();
  };
  task::StartRequest request;
  request.set_id(key_.id);
  request.set_exec_id(exec_id);
  task::StartResponse response;
  if (Status started = guest_->CallTask("Start", request, &response); !started.ok()) {
    settle();
    return started.error();
  }
  uint32_t pid = 0;
  {
    std::lock_guard lock(mutex_);
    if (response.pid() != 0) process->pid = response.pid();
    // The process may already have exited (and been reported) before this point.
    if (process->state == ProcessState::kCreated) process->state = ProcessState::kRunning;
    if (!exec_id.empty()) StartWaiter(process);
    pid = process->pid;
  }
  if (exec_id.empty()) {
    events::TaskStart event;
    event.set_container_id(key_.id);
    event.set_pid(pid);
    events_.Publish("/tasks/start", event);
  } else {
    events::TaskExecStarted event;
    event.set_container_id(key_.id);
    event.set_exec_id(exec_id);
    event.set_pid(pid);
    events_.Publish("/tasks/exec-started", event);
  }
  settle();
  return pid;
}

Status Container::Exec(const task::ExecProcessRequest& request) {
  {
    std::lock_guard lock(mutex_);
    BBX_ASSIGN_OR_RETURN(auto init, FindOrError(""));
    BBX_RETURN_IF_ERROR(CheckProcessOp(init->state, ProcessOp::kExec, /*init=*/true));
    if (request.exec_id().empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "exec id is empty");
    }
    if (Find(request.exec_id())) {
      return MakeError(ErrorCode::kAlreadyExists, "id " + request.exec_id() + ": already exists");
    }
  }
  BBX_ASSIGN_OR_RETURN(std::string process_json, AdaptProcessForGuest(request.spec().value()));
  task::ExecProcessRequest guest_request;
  guest_request.set_id(key_.id);
  guest_request.set_exec_id(request.exec_id());
  guest_request.set_terminal(request.terminal());
  // In the guest these only say which streams exist; the data flows over the
  // ReadOutput/WriteInput streams.
  guest_request.set_stdin(request.stdin().empty() ? "" : "stdin");
  guest_request.set_stdout(request.stdout().empty() ? "" : "stdout");
  guest_request.set_stderr(request.stderr().empty() ? "" : "stderr");
  guest_request.mutable_spec()->set_type_url(request.spec().type_url());
  guest_request.mutable_spec()->set_value(process_json);
  google::protobuf::Empty empty;
  BBX_RETURN_IF_ERROR(guest_->CallTask("Exec", guest_request, &empty));
  auto process = std::make_shared<Process>();
  process->exec_id = request.exec_id();
  process->stdio = {request.stdin(), request.stdout(), request.stderr(), request.terminal()};
  process->io = std::make_unique<IoRelay>(*guest_, key_.id, request.exec_id(), process->stdio);
  process->io->Start();
  {
    std::lock_guard lock(mutex_);
    processes_[request.exec_id()] = std::move(process);
  }
  events::TaskExecAdded event;
  event.set_container_id(key_.id);
  event.set_exec_id(request.exec_id());
  events_.Publish("/tasks/exec-added", event);
  return Status::Ok();
}

Status Container::Kill(const std::string& exec_id, uint32_t signal, bool all) {
  {
    std::lock_guard lock(mutex_);
    BBX_ASSIGN_OR_RETURN(auto process, FindOrError(exec_id));
    BBX_RETURN_IF_ERROR(CheckProcessOp(process->state, ProcessOp::kKill, exec_id.empty()));
  }
  task::KillRequest request;
  request.set_id(key_.id);
  request.set_exec_id(exec_id);
  request.set_signal(signal);
  request.set_all(all);
  google::protobuf::Empty empty;
  return guest_->CallTask("Kill", request, &empty, kGuestCallTimeout);
}

Result<ExitInfo> Container::Wait(const std::string& exec_id) {
  std::unique_lock lock(mutex_);
  BBX_ASSIGN_OR_RETURN(auto process, FindOrError(exec_id));
  exited_.wait(lock, [&process] { return process->exit_reported; });
  return process->exit;
}

Result<ProcessView> Container::State(const std::string& exec_id) {
  std::lock_guard lock(mutex_);
  BBX_ASSIGN_OR_RETURN(auto process, FindOrError(exec_id));
  return ProcessView{process->pid, process->state, process->exit.exit_status,
                     process->exit.exited_at, process->stdio};
}

Result<std::vector<uint32_t>> Container::Pids() {
  {
    std::lock_guard lock(mutex_);
    BBX_RETURN_IF_ERROR(FindOrError(""));
  }
  task::PidsRequest request;
  request.set_id(key_.id);
  task::PidsResponse response;
  BBX_RETURN_IF_ERROR(guest_->CallTask("Pids", request, &response, kGuestCallTimeout));
  std::vector<uint32_t> pids;
  for (const auto& info : response.processes()) pids.push_back(info.pid());
  return pids;
}

Status Container::CloseIo(const std::string& exec_id) {
  std::lock_guard lock(mutex_);
  BBX_ASSIGN_OR_RETURN(auto process, FindOrError(exec_id));
  process->io->CloseStdin();
  return Status::Ok();
}

Status Container::ResizePty(const std::string& exec_id, uint32_t width, uint32_t height) {
  {
    std::lock_guard lock(mutex_);
    BBX_ASSIGN_OR_RETURN(auto process, FindOrError(exec_id));
    BBX_RETURN_IF_ERROR(CheckProcessOp(process->state, ProcessOp::kResizePty, exec_id.empty()));
  }
  task::ResizePtyRequest request;
  request.set_id(key_.id);
  request.set_exec_id(exec_id);
  request.set_width(width);
  request.set_height(height);
  google::protobuf::Empty empty;
  return guest_->CallTask("ResizePty", request, &empty, kGuestCallTimeout);
}

Status Container::Pause() { return SetPaused(true); }

Status Container::Resume() { return SetPaused(false); }

Status Container::SetPaused(bool pause) {
  const ProcessState from = pause ? ProcessState::kRunning : ProcessState::kPaused;
  const ProcessState to = pause ? ProcessState::kPaused : ProcessState::kRunning;
  {
    std::lock_guard lock(mutex_);
    BBX_ASSIGN_OR_RETURN(auto init, FindOrError(""));
    BBX_RETURN_IF_ERROR(CheckProcessOp(init->state, pause ? ProcessOp::kPause : ProcessOp::kResume,
                                       /*init=*/true));
  }
  BBX_RETURN_IF_ERROR(pause_(pause));
  {
    std::lock_guard lock(mutex_);
    if (auto init = Find(""); init && init->state == from) init->state = to;
  }
  if (pause) {
    events::TaskPaused event;
    event.set_container_id(key_.id);
    events_.Publish("/tasks/paused", event);
  } else {
    events::TaskResumed event;
    event.set_container_id(key_.id);
    events_.Publish("/tasks/resumed", event);
  }
  return Status::Ok();
}

void Container::StopProcess(Process& process) {
  std::thread waiter;
  {
    std::lock_guard lock(mutex_);
    waiter.swap(process.waiter);  // only one caller joins it
  }
  if (waiter.joinable()) waiter.join();
  if (process.io) process.io->Stop();
}

Result<ExitInfo> Container::DeleteExec(const std::string& exec_id) {
  std::shared_ptr<Process> process;
  ExitInfo exit;
  {
    std::lock_guard lock(mutex_);
    BBX_ASSIGN_OR_RETURN(process, FindOrError(exec_id));
    BBX_RETURN_IF_ERROR(CheckProcessOp(process->state, ProcessOp::kDelete, /*init=*/false));
    processes_.erase(exec_id);
  }
  StopProcess(*process);
  task::DeleteRequest request;
  request.set_id(key_.id);
  request.set_exec_id(exec_id);
  task::DeleteResponse response;
  if (Status deleted = guest_->CallTask("Delete", request, &response, kGuestCallTimeout);
      !deleted.ok()) {
    spdlog::warn("deleting exec {} of {} in the guest: {}", exec_id, key_.ToString(),
                 deleted.error().message);
  }
  {
    std::lock_guard lock(mutex_);
    exit = process->exit;
    if (process->state == ProcessState::kCreated) {
      // Never started, so no waiter: release whoever waits for it.
      exit.exited_at = Now();
      process->exit = exit;
      process->state = ProcessState::kStopped;
      process->exit_reported = true;
    }
  }
  exited_.notify_all();
  return exit;
}

Result<ExitInfo> Container::BeginDelete() {
  ExitInfo exit;
  {
    std::lock_guard lock(mutex_);
    BBX_ASSIGN_OR_RETURN(auto init, FindOrError(""));
    BBX_RETURN_IF_ERROR(CheckProcessOp(init->state, ProcessOp::kDelete, /*init=*/true));
    exit = init->exit;
    exit.pid = init->pid;
    if (init->state == ProcessState::kCreated) exit.exited_at = Now();
    deleted_ = true;
  }
  // crun delete --force in the guest also ends a created (never started) init.
  task::DeleteRequest request;
  request.set_id(key_.id);
  task::DeleteResponse response;
  if (Status deleted = guest_->CallTask("Delete", request, &response, kGuestCallTimeout);
      !deleted.ok()) {
    spdlog::warn("deleting {} in the guest: {}", key_.ToString(), deleted.error().message);
  }
  return exit;
}

void Container::FinishDelete(const ExitInfo& exit) {
  Shutdown();
  events::TaskDelete event;
  event.set_container_id(key_.id);
  event.set_pid(exit.pid);
  event.set_exit_status(exit.exit_status);
  *event.mutable_exited_at() = exit.exited_at;
  events_.Publish("/tasks/delete", event);
}

void Container::Shutdown() {
  std::vector<std::shared_ptr<Process>> processes;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, process] : processes_) processes.push_back(process);
  }
  for (auto& process : processes) StopProcess(*process);
}

}  // namespace beaconbox::shim
