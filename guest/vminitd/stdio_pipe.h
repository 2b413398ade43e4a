// The guest's end of one stdio stream of a container process (a pipe, or a dup of
// the pty master), served to the shim by the pull calls ReadOutput and WriteInput.
//
// Flow control: the guest reads a process's output only when the shim asks for it
// (ReadOutput: "up to N bytes, wait until there are some or EOF") and writes to its
// stdin only what the shim sent in one call. Nothing is queued on either side
// beyond one call's bytes, so a slow reader on the host leaves the process blocked
// on its pipe (as with runc), and never blocks the guest connection: each call
// holds only its own handler slot, never the connection's reader.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox::guest {

class StdioPipe {
 public:
  // Takes `fd` and makes it non-blocking.
  explicit StdioPipe(UniqueFd fd);
  StdioPipe(const StdioPipe&) = delete;
  StdioPipe& operator=(const StdioPipe&) = delete;

  struct Chunk {
    std::string data;
    bool eof = false;  // the stream ended (also after Close); data may precede it
  };
  // Waits up to `wait` for output, then reads what is there, at most `max_bytes`.
  // An empty chunk without eof means nothing came in time. One caller at a time: a
  // second one waits for the first (up to `wait`).
  Result<Chunk> Read(size_t max_bytes, std::chrono::milliseconds wait);
  // Writes a prefix of `data`, waiting up to `wait` for room; returns its length (0
  // when nothing fit in time). Fails once the reader or Close ended the stream.
  Result<size_t> Write(std::string_view data, std::chrono::milliseconds wait);
  // Ends the stream now: a pending Read or Write returns, the descriptor is closed
  // (the process sees EOF on its stdin), later calls see the end. Idempotent.
  void Close();

 private:
  // Waits for `events` on the fd or for Close; false on timeout or Close.
  bool WaitFor(short events, std::chrono::steady_clock::time_point deadline);

  std::timed_mutex io_mutex_;  // one Read or Write at a time
  UniqueFd fd_;                // guarded by io_mutex_
  UniqueFd wake_fd_;           // eventfd written by Close
  std::atomic<bool> closed_{false};
  bool eof_ = false;  // guarded by io_mutex_
};

}  // namespace beaconbox::guest
