#include "guest/vminitd/runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "common/base/errno_error.h"
#include "common/base/fd_passing.h"
#include "guest/vminitd/bundle_mounts.h"
#include "guest/vminitd/log.h"
#include "guest/vminitd/net_sysctl.h"
#include "guest/vminitd/reaper.h"
#include "guest/vminitd/system.h"
#include "guest/vminitd/validation.h"

namespace beaconbox::guest {
namespace {

constexpr size_t kMaxConfigJson = 4 << 20;
constexpr size_t kMaxMounts = 64;

int64_t NowRealtimeNs() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void SetTimestamp(int64_t ns, google::protobuf::Timestamp* ts) {
  ts->set_seconds(ns / 1000000000);
  ts->set_nanos(int32_t(ns % 1000000000));
}

std::string BundlePath(const std::string& id) { return std::string(kBundleRoot) + "/" + id; }
std::string StatePath(const std::string& id) { return std::string(kStateRoot) + "/" + id; }

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  if (s.size() > 400) s = "..." + s.substr(s.size() - 400);
  return s;
}

struct Pipe {
  UniqueFd read_end, write_end;
};

Result<Pipe> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoError("pipe", "");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Receives the pty master crun sends over --console-socket (SCM_RIGHTS); anything
// beyond the one descriptor is closed.
Result<UniqueFd> ReceiveConsole(int listen_fd) {
  UniqueFd conn(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  if (!conn) return ErrnoError("accept on console socket", "");
  char data[256];
  auto received = ReceiveWithFds(conn.get(), data, 1);
  if (!received.ok()) return received.error().Wrap("console socket");
  if (received->fds.empty()) {
    return MakeError(ErrorCode::kInternal, "crun sent no pty master on the console socket");
  }
  return std::move(received->fds.front());
}

// An overlay's relative paths resolved against the bundle (the storage plugin's
// read-only rootfs), its upper and work directories created.
Status PrepareOverlay(const std::string& bundle, std::vector<std::string>& options) {
  BBX_ASSIGN_OR_RETURN(OverlayMount overlay, ResolveOverlayOptions(bundle, options));
  for (const std::string& dir : overlay.directories) BBX_RETURN_IF_ERROR(MakeDirs(dir));
  options = std::move(overlay.options);
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------- bundles

Result<guestapi::CreateBundleResponse> Runtime::CreateBundle(
    const guestapi::CreateBundleRequest& req) {
  BBX_RETURN_IF_ERROR(ValidateId(req.container_id(), "container id"));
  if (req.config_json().size() > kMaxConfigJson) {
    return MakeError(ErrorCode::kInvalidArgument, "config.json larger than 4 MiB");
  }
  if (req.mounts_size() > int(kMaxMounts)) {
    return MakeError(ErrorCode::kInvalidArgument, "more than 64 mounts");
  }
  const std::string rootfs = req.rootfs().empty() ? "rootfs" : req.rootfs();
  BBX_RETURN_IF_ERROR(ValidateRelativePath(rootfs, "guest rootfs path"));
  // net.* sysctls are the VM's (its root namespace is the pod's network): vminitd
  // writes them, crun gets the spec without them (net_sysctl.h).
  std::string config_json = req.config_json();
  BBX_ASSIGN_OR_RETURN(std::vector<NetSysctl> net_sysctls, TakeNetSysctls(config_json));
  std::string bundle = BundlePath(req.container_id());
  {
    std::lock_guard lock(mu_);
    if (bundles_.count(req.container_id())) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "bundle " + req.container_id() + " already exists");
    }
    bundles_[req.container_id()] = true;
  }
  auto undo = [&](Error error) -> Error {
    (void)RemoveBundle([&] {
      guestapi::RemoveBundleRequest remove;
      remove.set_container_id(req.container_id());
      return remove;
    }());
    return error.Wrap("creating bundle " + req.container_id());
  };
  if (Status s = MakeDirs(bundle, 0711); !s.ok()) return undo(s.error());
  for (const guestapi::Mount& m : req.mounts()) {
    std::string target = m.target().empty() ? rootfs : m.target();
    if (!target.starts_with("/")) {
      if (Status s = ValidateRelativePath(target); !s.ok()) return undo(s.error());
      target = bundle + "/" + target;
    }
    std::vector<std::string> options(m.options().begin(), m.options().end());
    if (m.type() == "overlay") {
      if (Status s = PrepareOverlay(bundle, options); !s.ok()) return undo(s.error());
    }
    // A layer disk (storage-erofs) may still be probing when the bundle is made.
    auto source = ResolveDiskSource(m.source(), std::chrono::seconds(10));
    if (!source.ok()) return undo(source.error());
    LoopDevice loop;  // held open until mounted (autoclear)
    if (TakeLoopOption(options)) {
      // An image file in a share the bundle mounted before (storage-erofs, virtiofs
      // transport): its path is relative to the bundle.
      if (Status s = ValidateRelativePath(*source, "loop image"); !s.ok()) return undo(s.error());
      auto attached = AttachLoopDevice(bundle + "/" + *source);
      if (!attached.ok()) return undo(attached.error());
      loop = std::move(attached).value();
      source = loop.path;
    }
    Status mounted = MountOne(m.type(), *source, target, options);
    // A share hot-added to a VM restored from a template (plugins/vmm-qemu/template.h)
    // may still be probing: its tag appears within moments.
    for (int retry = 0; !mounted.ok() && m.type() == "virtiofs" && retry < 100; ++retry) {
      ::usleep(100 * 1000);
      mounted = MountOne(m.type(), *source, target, options);
    }
    if (!mounted.ok()) return undo(mounted.error());
  }
  if (Status s = ApplyNetSysctls(net_sysctls); !s.ok()) return undo(s.error());
  if (Status s = WriteFileAtomic(bundle + "/config.json", config_json); !s.ok()) {
    return undo(s.error());
  }
  guestapi::CreateBundleResponse resp;
  resp.set_bundle(bundle);
  return resp;
}

Status Runtime::RemoveBundle(const guestapi::RemoveBundleRequest& req) {
  BBX_RETURN_IF_ERROR(ValidateId(req.container_id(), "container id"));
  std::string bundle = BundlePath(req.container_id());
  // Unmount everything under the bundle, deepest first, before removing files.
  auto mounts = ReadSmallFile("/proc/self/mounts", 4 << 20);
  if (mounts.ok()) {
    std::vector<std::string> targets;
    size_t start = 0;
    while (start < mounts->size()) {
      size_t end = mounts->find('\n', start);
      if (end == std::string::npos) end = mounts->size();
      std::string line = mounts->substr(start, end - start);
      start = end + 1;
      size_t a = line.find(' ');
      size_t b = a == std::string::npos ? a : line.find(' ', a + 1);
      if (b == std::string::npos) continue;
      std::string target = line.substr(a + 1, b - a - 1);
      if (target.starts_with(bundle + "/")) targets.push_back(target);
    }
    std::sort(targets.begin(), targets.end(),
              [](const std::string& x, const std::string& y) { return x.size() > y.size(); });
    for (const std::string& target : targets) ::umount2(target.c_str(), MNT_DETACH);
  }
  Status removed = RemoveTree(bundle);
  {
    std::lock_guard lock(mu_);
    bundles_.erase(req.container_id());
  }
  return removed;
}

// ---------------------------------------------------------------- processes

Result<Runtime::Container*> Runtime::FindContainer(const std::string& id) {
  auto it = containers_.find(id);
  if (it == containers_.end())
    return MakeError(ErrorCode::kNotFound, "container " + id + " not found");
  return &it->second;
}

Result<std::shared_ptr<Runtime::Process>> Runtime::FindProcess(const std::string& id,
                                                               const std::string& exec_id) {
  BBX_ASSIGN_OR_RETURN(Container * container, FindContainer(id));
  if (exec_id.empty()) return container->init;
  auto it = container->execs.find(exec_id);
  if (it == container->execs.end()) {
    return MakeError(ErrorCode::kNotFound,
                     "exec " + exec_id + " of container " + id + " not found");
  }
  return it->second;
}

Result<std::string> Runtime::Crun(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/crun", "--root", kCrunRoot};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

Status Runtime::Launch(const std::string& id, Process& process,
                       const std::vector<std::string>& crun_args) {
  static std::atomic<unsigned> counter{0};
  std::string state_dir = StatePath(id);
  BBX_RETURN_IF_ERROR(MakeDirs(state_dir, 0700));
  std::string tag = process.exec_id.empty() ? "init" : "exec-" + process.exec_id;
  std::string pid_file = state_dir + "/" + tag + ".pid";
  std::string log_file = state_dir + "/" + tag + ".log";
  ::unlink(pid_file.c_str());
  ::unlink(log_file.c_str());

  std::vector<std::string> argv = {"/usr/bin/crun", "--root", kCrunRoot, "--log",
                                   "file:" + log_file};
  argv.insert(argv.end(), crun_args.begin(), crun_args.end());
  argv.push_back("--pid-file");
  argv.push_back(pid_file);

  SpawnStdio stdio;
  Pipe in, out, err;
  UniqueFd console_listener;
  std::string console_path;
  if (process.terminal) {
    console_path = state_dir + "/console-" + std::to_string(counter++) + ".sock";
    ::unlink(console_path.c_str());
    console_listener.Reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    if (console_path.size() >= sizeof(addr.sun_path)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "console socket path too long: " + console_path);
    }
    std::strcpy(addr.sun_path, console_path.c_str());
    if (!console_listener ||
        ::bind(console_listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(console_listener.get(), 1) != 0) {
      return ErrnoError("console socket", console_path);
    }
    argv.push_back("--console-socket");
    argv.push_back(console_path);
  } else {
    if (!process.stdin_name.empty()) {
      BBX_ASSIGN_OR_RETURN(in, MakePipe());
      stdio.stdin_fd = in.read_end.get();
    }
    if (!process.stdout_name.empty()) {
      BBX_ASSIGN_OR_RETURN(out, MakePipe());
      stdio.stdout_fd = out.write_end.get();
    }
    if (!process.stderr_name.empty()) {
      BBX_ASSIGN_OR_RETURN(err, MakePipe());
      stdio.stderr_fd = err.write_end.get();
    }
  }
  argv.push_back(id);

  BBX_ASSIGN_OR_RETURN(pid_t crun_pid, Spawn(argv, stdio));
  // Our copies of the child's ends go now, so that EOF follows the process's exit.
  in.read_end.Reset();
  out.write_end.Reset();
  err.write_end.Reset();
  int status = Reaper::Instance().WaitFor(crun_pid);
  if (console_path.size()) ::unlink(console_path.c_str());
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    auto log = ReadSmallFile(log_file, 64 * 1024);
    return MakeError(ErrorCode::kInternal,
                     "crun " + crun_args[0] + " failed (exit " +
                         std::to_string(ExitCodeFromWaitStatus(status)) +
                         "): " + (log.ok() && !log->empty() ? Trim(*log) : "no log"));
  }
  BBX_ASSIGN_OR_RETURN(std::string pid_text, ReadSmallFile(pid_file, 64));
  pid_t pid = ::atoi(pid_text.c_str());
  if (pid <= 0) return MakeError(ErrorCode::kInternal, "crun wrote no pid to " + pid_file);

  std::shared_ptr<StdioPipe> stdin_pipe, stdout_pipe, stderr_pipe;
  UniqueFd console;
  if (process.terminal) {
    BBX_ASSIGN_OR_RETURN(console, ReceiveConsole(console_listener.get()));
    stdout_pipe = std::make_shared<StdioPipe>(UniqueFd(::fcntl(console.get(), F_DUPFD_CLOEXEC, 0)));
    stdin_pipe = std::make_shared<StdioPipe>(UniqueFd(::fcntl(console.get(), F_DUPFD_CLOEXEC, 0)));
  } else {
    if (in.write_end) stdin_pipe = std::make_shared<StdioPipe>(std::move(in.write_end));
    if (out.read_end) stdout_pipe = std::make_shared<StdioPipe>(std::move(out.read_end));
    if (err.read_end) stderr_pipe = std::make_shared<StdioPipe>(std::move(err.read_end));
  }
  {
    std::lock_guard lock(mu_);
    process.pid = pid;
    process.console_fd = std::move(console);
    process.stdin_pipe = std::move(stdin_pipe);
    process.stdout_pipe = std::move(stdout_pipe);
    process.stderr_pipe = std::move(stderr_pipe);
    process.launched = true;
    process.stdio_ready.notify_all();
  }
  return Status::Ok();
}

void Runtime::WatchExit(const std::shared_ptr<Process>& process) {
  Reaper::Instance().Watch(process->pid, [this, process](int status) {
    std::lock_guard lock(mu_);
    process->exit_status = ExitCodeFromWaitStatus(status);
    process->exited_at_ns = NowRealtimeNs();
    process->phase = Phase::kStopped;
    process->exited.notify_all();
  });
}

Result<taskapi::CreateTaskResponse> Runtime::Create(const taskapi::CreateTaskRequest& req) {
  BBX_RETURN_IF_ERROR(ValidateId(req.id(), "container id"));
  if (!req.checkpoint().empty()) {
    return MakeError(ErrorCode::kNotImplemented,
                     "restoring from a checkpoint is not implemented in the guest");
  }
  if (req.bundle().empty() || req.bundle().size() > 4096) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "bundle path missing: call Guest.CreateBundle first");
  }
  auto process = std::make_shared<Process>();
  process->stdin_name = req.stdin();
  process->stdout_name = req.stdout();
  process->stderr_name = req.stderr();
  process->terminal = req.terminal();
  {
    std::lock_guard lock(mu_);
    if (containers_.count(req.id())) {
      return MakeError(ErrorCode::kAlreadyExists, "container " + req.id() + " already exists");
    }
    containers_[req.id()] = Container{req.id(), req.bundle(), process, {}, ""};
  }
  // The guest runs from an initramfs, which pivot_root cannot leave: crun moves the
  // root instead (--no-pivot). The VM, not the mount namespace, is the boundary.
  Status launched = Launch(req.id(), *process, {"create", "--bundle", req.bundle(), "--no-pivot"});
  if (!launched.ok()) {
    std::lock_guard lock(mu_);
    containers_.erase(req.id());
    return launched.error().Wrap("creating container " + req.id());
  }
  WatchExit(process);
  {
    // crun put the (still waiting) init in the container's cgroup: Stats and WaitOom read it.
    std::string cgroup_dir = CgroupDirOf(process->pid, req.id());
    std::lock_guard lock(mu_);
    if (auto container = FindContainer(req.id()); container.ok())
      (*container)->cgroup_dir = cgroup_dir;
  }
  Log("created container " + req.id() + " pid " + std::to_string(process->pid));
  taskapi::CreateTaskResponse resp;
  resp.set_pid(process->pid);
  return resp;
}

Result<taskapi::StartResponse> Runtime::Start(const taskapi::StartRequest& req) {
  std::shared_ptr<Process> process;
  {
    std::lock_guard lock(mu_);
    BBX_ASSIGN_OR_RETURN(process, FindProcess(req.id(), req.exec_id()));
    if (process->phase != Phase::kCreated || (req.exec_id().empty() && process->pid == 0)) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "process " + req.id() + "/" + req.exec_id() + " is not in created state");
    }
    if (!req.exec_id().empty() && process->pid != 0) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "exec " + req.exec_id() + " already started");
    }
  }
  if (req.exec_id().empty()) {
    BBX_RETURN_IF_ERROR(Crun({"start", req.id()}));
  } else {
    BBX_RETURN_IF_ERROR(
        Launch(req.id(), *process, {"exec", "--detach", "--process", process->process_spec_path}));
    WatchExit(process);
  }
  taskapi::StartResponse resp;
  std::lock_guard lock(mu_);
  if (process->phase == Phase::kCreated) process->phase = Phase::kRunning;
  resp.set_pid(process->pid);
  return resp;
}

Status Runtime::Exec(const taskapi::ExecProcessRequest& req) {
  BBX_RETURN_IF_ERROR(ValidateId(req.exec_id(), "exec id"));
  if (req.spec().value().size() > kMaxConfigJson) {
    return MakeError(ErrorCode::kInvalidArgument, "exec process spec larger than 4 MiB");
  }
  std::string spec_path = StatePath(req.id()) + "/exec-" + req.exec_id() + ".json";
  {
    std::lock_guard lock(mu_);
    BBX_ASSIGN_OR_RETURN(Container * container, FindContainer(req.id()));
    if (container->execs.count(req.exec_id())) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "exec " + req.exec_id() + " already exists in " + req.id());
    }
    auto process = std::make_shared<Process>();
    process->exec_id = req.exec_id();
    process->stdin_name = req.stdin();
    process->stdout_name = req.stdout();
    process->stderr_name = req.stderr();
    process->terminal = req.terminal();
    process->process_spec_path = spec_path;
    container->execs[req.exec_id()] = process;
  }
  Status written = MakeDirs(StatePath(req.id()), 0700);
  if (written.ok()) written = WriteFileAtomic(spec_path, req.spec().value(), 0600);
  if (!written.ok()) {
    std::lock_guard lock(mu_);
    if (auto container = FindContainer(req.id()); container.ok())
      (*container)->execs.erase(req.exec_id());
    return written.error().Wrap("exec " + req.exec_id());
  }
  return Status::Ok();
}

Status Runtime::Kill(const taskapi::KillRequest& req) {
  if (req.signal() == 0 || req.signal() > 64) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "signal " + std::to_string(req.signal()) + " out of range");
  }
  pid_t pid = 0;
  {
    std::lock_guard lock(mu_);
    BBX_ASSIGN_OR_RETURN(std::shared_ptr<Process> process, FindProcess(req.id(), req.exec_id()));
    if (process->phase == Phase::kStopped) {
      return MakeError(ErrorCode::kNotFound,
                       "process " + req.id() + "/" + req.exec_id() + " already exited");
    }
    pid = process->pid;
  }
  if (req.exec_id().empty() && req.all()) {
    BBX_RETURN_IF_ERROR(Crun({"kill", "--all", req.id(), std::to_string(req.signal())}));
    return Status::Ok();
  }
  if (pid <= 0) return MakeError(ErrorCode::kFailedPrecondition, "process has not started");
  if (::kill(pid, int(req.signal())) != 0) return ErrnoError("kill", std::to_string(pid));
  return Status::Ok();
}

Result<taskapi::WaitResponse> Runtime::Wait(const taskapi::WaitRequest& req) {
  std::unique_lock lock(mu_);
  BBX_ASSIGN_OR_RETURN(std::shared_ptr<Process> process, FindProcess(req.id(), req.exec_id()));
  process->exited.wait(lock, [&] { return process->phase == Phase::kStopped; });
  taskapi::WaitResponse resp;
  resp.set_exit_status(process->exit_status);
  SetTimestamp(process->exited_at_ns, resp.mutable_exited_at());
  return resp;
}

Result<taskapi::DeleteResponse> Runtime::Delete(const taskapi::DeleteRequest& req) {
  std::shared_ptr<Process> process;
  {
    std::lock_guard lock(mu_);
    BBX_ASSIGN_OR_RETURN(process, FindProcess(req.id(), req.exec_id()));
    // A created (never started) process may go: crun delete --force removes it.
    if (process->phase == Phase::kRunning || process->phase == Phase::kPaused) {
      return MakeError(ErrorCode::kFailedPrecondition, "process " + req.id() + "/" + req.exec_id() +
                                                           " is still running: kill it first");
    }
  }
  if (req.exec_id().empty()) {
    BBX_RETURN_IF_ERROR(Crun({"delete", "--force", req.id()}));
  }
  taskapi::DeleteResponse resp;
  std::lock_guard lock(mu_);
  resp.set_pid(process->pid);
  resp.set_exit_status(process->exit_status);
  SetTimestamp(process->exited_at_ns, resp.mutable_exited_at());
  // Pending ReadOutput/WriteInput calls end now, even when a background child
  // still holds the other end of a pipe.
  auto close_stdio = [](Process& p) {
    p.deleted = true;
    p.stdio_ready.notify_all();
    for (auto* pipe : {&p.stdin_pipe, &p.stdout_pipe, &p.stderr_pipe}) {
      if (*pipe) (*pipe)->Close();
    }
  };
  if (req.exec_id().empty()) {
    if (auto container = FindContainer(req.id()); container.ok()) {
      for (auto& [exec_id, exec] : (*container)->execs) close_stdio(*exec);
    }
    close_stdio(*process);
    containers_.erase(req.id());
    (void)RemoveTree(StatePath(req.id()));
  } else if (auto container = FindContainer(req.id()); container.ok()) {
    close_stdio(*process);
    (*container)->execs.erase(req.exec_id());
    ::unlink(process->process_spec_path.c_str());
  }
  return resp;
}

Result<taskapi::StateResponse> Runtime::State(const taskapi::StateRequest& req) {
  std::lock_guard lock(mu_);
  BBX_ASSIGN_OR_RETURN(Container * container, FindContainer(req.id()));
  BBX_ASSIGN_OR_RETURN(std::shared_ptr<Process> process, FindProcess(req.id(), req.exec_id()));
  taskapi::StateResponse resp;
  resp.set_id(req.id());
  resp.set_exec_id(req.exec_id());
  resp.set_bundle(container->bundle);
  resp.set_pid(process->pid);
  switch (process->phase) {
    case Phase::kCreated:
      resp.set_status(containerd::v1::types::CREATED);
      break;
    case Phase::kRunning:
      resp.set_status(containerd::v1::types::RUNNING);
      break;
    case Phase::kPaused:
      resp.set_status(containerd::v1::types::PAUSED);
      break;
    case Phase::kStopped:
      resp.set_status(containerd::v1::types::STOPPED);
      break;
  }
  resp.set_stdin(process->stdin_name);
  resp.set_stdout(process->stdout_name);
  resp.set_stderr(process->stderr_name);
  resp.set_terminal(process->terminal);
  resp.set_exit_status(process->exit_status);
  if (process->phase == Phase::kStopped)
    SetTimestamp(process->exited_at_ns, resp.mutable_exited_at());
  return resp;
}

Result<taskapi::PidsResponse> Runtime::Pids(const taskapi::PidsRequest& req) {
  {
    std::lock_guard lock(mu_);
    BBX_RETURN_IF_ERROR(FindContainer(req.id()));
  }
  BBX_ASSIGN_OR_RETURN(std::string output, Crun({"ps", "--format", "json", req.id()}));
  taskapi::PidsResponse resp;
  // `crun ps --format json` prints a JSON array of pids.
  size_t i = 0;
  while (i < output.size() && resp.processes_size() < 65536) {
    if (output[i] >= '0' && output[i] <= '9') {
      uint32_t pid = 0;
      while (i < output.size() && output[i] >= '0' && output[i] <= '9' && pid < 100000000) {
        pid = pid * 10 + uint32_t(output[i++] - '0');
      }
      resp.add_processes()->set_pid(pid);
    } else {
      ++i;
    }
  }
  return resp;
}

Status Runtime::CloseIO(const taskapi::CloseIORequest& req) {
  if (!req.stdin()) return Status::Ok();
  return CloseInput(req.id(), req.exec_id());
}

Status Runtime::CloseInput(const std::string& id, const std::string& exec_id) {
  std::shared_ptr<StdioPipe> pipe;
  {
    std::lock_guard lock(mu_);
    BBX_ASSIGN_OR_RETURN(std::shared_ptr<Process> process, FindProcess(id, exec_id));
    if (process->terminal) return Status::Ok();
    pipe = process->stdin_pipe;
  }
  // Outside mu_: Close waits for a pending WriteInput, which returns at once.
  if (pipe) pipe->Close();
  return Status::Ok();
}

Status Runtime::ResizePty(const taskapi::ResizePtyRequest& req) {
  std::lock_guard lock(mu_);
  BBX_ASSIGN_OR_RETURN(std::shared_ptr<Process> process, FindProcess(req.id(), req.exec_id()));
  if (!process->terminal || !process->console_fd) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "process " + req.id() + "/" + req.exec_id() + " has no terminal");
  }
  struct winsize size {};
  size.ws_col = static_cast<unsigned short>(std::min<uint32_t>(req.width(), 0xffff));
  size.ws_row = static_cast<unsigned short>(std::min<uint32_t>(req.height(), 0xffff));
  if (::ioctl(process->console_fd.get(), TIOCSWINSZ, &size) != 0)
    return ErrnoError("resize pty of", req.id());
  return Status::Ok();
}

Status Runtime::Pause(const std::string& id) {
  {
    std::lock_guard lock(mu_);
    BBX_RETURN_IF_ERROR(FindContainer(id));
  }
  BBX_RETURN_IF_ERROR(Crun({"pause", id}));
  std::lock_guard lock(mu_);
  if (auto c = FindContainer(id); c.ok() && (*c)->init->phase == Phase::kRunning)
    (*c)->init->phase = Phase::kPaused;
  return Status::Ok();
}

Status Runtime::Resume(const std::string& id) {
  {
    std::lock_guard lock(mu_);
    BBX_RETURN_IF_ERROR(FindContainer(id));
  }
  BBX_RETURN_IF_ERROR(Crun({"resume", id}));
  std::lock_guard lock(mu_);
  if (auto c = FindContainer(id); c.ok() && (*c)->init->phase == Phase::kPaused)
    (*c)->init->phase = Phase::kRunning;
  return Status::Ok();
}

Result<taskapi::ConnectResponse> Runtime::Connect(const taskapi::ConnectRequest& req) {
  std::lock_guard lock(mu_);
  taskapi::ConnectResponse resp;
  resp.set_shim_pid(uint32_t(::getpid()));
  resp.set_version(BEACONBOX_VERSION);
  if (auto c = FindContainer(req.id()); c.ok()) resp.set_task_pid((*c)->init->pid);
  return resp;
}

void Runtime::WaitLaunched(std::unique_lock<std::mutex>& lock, Process& process,
                           std::chrono::milliseconds wait) {
  process.stdio_ready.wait_for(lock, wait,
                               [&process] { return process.launched || process.deleted; });
}

Result<std::shared_ptr<StdioPipe>> Runtime::Output(const std::string& id,
                                                   const std::string& exec_id,
                                                   guestapi::Stream stream,
                                                   std::chrono::milliseconds wait) {
  if (stream != guestapi::STREAM_STDOUT && stream != guestapi::STREAM_STDERR) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "ReadOutput: stream must be STREAM_STDOUT or STREAM_STDERR");
  }
  std::unique_lock lock(mu_);
  BBX_ASSIGN_OR_RETURN(std::shared_ptr<Process> process, FindProcess(id, exec_id));
  WaitLaunched(lock, *process, wait);
  if (!process->launched && !process->deleted) return std::shared_ptr<StdioPipe>();
  auto pipe = stream == guestapi::STREAM_STDOUT ? process->stdout_pipe : process->stderr_pipe;
  if (!pipe) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "process " + id + "/" + exec_id + " has no such output (not requested)");
  }
  return pipe;
}

Result<std::shared_ptr<StdioPipe>> Runtime::Input(const std::string& id, const std::string& exec_id,
                                                  std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  BBX_ASSIGN_OR_RETURN(std::shared_ptr<Process> process, FindProcess(id, exec_id));
  WaitLaunched(lock, *process, wait);
  if (!process->launched && !process->deleted) return std::shared_ptr<StdioPipe>();
  if (!process->stdin_pipe) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "process " + id + "/" + exec_id + " has no stdin");
  }
  return process->stdin_pipe;
}

}  // namespace beaconbox::guest
