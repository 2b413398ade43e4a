// Copies a process's stdio between containerd's FIFOs on the host and the guest
// agent's ReadOutput/WriteInput streams. One thread per stream; each ends at EOF
// or when Stop is called.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/base/unique_fd.h"
#include "host/shim/guest_client.h"

namespace beaconbox::shim {

struct StdioPaths {
  std::string stdin_path;
  std::string stdout_path;
  std::string stderr_path;
  bool terminal = false;
};

class IoRelay {
 public:
  IoRelay(GuestClient& guest, std::string container_id, std::string exec_id, StdioPaths paths);
  ~IoRelay();
  IoRelay(const IoRelay&) = delete;
  IoRelay& operator=(const IoRelay&) = delete;

  // Starts the copy threads. Called once the process exists in the guest.
  void Start();
  // Waits until stdout and stderr reached EOF (the process and anything holding its
  // pipes are gone), at most `timeout`. Returns whether they did.
  bool WaitOutputDrained(std::chrono::milliseconds timeout);
  // Closes the process's stdin in the guest (CloseIO).
  void CloseStdin();
  // Ends every copy and joins the threads, unblocking FIFO opens that wait for a peer.
  void Stop();

 private:
  void CopyOutput(guestapi::Stream stream, const std::string& fifo_path);
  void CopyInput(const std::string& fifo_path);
  void OutputDone();
  void Wake();  // releases the stdin thread from poll() and a pending FIFO open

  GuestClient& guest_;
  const std::string container_id_;
  const std::string exec_id_;
  const StdioPaths paths_;
  UniqueFd wake_fd_;

  std::mutex mutex_;
  std::condition_variable drained_;   // with mutex_: outputs_open_ reached 0
  int outputs_open_ = 0;              // guarded by mutex_
  bool stopping_ = false;             // guarded by mutex_
  bool stdin_closed_ = false;         // guarded by mutex_
  std::vector<std::thread> threads_;  // guarded by mutex_; joined by Stop (swapped out)
};

}  // namespace beaconbox::shim
