#include "plugins/common/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <future>

#include "common/base/errno_error.h"
#include "common/base/unique_fd.h"

namespace beaconbox::plugins {

using namespace std::chrono_literals;

namespace {

// mount_setattr(2)'s argument (linux/mount.h, which clashes with sys/mount.h).
struct MountAttributes {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};
constexpr uint64_t kMountAttrReadOnly = 0x00000001;  // MOUNT_ATTR_RDONLY
constexpr unsigned kAtRecursive = 0x8000;            // AT_RECURSIVE

}  // namespace

int MakeReadOnlyRecursively(const char* dir) {
  MountAttributes attributes{kMountAttrReadOnly, 0, 0, 0};
  if (::syscall(SYS_mount_setattr, AT_FDCWD, dir, kAtRecursive, &attributes, sizeof(attributes)) ==
      0) {
    return 0;
  }
  if (errno != ENOSYS) return -1;
  // Kernels before 5.12: the top mount only (Debian 12's 6.1 has mount_setattr).
  return ::mount(nullptr, dir, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr);
}

namespace {

// Runs in the forked child: only async-signal-safe calls until exec.
[[noreturn]] void ExecChild(char* const* args, int log_fd, int null_fd, pid_t parent,
                            const char* read_only_dir, const int* inherit_fds,
                            size_t inherit_count) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) _exit(126);  // the owner died before the signal was armed
  if (read_only_dir != nullptr) {
    // virtiofsd (the C one in QEMU 7.2) has no read-only option: export a read-only
    // bind of the directory, visible only in the child's own mount namespace.
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount(read_only_dir, read_only_dir, nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
        MakeReadOnlyRecursively(read_only_dir) != 0) {
      static const char kMessage[] = "beaconbox: cannot make the share read-only\n";
      (void)!::write(log_fd, kMessage, sizeof(kMessage) - 1);
      _exit(125);
    }
  }
  for (size_t i = 0; i < inherit_count; ++i) ::fcntl(inherit_fds[i], F_SETFD, 0);
  ::dup2(null_fd, STDIN_FILENO);
  ::dup2(log_fd, STDOUT_FILENO);
  ::dup2(log_fd, STDERR_FILENO);
  // Signals the shim blocks (SIGTERM for its own shutdown) must reach the child.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execv(args[0], args);
  _exit(127);
}

}  // namespace

Result<pid_t> ForkExec(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "spawn: need an absolute program path");
  }
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const int log_flags =
      O_WRONLY | O_CREAT | O_CLOEXEC | (options.truncate_log ? O_TRUNC : O_APPEND);
  UniqueFd log_fd(::open(options.log_path.c_str(), log_flags, 0640));
  if (!log_fd) return ErrnoError("opening log", options.log_path);
  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_fd) return ErrnoError("opening", "/dev/null");
  const char* read_only_dir =
      options.read_only_dir.empty() ? nullptr : options.read_only_dir.c_str();
  pid_t parent = ::getpid();
  for (int fd : options.inherit_fds) {
    if (fd <= STDERR_FILENO) return MakeError(ErrorCode::kInvalidArgument, "spawn: bad fd");
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ExecChild(args.data(), log_fd.get(), null_fd.get(), parent, read_only_dir,
              options.inherit_fds.data(), options.inherit_fds.size());
  }
  if (pid < 0) return ErrnoError("fork", argv[0]);
  return pid;
}

Spawner::Spawner() : thread_([this] { Run(); }) {}

Spawner::~Spawner() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Spawner::Run() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

Result<pid_t> Spawner::Spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  std::promise<Result<pid_t>> result;
  auto future = result.get_future();
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back([&] { result.set_value(ForkExec(argv, options)); });
  }
  wake_.notify_all();
  return future.get();
}

bool ChildRunning(pid_t pid) {
  if (pid <= 0) return false;
  int status = 0;
  pid_t r = ::waitpid(pid, &status, WNOHANG);
  return r == 0;
}

bool WaitChildExit(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (ChildRunning(pid)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

void EndChild(pid_t pid, std::chrono::milliseconds grace) {
  if (!ChildRunning(pid)) return;
  ::kill(pid, SIGTERM);
  if (WaitChildExit(pid, grace)) return;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

bool WaitForPath(const std::string& path, pid_t owner, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (::access(path.c_str(), F_OK) != 0) {
    if (!ChildRunning(owner) || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

size_t KillStaleProcesses(const std::vector<RecordedProcess>& processes,
                          const std::vector<std::string>& binaries) {
  namespace fs = std::filesystem;
  size_t killed = 0;
  for (const RecordedProcess& process : processes) {
    if (process.pid <= 1 || process.pid > 4194304) continue;  // PID_MAX_LIMIT
    if (process.start_time == 0) continue;  // identity unknown: never kill on a guess
    // The pidfd names the process that has the pid now; the checks below then prove it
    // is the recorded one (if the pid is recycled in between, the pidfd's process is
    // dead and the signal fails).
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, process.pid, 0)));
    if (!pidfd) continue;
    if (ProcessStartTime(process.pid) != process.start_time) continue;
    std::error_code error;
    const fs::path exe = fs::read_symlink("/proc/" + std::to_string(process.pid) + "/exe", error);
    if (error) continue;
    for (const auto& binary : binaries) {
      std::error_code ignored;
      if (!binary.empty() && fs::equivalent(exe, binary, ignored)) {
        if (::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0) == 0) ++killed;
        break;
      }
    }
  }
  return killed;
}

namespace {

[[noreturn]] void ExecCaptured(char* const* args, char* const* env, int in_fd, int out_fd,
                               int err_fd, pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) _exit(126);
  ::dup2(in_fd, STDIN_FILENO);
  ::dup2(out_fd, STDOUT_FILENO);
  ::dup2(err_fd, STDERR_FILENO);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(args[0], args, env);
  _exit(127);
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

Result<CapturedRun> RunCaptured(const std::vector<std::string>& argv,
                                const CapturedRunOptions& options) {
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "run: need an absolute program path");
  }
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::vector<char*> env;
  for (const auto& entry : options.env) env.push_back(const_cast<char*>(entry.c_str()));
  env.push_back(nullptr);
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0) return ErrnoError("pipe", argv[0]);
  UniqueFd in_read(in_pipe[0]), in_write(in_pipe[1]);
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return ErrnoError("pipe", argv[0]);
  UniqueFd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return ErrnoError("pipe", argv[0]);
  UniqueFd err_read(err_pipe[0]), err_write(err_pipe[1]);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ExecCaptured(args.data(), env.data(), in_read.get(), out_write.get(), err_write.get(), parent);
  }
  if (pid < 0) return ErrnoError("fork", argv[0]);
  in_read.Reset();
  out_write.Reset();
  err_write.Reset();
  for (int fd : {in_write.get(), out_read.get(), err_read.get()}) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  if (options.stdin_text.empty()) in_write.Reset();

  // A child that exits without reading its stdin makes our write raise SIGPIPE, which
  // would end a process that does not ignore it (beaconbox-ctl, a test): blocked on
  // this thread while we write, and a pending one consumed below.
  sigset_t pipe_signal, old_mask;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_signal, &old_mask);
  struct RestoreMask {
    sigset_t* pipe_signal;
    sigset_t* old_mask;
    ~RestoreMask() {
      timespec zero{0, 0};
      while (::sigtimedwait(pipe_signal, nullptr, &zero) > 0) {
      }
      ::pthread_sigmask(SIG_SETMASK, old_mask, nullptr);
    }
  } restore_mask{&pipe_signal, &old_mask};
  CapturedRun run;
  size_t written = 0;
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  auto take = [](int fd, std::string& into, size_t limit, bool& truncated) {
    char buffer[16384];
    while (true) {
      ssize_t n = ::read(fd, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;  // open, nothing now
      if (n <= 0) return false;                   // EOF or error: done with it
      size_t room = into.size() < limit ? limit - into.size() : 0;
      into.append(buffer, std::min(room, static_cast<size_t>(n)));
      if (static_cast<size_t>(n) > room) truncated = true;
    }
  };
  bool exited = false;
  int status = 0;
  while (true) {
    pollfd fds[3];
    nfds_t count = 0;
    if (out_read) fds[count++] = {out_read.get(), POLLIN, 0};
    if (err_read) fds[count++] = {err_read.get(), POLLIN, 0};
    if (in_write) fds[count++] = {in_write.get(), POLLOUT, 0};
    if (count == 0 || exited) break;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    // Short waits: a child that exits while its own child holds the pipes open must
    // not keep us here until the timeout.
    int wait_ms = static_cast<int>(std::min<long long>(
        50, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1));
    int ready = ::poll(fds, count, wait_ms);
    if (ready < 0 && errno != EINTR) break;
    for (nfds_t i = 0; i < count && ready > 0; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == out_read.get()) {
        if (!take(out_read.get(), run.stdout_text, options.max_stdout, run.stdout_truncated)) {
          out_read.Reset();
        }
      } else if (fds[i].fd == err_read.get()) {
        if (!take(err_read.get(), run.stderr_text, options.max_stderr, run.stderr_truncated)) {
          err_read.Reset();
        }
      } else if (fds[i].fd == in_write.get()) {
        ssize_t n = ::write(in_write.get(), options.stdin_text.data() + written,
                            options.stdin_text.size() - written);
        if (n > 0) written += static_cast<size_t>(n);
        if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == options.stdin_text.size()) {
          in_write.Reset();
        }
      }
    }
    if (::waitpid(pid, &status, WNOHANG) == pid) exited = true;
  }
  // Pipes closed (or the time is up): the exit itself, until the deadline.
  while (!exited && std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
    } else {
      std::this_thread::sleep_for(5ms);
    }
  }
  if (exited) {
    // What it wrote before exiting is still in the pipes.
    if (out_read) take(out_read.get(), run.stdout_text, options.max_stdout, run.stdout_truncated);
    if (err_read) take(err_read.get(), run.stderr_text, options.max_stderr, run.stderr_truncated);
    run.exit_code = ExitCodeOf(status);
    return run;
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return MakeError(ErrorCode::kTimeout, argv[0] + " did not finish within " +
                                            std::to_string(options.timeout.count()) +
                                            " ms: killed");
}

}  // namespace beaconbox::plugins
