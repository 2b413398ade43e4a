// Notices a VMM process ending by itself (a crash, an abort, a guest reboot), on its
// own thread, without reaping it: the code that ends and reaps the VMM stays as it is,
// and the exit status is still there when the report is written.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox::qemu {

// How a child ended, from waitid's siginfo: "exit status N", "killed by signal N
// (SIGNAME)" with ", core dumped" when it dumped.
std::string DescribeChildEnd(int code, int status);

class ExitWatch {
 public:
  // Watches `pid` (our child, not reaped yet). When it ends before Stop, `on_exit` runs
  // once on the watch's thread with DescribeChildEnd's text.
  static Result<std::unique_ptr<ExitWatch>> Start(
      pid_t pid, std::function<void(const std::string& how)> on_exit);
  ~ExitWatch();  // Stop()
  ExitWatch(const ExitWatch&) = delete;
  ExitWatch& operator=(const ExitWatch&) = delete;

  // How the child ended, "" while it runs; never reaps it. "exited (status already
  // collected)" once someone else reaped it.
  std::string Ended() const;
  // Ends the watch: the caller is about to end the child itself. An end that happened
  // before and is not reported yet is reported now, on the calling thread; no report
  // comes after Stop returns. Idempotent.
  void Stop();

 private:
  ExitWatch() = default;
  void Run();
  void ReportOnce(const std::string& how);

  UniqueFd pidfd_;
  UniqueFd wake_;  // eventfd: Stop
  std::function<void(const std::string&)> on_exit_;
  std::mutex report_mutex_;
  bool reported_ = false;  // guarded by report_mutex_
  std::atomic<bool> stopped_ = false;
  std::thread thread_;
};

}  // namespace beaconbox::qemu
