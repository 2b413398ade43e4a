#include "plugins/vmm-qemu/process.h"

#include <fcntl.h>
#include <signal.h>
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

Result<pid_t> Spawner::Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  std::promise<Result<pid_t>> result;
  auto future = result.get_future();
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back([&] {
      std::vector<char*> args;
      for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
      args.push_back(nullptr);
      int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
      if (log_fd < 0) {
        result.set_value(ErrnoError("opening log", log_path));
        return;
      }
      pid_t parent = ::getpid();
      pid_t pid = ::fork();
      if (pid < 0) {
        ::close(log_fd);
        result.set_value(ErrnoError("fork", argv[0]));
        return;
      }
      if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) _exit(1);  // the shim died before we armed it
        int null_fd = ::open("/dev/null", O_RDONLY);
        ::dup2(null_fd, STDIN_FILENO);
        ::dup2(log_fd, STDOUT_FILENO);
        ::dup2(log_fd, STDERR_FILENO);
        // Signals the shim blocks (SIGTERM for its own shutdown) must reach the child.
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execv(args[0], args.data());
        _exit(127);
      }
      ::close(log_fd);
      result.set_value(pid);
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
