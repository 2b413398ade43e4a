#include "plugins/vmm-qemu/exit_watch.h"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "common/base/errno_error.h"

#ifndef P_PIDFD
#define P_PIDFD 3  // linux/wait.h, Linux 5.4
#endif

namespace beaconbox::qemu {

std::string DescribeChildEnd(int code, int status) {
  if (code == CLD_EXITED) return "exit status " + std::to_string(status);
  if (code == CLD_KILLED || code == CLD_DUMPED) {
    const char* name = ::sigabbrev_np(status);
    std::string text = "killed by signal " + std::to_string(status) +
                       (name != nullptr ? std::string(" (SIG") + name + ")" : std::string());
    if (code == CLD_DUMPED) text += ", core dumped";
    return text;
  }
  return "ended (code " + std::to_string(code) + ", status " + std::to_string(status) + ")";
}

Result<std::unique_ptr<ExitWatch>> ExitWatch::Start(
    pid_t pid, std::function<void(const std::string& how)> on_exit) {
  auto watch = std::unique_ptr<ExitWatch>(new ExitWatch());
  watch->pidfd_ = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!watch->pidfd_) return ErrnoError("pidfd_open", "pid " + std::to_string(pid));
  watch->wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC));
  if (!watch->wake_) return ErrnoError("eventfd", "the VMM's exit watch");
  watch->on_exit_ = std::move(on_exit);
  watch->thread_ = std::thread([raw = watch.get()] { raw->Run(); });
  return watch;
}

ExitWatch::~ExitWatch() { Stop(); }

std::string ExitWatch::Ended() const {
  siginfo_t info{};
  if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info,
               WEXITED | WNOHANG | WNOWAIT) != 0) {
    return errno == ECHILD ? "exited (status already collected)" : "";
  }
  if (info.si_pid == 0) return "";  // still running
  return DescribeChildEnd(info.si_code, info.si_status);
}

void ExitWatch::Run() {
  pollfd fds[2] = {{pidfd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
  for (;;) {
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (fds[1].revents & POLLIN) != 0) return;
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) break;
  }
  if (stopped_) return;
  std::string how = Ended();
  if (!how.empty()) ReportOnce(how);
}

void ExitWatch::ReportOnce(const std::string& how) {
  std::lock_guard lock(report_mutex_);
  if (reported_) return;
  reported_ = true;
  if (on_exit_) on_exit_(how);
}

void ExitWatch::Stop() {
  if (stopped_.exchange(true)) return;
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  if (std::string how = Ended(); !how.empty()) ReportOnce(how);
}

}  // namespace beaconbox::qemu
