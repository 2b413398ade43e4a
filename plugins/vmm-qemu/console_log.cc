#include "plugins/vmm-qemu/console_log.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/base/errno_error.h"

namespace beaconbox::qemu {

Result<std::unique_ptr<CappedLog>> CappedLog::Open(std::string path, uint64_t max_bytes) {
  if (max_bytes < plugins::kConsoleLogMinBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "console log cap of " + std::to_string(max_bytes) + " bytes is below " +
                         std::to_string(plugins::kConsoleLogMinBytes) +
                         " (config key console_log_max_bytes)");
  }
  std::unique_ptr<CappedLog> log(new CappedLog(std::move(path), max_bytes / 2));
  ::unlink(log->rotated_path().c_str());
  BBX_RETURN_IF_ERROR(log->OpenCurrent());
  return log;
}

Status CappedLog::OpenCurrent() {
  fd_.Reset(::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640));
  file_size_ = 0;
  if (!fd_) return ErrnoError("opening the console log", path_);
  (void)::flock(fd_.get(), LOCK_SH | LOCK_NB);
  return Status::Ok();
}

void CappedLog::Rotate() {
  // The old file keeps its content under <path>.1 (replacing the previous one); its
  // lock goes with its descriptor.
  (void)::rename(path_.c_str(), rotated_path().c_str());
  fd_.Reset();
  ++rotations_;
  (void)OpenCurrent();
}

void CappedLog::Write(std::string_view data) {
  bytes_received_ += data.size();
  while (!data.empty()) {
    if (file_size_ >= file_limit_) Rotate();
    if (!fd_) return;  // could not reopen: dropped
    size_t room = static_cast<size_t>(std::min<uint64_t>(file_limit_ - file_size_, data.size()));
    ssize_t n = ::write(fd_.get(), data.data(), room);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // disk full or failing: dropped, never buffered
    file_size_ += static_cast<uint64_t>(n);
    data.remove_prefix(static_cast<size_t>(n));
  }
}

Result<std::unique_ptr<ConsolePump>> ConsolePump::Start(const std::string& fifo_path,
                                                        std::unique_ptr<CappedLog> log) {
  std::unique_ptr<ConsolePump> pump(new ConsolePump());
  pump->log_ = std::move(log);
  ::unlink(fifo_path.c_str());
  if (::mkfifo(fifo_path.c_str(), 0600) != 0) return ErrnoError("mkfifo", fifo_path);
  pump->fifo_path_ = fifo_path;
  // O_RDWR: never blocks, and keeps a writer so that no read sees end of file.
  pump->fifo_.Reset(::open(fifo_path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW));
  if (!pump->fifo_) return ErrnoError("opening the console FIFO", fifo_path);
  // Room for bursts while the log's disk is slow (best effort).
  (void)::fcntl(pump->fifo_.get(), F_SETPIPE_SZ, 1 << 20);
  pump->stop_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!pump->stop_) return ErrnoError("eventfd", "console pump");
  pump->thread_ = std::thread([raw = pump.get()] { raw->Run(); });
  return pump;
}

void ConsolePump::Run() {
  std::string buffer(64 * 1024, '\0');
  auto drain = [&] {
    while (true) {
      ssize_t n = ::read(fifo_.get(), buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // EAGAIN: empty
      log_->Write(std::string_view(buffer.data(), static_cast<size_t>(n)));
    }
  };
  while (true) {
    pollfd fds[2] = {{fifo_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    drain();
    if (fds[1].revents != 0) return;  // drained what was there: done
  }
}

void ConsolePump::Stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
    thread_.join();
  }
  fifo_.Reset();
  if (!fifo_path_.empty()) ::unlink(fifo_path_.c_str());
  fifo_path_.clear();
}

ConsolePump::~ConsolePump() { Stop(); }

}  // namespace beaconbox::qemu
