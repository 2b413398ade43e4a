#include "guest/vminitd/reaper.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>

#include "common/base/errno_error.h"
#include "guest/vminitd/log.h"

extern char** environ;

namespace beaconbox::guest {
namespace {
constexpr size_t kMaxUnclaimed = 4096;
}

void Reaper::BlockSigchld() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

Reaper& Reaper::Instance() {
  static Reaper* reaper = new Reaper();
  return *reaper;
}

void Reaper::Start() {
  thread_ = std::thread([this] { Run(); });
  thread_.detach();
}

void Reaper::Run() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (;;) {
    // Reap first: children may have exited before this thread started.
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      Deliver(pid, status);
    }
    siginfo_t info;
    if (::sigwaitinfo(&set, &info) < 0 && errno != EINTR) {
      Log(ErrnoError("sigwaitinfo", "SIGCHLD").message);
      ::sleep(1);
    }
  }
}

void Reaper::Deliver(pid_t pid, int status) {
  ExitCallback callback;
  {
    std::lock_guard lock(mu_);
    auto it = watchers_.find(pid);
    if (it == watchers_.end()) {
      unclaimed_[pid] = status;
      unclaimed_order_.push_back(pid);
      while (unclaimed_order_.size() > kMaxUnclaimed) {
        unclaimed_.erase(unclaimed_order_.front());
        unclaimed_order_.pop_front();
      }
      return;
    }
    callback = std::move(it->second);
    watchers_.erase(it);
  }
  callback(status);
}

void Reaper::Watch(pid_t pid, ExitCallback on_exit) {
  int status = 0;
  {
    std::lock_guard lock(mu_);
    auto it = unclaimed_.find(pid);
    if (it == unclaimed_.end()) {
      watchers_[pid] = std::move(on_exit);
      return;
    }
    status = it->second;
    unclaimed_.erase(it);
    std::erase(unclaimed_order_, pid);
  }
  on_exit(status);
}

int Reaper::WaitFor(pid_t pid) {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    int status = 0;
  };
  auto shared = std::make_shared<Shared>();
  Watch(pid, [shared](int status) {
    std::lock_guard lock(shared->mu);
    shared->done = true;
    shared->status = status;
    shared->cv.notify_all();
  });
  std::unique_lock lock(shared->mu);
  shared->cv.wait(lock, [&] { return shared->done; });
  return shared->status;
}

Result<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnStdio& stdio) {
  if (argv.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty command");
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigfillset(&defaults);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
  const int fds[3] = {stdio.stdin_fd, stdio.stdout_fd, stdio.stderr_fd};
  for (int target = 0; target < 3; ++target) {
    if (fds[target] >= 0) {
      posix_spawn_file_actions_adddup2(&actions, fds[target], target);
    } else {
      posix_spawn_file_actions_addopen(&actions, target, "/dev/null",
                                       target == 0 ? O_RDONLY : O_WRONLY, 0);
    }
  }
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int err = posix_spawn(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) return ErrnoError("spawn", argv[0], err);
  return pid;
}

Result<std::string> RunCommand(const std::vector<std::string>& argv, const SpawnStdio& stdio) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoError("pipe", "");
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  SpawnStdio with_output = stdio;
  if (with_output.stdout_fd < 0) with_output.stdout_fd = write_end.get();
  with_output.stderr_fd = write_end.get();
  BBX_ASSIGN_OR_RETURN(pid_t pid, Spawn(argv, with_output));
  write_end.Reset();
  std::string output;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(read_end.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (output.size() < 64 * 1024) output.append(buffer, n);
  }
  int status = Reaper::Instance().WaitFor(pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return output;
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  size_t last_line = output.rfind('\n');
  std::string tail = last_line == std::string::npos ? output : output.substr(last_line + 1);
  std::string command;
  for (size_t i = 0; i < argv.size() && i < 3; ++i) command += (i ? " " : "") + argv[i];
  return MakeError(ErrorCode::kInternal, command + " failed (exit " +
                                             std::to_string(ExitCodeFromWaitStatus(status)) +
                                             "): " + (tail.empty() ? "no output" : tail));
}

unsigned ExitCodeFromWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 255;
}

}  // namespace beaconbox::guest
