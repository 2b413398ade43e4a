#include "plugins/vmm-qemu/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <future>

#include "common/base/errno_error.h"

namespace beaconbox::qemu {

using namespace std::chrono_literals;

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

namespace {

// Runs in the forked child: only async-signal-safe calls until exec.
[[noreturn]] void ExecChild(char* const* args, int log_fd, pid_t parent,
                            const char* read_only_dir) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) _exit(126);  // the shim died before the signal was armed
  if (read_only_dir != nullptr) {
    // virtiofsd (the C one in QEMU 7.2) has no read-only option: export a read-only
    // bind of the directory, visible only in the child's own mount namespace.
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount(read_only_dir, read_only_dir, nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
        ::mount(nullptr, read_only_dir, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
      static const char kMessage[] = "beaconbox: cannot make the share read-only\n";
      (void)!::write(log_fd, kMessage, sizeof(kMessage) - 1);
      _exit(125);
    }
  }
  int null_fd = ::open("/dev/null", O_RDONLY);
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

Result<pid_t> Spawner::Spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "spawn: need an absolute program path");
  }
  std::promise<Result<pid_t>> result;
  auto future = result.get_future();
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back([&] {
      std::vector<char*> args;
      for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
      args.push_back(nullptr);
      int log_fd =
          ::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
      if (log_fd < 0) {
        result.set_value(ErrnoError("opening log", options.log_path));
        return;
      }
      const char* read_only_dir =
          options.read_only_dir.empty() ? nullptr : options.read_only_dir.c_str();
      pid_t parent = ::getpid();
      pid_t pid = ::fork();
      if (pid == 0) ExecChild(args.data(), log_fd, parent, read_only_dir);
      int fork_errno = errno;
      ::close(log_fd);
      if (pid < 0) {
        result.set_value(ErrnoError("fork", argv[0], fork_errno));
      } else {
        result.set_value(pid);
      }
    });
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

std::string FileTail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  std::streamoff start = size > static_cast<std::streamoff>(max_bytes)
                             ? size - static_cast<std::streamoff>(max_bytes)
                             : 0;
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  // The console is guest output: keep it printable for the one-line error.
  for (char& c : tail) {
    if (c == '\n' || c == '\r') c = '|';
    else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  return tail;
}

}  // namespace beaconbox::qemu
