// The VM's serial console log, with a size cap. A guest may write to its serial port
// as fast as it likes (anything in the guest is hostile), so QEMU never writes the log
// itself: it writes to a FIFO in the VM's private directory (-serial file:<fifo>) and
// a ConsolePump thread copies what comes into a CappedLog.
//
// Rotated once, not truncated: the log keeps the newest output, which is what tells
// why a VM failed (the shim shows its tail; a panic comes last), and its one
// predecessor <log>.1; each holds at most half the cap, so both together never exceed
// it. Truncating at the cap would keep the boot and lose the end, the part needed.
// Output past a full disk or a failing write is dropped, never buffered: the pump
// always drains the FIFO, so the guest's serial port never stalls QEMU.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "plugins/common/console_log_bounds.h"

namespace beaconbox::qemu {

class CappedLog {
 public:
  // Starts `path` empty (and removes an old <path>.1). `max_bytes` (>=
  // plugins::kConsoleLogMinBytes) bounds <path> and <path>.1 together. The current file is
  // held under a shared flock while written, so a retention sweep can tell a live
  // VM's log from a deleted container's.
  static Result<std::unique_ptr<CappedLog>> Open(std::string path, uint64_t max_bytes);

  // Appends, rotating as needed; best effort (a failed write drops the data).
  void Write(std::string_view data);
  // Readable from any thread.
  uint64_t bytes_received() const { return bytes_received_.load(); }
  uint64_t rotations() const { return rotations_.load(); }
  const std::string& path() const { return path_; }
  std::string rotated_path() const { return path_ + ".1"; }

 private:
  CappedLog(std::string path, uint64_t file_limit)
      : path_(std::move(path)), file_limit_(file_limit) {}
  Status OpenCurrent();  // truncates <path> and locks it
  void Rotate();

  const std::string path_;
  const uint64_t file_limit_;  // per file: half the cap
  UniqueFd fd_;
  uint64_t file_size_ = 0;
  std::atomic<uint64_t> bytes_received_{0};
  std::atomic<uint64_t> rotations_{0};
};

// Copies a FIFO into a CappedLog on its own thread.
class ConsolePump {
 public:
  // Makes the FIFO `fifo_path` (0600) and starts copying from it. The pump holds the
  // FIFO open for both reading and writing, so QEMU's open never blocks and QEMU
  // exiting is no end of file: Stop ends the pump.
  static Result<std::unique_ptr<ConsolePump>> Start(const std::string& fifo_path,
                                                    std::unique_ptr<CappedLog> log);
  ~ConsolePump();  // Stop()
  // Copies what is still in the FIFO, ends the thread and removes the FIFO. Idempotent.
  void Stop();
  const CappedLog& log() const { return *log_; }

 private:
  ConsolePump() = default;
  void Run();

  std::string fifo_path_;
  UniqueFd fifo_;
  UniqueFd stop_;  // eventfd
  std::unique_ptr<CappedLog> log_;
  std::thread thread_;
};

}  // namespace beaconbox::qemu
