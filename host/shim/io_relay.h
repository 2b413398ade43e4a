// Copies a process's stdio between containerd's FIFOs on the host and the guest
// agent's ReadOutput/WriteInput/CloseInput calls. One thread per stream; each ends
// at EOF or when Stop is called.
//
// Flow control is by pull (guest.proto): each thread has at most one call in
// flight and asks for more output only once the last chunk is in the FIFO, so a
// FIFO reader that lags blocks only its own thread (and, through the guest's pipe,
// the process), never the guest connection; memory is one chunk per stream on each
// side. Stop cancels the calls in flight (ttrpc::Canceller) and FIFO waits.
#pragma once

#include <condition_variable>
#include <memory>
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
  // Sends `data` to the process's stdin; false once that is no longer possible.
  bool PushInput(std::string_view data);
  void OutputDone();
  bool stopping();
  // A guest call with this relay's canceller and the deadline of one pull.
  ttrpc::RpcStatus CallGuest(std::string_view method, const google::protobuf::MessageLite& request,
                             google::protobuf::MessageLite* response);

  GuestClient& guest_;
  const std::string container_id_;
  const std::string exec_id_;
  const StdioPaths paths_;
  const std::shared_ptr<ttrpc::Canceller> canceller_;
  UniqueFd stop_fd_;         // eventfd, readable once Stop was called
  UniqueFd stdin_close_fd_;  // eventfd, readable once CloseStdin was called

  std::mutex mutex_;
  std::condition_variable drained_;   // with mutex_: outputs_open_ reached 0
  int outputs_open_ = 0;              // guarded by mutex_
  bool stopping_ = false;             // guarded by mutex_
  bool stdin_closed_ = false;         // guarded by mutex_
  std::vector<std::thread> threads_;  // guarded by mutex_; joined by Stop (swapped out)
};

}  // namespace beaconbox::shim
