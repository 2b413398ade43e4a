#include "host/shim/container.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>

#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "host/shim/spec_adapter.h"
#include "host/shim/task_metrics.h"

namespace beaconbox::shim {
namespace {

namespace events = ::containerd::events;
using namespace std::chrono_literals;

// After a process exits, how long its output may still drain before the exit is
// reported anyway (a background child can hold the pipe open forever).
constexpr auto kOutputDrainTimeout = 2s;
// Deadline of the calls that only act on what exists (kill, delete, resize), when
// vm.guest_call_timeout_ms is longer.
constexpr auto kShortCallTimeout = 10s;
// After the VM was stopped, how long Kill waits for the exit waiter to report: its
// guest call fails at once, then the output drains for at most kOutputDrainTimeout.
constexpr auto kReportAfterStopTimeout = kOutputDrainTimeout + 5s;
// The largest pid a Linux guest can have (PID_MAX_LIMIT); anything above is bogus.
constexpr uint32_t kMaxGuestPid = 4194304;
// The latest time a protobuf Timestamp may hold (9999-12-31T23:59:59Z).
constexpr int64_t kMaxTimestampSeconds = 253402300799;

// An exit status from the guest: a process's is 0..255 (128+signal included).
uint32_t ExitStatusFromGuest(uint32_t status, const std::string& who) {
  if (status <= 255) return status;
  spdlog::warn("{}: the guest reported exit status {}: reported as 255", who, status);
  return 255;
}

// An exit time from the guest, or now when it is not a valid Timestamp (containerd
// refuses those) or was not given.
google::protobuf::Timestamp ExitTimeFromGuest(const task::WaitResponse& response) {
  if (!response.has_exited_at()) return Now();
  const auto& at = response.exited_at();
  if (at.seconds() < 0 || at.seconds() > kMaxTimestampSeconds || at.nanos() < 0 ||
      at.nanos() > 999999999) {
    return Now();
  }
  return at;
}

std::string Shorten(const std::string& text) {
  return text.size() <= 256 ? text : text.substr(0, 256) + "...";
}

std::string FileKind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISLNK(mode)) return "a symlink";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a FIFO";
}

Status CheckStdioFifo(const char* stream, const std::string& path) {
  if (path.empty()) return Status::Ok();
  if (path.find("://") != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(stream) + " is the log URI " + Shorten(path) +
                         ": beaconbox relays stdio through containerd's FIFOs only; run the "
                         "task without a log URI (ctr --log-uri)");
  }
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    return MakeError(ErrorCode::kInvalidArgument, std::string(stream) + " FIFO " + Shorten(path) +
                                                      ": " + std::strerror(errno) +
                                                      ": containerd creates it; start the task "
                                                      "through containerd");
  }
  if (!S_ISFIFO(info.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(stream) + " path " + Shorten(path) + " is " +
                         FileKind(info.st_mode) +
                         ", not a FIFO: beaconbox opens only containerd's stdio FIFOs");
  }
  return Status::Ok();
}

Error NoSuchProcess(const std::string& exec_id) {
  return MakeError(ErrorCode::kNotFound, exec_id.empty()
                                             ? "container has no init process"
                                             : "process " + exec_id + " does not exist");
}

}  // namespace

Status CheckStdioFifos(const std::string& stdin_path, const std::string& stdout_path,
                       const std::string& stderr_path) {
  BBX_RETURN_IF_ERROR(CheckStdioFifo("stdin", stdin_path));
  BBX_RETURN_IF_ERROR(CheckStdioFifo("stdout", stdout_path));
  return CheckStdioFifo("stderr", stderr_path);
}

google::protobuf::Timestamp Now() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(std::chrono::duration_cast<std::chrono::seconds>(now).count());
  timestamp.set_nanos(static_cast<int32_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now).count() % 1000000000));
  return timestamp;
}

Container::Container(ContainerKey key, std::shared_ptr<GuestClient> guest, EventSink& events,
                     Options options, const task::CreateTaskRequest& request, uint32_t guest_pid)
    : key_(std::move(key)),
      bundle_(request.bundle()),
      guest_id_(options.guest_id.empty() ? key_.id : options.guest_id),
      guest_(std::move(guest)),
      events_(events),
      options_(std::move(options)) {
  auto init = std::make_shared<Process>();
  init->guest_pid = guest_pid;
  init->stdio = {request.stdin(), request.stdout(), request.stderr(), request.terminal()};
  init->io = std::make_unique<IoRelay>(*guest_, guest_id_, "", init->stdio);
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
  event.set_pid(options_.host_pid);
  events_.Publish("/tasks/create", event);
  oom_watch_ = std::make_unique<OomWatch>(*guest_, guest_id_, events_, ShortCallTimeout());
  oom_watch_->Start();
}

Container::~Container() { Shutdown(); }

uint32_t Container::InitGuestPid() {
  std::lock_guard lock(mutex_);
  auto init = Find("");
  return init ? init->guest_pid : 0;
}

StdioPaths Container::InitStdio() {
  std::lock_guard lock(mutex_);
  auto init = Find("");
  return init ? init->stdio : StdioPaths{};
}

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

std::chrono::milliseconds Container::ShortCallTimeout() const {
  return std::min<std::chrono::milliseconds>(options_.guest_call_timeout, kShortCallTimeout);
}

void Container::StartWaiter(const std::shared_ptr<Process>& process) {
  process->waiter = std::thread([this, process] { WatchExit(process); });
}

void Container::WatchExit(std::shared_ptr<Process> process) {
  task::WaitRequest request;
  request.set_id(guest_id_);
  request.set_exec_id(process->exec_id);
  task::WaitResponse response;
  // The one guest call without a deadline: a process may run for years. Closing the
  // guest connection (teardown, the VM stopped) ends it.
  Status status = guest_->CallTask("Wait", request, &response);
  ExitInfo exit;
  exit.pid = options_.host_pid;
  if (status.ok()) {
    exit.exit_status = ExitStatusFromGuest(response.exit_status(),
                                           key_.ToString() + " process '" + process->exec_id + "'");
    exit.exited_at = ExitTimeFromGuest(response);
  } else {
    // The VM or its agent is gone: the process is gone with it.
    spdlog::warn("waiting for process '{}' of {}: {}", process->exec_id, key_.ToString(),
                 status.error().message);
    exit.exit_status = 128 + SIGKILL;
    exit.exited_at = Now();
  }
  // An OOM kill that ended the process is published before its exit, as runc's shim does.
  if (status.ok() && oom_watch_) oom_watch_->Sync();
  // Report the exit only once its output reached containerd, as runc's shim does.
  if (process->io && !process->io->WaitOutputDrained(kOutputDrainTimeout)) {
    spdlog::warn("process '{}' of {} exited but its output is still open", process->exec_id,
                 key_.ToString());
  }
  {
    std::unique_lock lock(mutex_);
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
  request.set_id(guest_id_);
  request.set_exec_id(exec_id);
  task::StartResponse response;
  // A restored init runs in the guest since the VM was loaded: nothing to start.
  const bool already_running = exec_id.empty() && options_.init_running_in_guest;
  if (Status started = already_running ? Status::Ok()
                                       : guest_->CallTask("Start", request, &response,
                                                          options_.guest_call_timeout);
      !started.ok()) {
    if (!exec_id.empty()) {
      // An exec that did not start has no exit waiter: Wait returns now (as with
      // runc's shim), with 255 since the process never ran; Delete then removes it.
      {
        std::lock_guard lock(mutex_);
        process->state = ProcessState::kStopped;
        process->exit = ExitInfo{options_.host_pid, 255, Now()};
        process->exit_reported = true;
      }
      exited_.notify_all();
      // Its relay would wait for output that never comes (the guest's stdio waits for
      // a Start): stopping it closes the FIFOs, so `ctr task exec` returns the error.
      if (process->io) process->io->Stop();
    }
    settle();
    return started.error();
  }
  const uint32_t pid = options_.host_pid;
  {
    std::lock_guard lock(mutex_);
    if (response.pid() != 0 && response.pid() <= kMaxGuestPid) process->guest_pid = response.pid();
    // The process may already have exited (and been reported) before this point.
    if (process->state == ProcessState::kCreated) process->state = ProcessState::kRunning;
    if (!exec_id.empty()) StartWaiter(process);
    spdlog::debug("{} process '{}' started: pid {} in the guest", key_.ToString(), exec_id,
                  process->guest_pid);
  }
  if (exec_id.empty()) {
    // runc runs the poststart hooks in `runc start`, before its shim reports the start.
    if (options_.hooks) options_.hooks->RunPoststart(pid);
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
  BBX_RETURN_IF_ERROR(CheckStdioFifos(request.stdin(), request.stdout(), request.stderr()));
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
  guest_request.set_id(guest_id_);
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
  BBX_RETURN_IF_ERROR(guest_->CallTask("Exec", guest_request, &empty, options_.guest_call_timeout));
  auto process = std::make_shared<Process>();
  process->exec_id = request.exec_id();
  process->stdio = {request.stdin(), request.stdout(), request.stderr(), request.terminal()};
  process->io = std::make_unique<IoRelay>(*guest_, guest_id_, request.exec_id(), process->stdio);
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
  std::shared_ptr<Process> process;
  {
    std::lock_guard lock(mutex_);
    BBX_ASSIGN_OR_RETURN(process, FindOrError(exec_id));
    BBX_RETURN_IF_ERROR(CheckProcessOp(process->state, ProcessOp::kKill, exec_id.empty()));
  }
  task::KillRequest request;
  request.set_id(guest_id_);
  request.set_exec_id(exec_id);
  request.set_signal(signal);
  request.set_all(all);
  if (exec_id.empty() && signal == SIGKILL) return KillInit(process, request);
  google::protobuf::Empty empty;
  return guest_->CallTask("Kill", request, &empty, ShortCallTimeout());
}

Status Container::KillInit(const std::shared_ptr<Process>& init, const task::KillRequest& request) {
  // The host has the last word on SIGKILL: the guest gets kill_timeout to report the
  // exit, whatever it answers to Kill; then the VM goes, and the exit waiter, its
  // Wait failed with the connection, reports 137 as runc does for a killed task.
  const auto deadline = std::chrono::steady_clock::now() + options_.kill_timeout;
  google::protobuf::Empty empty;
  if (Status sent = guest_->CallTask("Kill", request, &empty, options_.kill_timeout); !sent.ok()) {
    spdlog::warn("SIGKILL of {} in the guest: {}", key_.ToString(), sent.error().message);
  }
  {
    std::unique_lock lock(mutex_);
    if (exited_.wait_until(lock, deadline, [&init] { return init->exit_reported; })) {
      return Status::Ok();
    }
  }
  options_.stop_vm("the guest did not report the exit of " + key_.ToString() + " within " +
                   std::to_string(options_.kill_timeout.count()) +
                   " ms of SIGKILL (config key vm.kill_timeout_ms)");
  std::unique_lock lock(mutex_);
  if (!exited_.wait_for(lock, kReportAfterStopTimeout, [&init] { return init->exit_reported; })) {
    return MakeError(ErrorCode::kTimeout, "the VM of " + key_.ToString() +
                                              " was stopped but its exit is not reported yet: "
                                              "wait for the task's exit event");
  }
  return Status::Ok();
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
  return ProcessView{options_.host_pid, process->state, process->exit.exit_status,
                     process->exit.exited_at, process->stdio};
}

Result<std::vector<PidEntry>> Container::Pids() {
  std::lock_guard lock(mutex_);
  BBX_RETURN_IF_ERROR(FindOrError(""));
  // No guest call: its pids mean nothing on the host (see container.h). The init
  // process is listed from Create (crun's init waits in the container), an exec once
  // started, each until it exits: the processes runc's shim finds in the cgroup.
  std::vector<PidEntry> entries;
  for (const auto& [exec_id, process] : processes_) {
    const bool live = exec_id.empty() ? process->state != ProcessState::kStopped
                                      : process->state == ProcessState::kRunning ||
                                            process->state == ProcessState::kPaused;
    if (live) entries.push_back(PidEntry{options_.host_pid, exec_id});
  }
  return entries;
}

Result<google::protobuf::Any> Container::Stats() {
  {
    std::lock_guard lock(mutex_);
    BBX_RETURN_IF_ERROR(FindOrError(""));
  }
  task::StatsRequest request;
  request.set_id(guest_id_);
  task::StatsResponse response;
  BBX_RETURN_IF_ERROR(guest_->CallTask("Stats", request, &response, ShortCallTimeout()));
  std::optional<VmCost> vm_cost;
  if (auto cost = ReadVmCost(static_cast<pid_t>(options_.host_pid)); cost.ok()) {
    vm_cost = *cost;
  } else {
    spdlog::debug("{}: no VM cost in the metrics: {}", key_.ToString(), cost.error().message);
  }
  return MetricsFromGuest(response.stats(), vm_cost);
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
    // runc's shim: a process without a console has nothing to resize, and says so
    // with success (containerd resizes every process it attaches a window to).
    if (!process->stdio.terminal) return Status::Ok();
    BBX_RETURN_IF_ERROR(CheckProcessOp(process->state, ProcessOp::kResizePty, exec_id.empty()));
  }
  task::ResizePtyRequest request;
  request.set_id(guest_id_);
  request.set_exec_id(exec_id);
  request.set_width(width);
  request.set_height(height);
  google::protobuf::Empty empty;
  return guest_->CallTask("ResizePty", request, &empty, ShortCallTimeout());
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
  BBX_RETURN_IF_ERROR(options_.pause(pause));
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
  request.set_id(guest_id_);
  request.set_exec_id(exec_id);
  task::DeleteResponse response;
  if (Status deleted = guest_->CallTask("Delete", request, &response, ShortCallTimeout());
      !deleted.ok()) {
    spdlog::warn("deleting exec {} of {} in the guest: {}", exec_id, key_.ToString(),
                 deleted.error().message);
  }
  {
    std::lock_guard lock(mutex_);
    exit = process->exit;
    exit.pid = options_.host_pid;
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
    exit.pid = options_.host_pid;
    if (init->state == ProcessState::kCreated) exit.exited_at = Now();
    deleted_ = true;
  }
  // crun delete --force in the guest also ends a created (never started) init.
  task::DeleteRequest request;
  request.set_id(guest_id_);
  task::DeleteResponse response;
  if (Status deleted = guest_->CallTask("Delete", request, &response, ShortCallTimeout());
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
  if (oom_watch_) oom_watch_->Stop();
  // Every waiter is joined: a process still unreported never will be (its exec never
  // started, or the guest went away mid-report). Its Wait returns now, as killed,
  // instead of holding a ttrpc handler forever.
  {
    std::lock_guard lock(mutex_);
    for (auto& process : processes) {
      if (process->exit_reported) continue;
      process->state = ProcessState::kStopped;
      process->exit = ExitInfo{options_.host_pid, 128 + SIGKILL, Now()};
      process->exit_reported = true;
    }
  }
  exited_.notify_all();
}

}  // namespace beaconbox::shim
