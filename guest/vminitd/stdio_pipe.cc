#include "guest/vminitd/stdio_pipe.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "common/base/errno_error.h"

namespace beaconbox::guest {

StdioPipe::StdioPipe(UniqueFd fd)
    : fd_(std::move(fd)), wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  int flags = ::fcntl(fd_.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK);
}

bool StdioPipe::WaitFor(short events, std::chrono::steady_clock::time_point deadline) {
  while (!closed_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd fds[2] = {{fd_.get(), events, 0}, {wake_fd_.get(), POLLIN, 0}};
    int n = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count(), 60 * 1000)));
    if (n < 0 && errno != EINTR) return false;
    if (n <= 0) continue;
    if (fds[1].revents != 0) return false;
    // POLLHUP/POLLERR: the next read or write says what happened.
    if (fds[0].revents != 0) return true;
  }
  return false;
}

Result<StdioPipe::Chunk> StdioPipe::Read(size_t max_bytes, std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::unique_lock lock(io_mutex_, std::defer_lock);
  if (!lock.try_lock_until(deadline)) return Chunk{};  // another read is pending: nothing new
  Chunk chunk;
  if (closed_ || eof_ || !fd_) {
    chunk.eof = true;
    return chunk;
  }
  chunk.data.resize(max_bytes);
  size_t got = 0;
  // Wait for the first bytes, then take whatever else is there without waiting:
  // a fast writer refills the pipe while the previous chunk travels.
  while (got < max_bytes) {
    ssize_t n = ::read(fd_.get(), chunk.data.data() + got, max_bytes - got);
    if (n > 0) {
      got += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (got > 0) break;
      if (!WaitFor(POLLIN, deadline)) {
        if (closed_) chunk.eof = true;
        break;
      }
      continue;  // something to read, or EOF
    }
    // 0: EOF. EIO: a pty whose last slave closed. Anything else ends the stream too.
    eof_ = true;
    chunk.eof = true;
    break;
  }
  chunk.data.resize(got);
  return chunk;
}

Result<size_t> StdioPipe::Write(std::string_view data, std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::unique_lock lock(io_mutex_, std::defer_lock);
  if (!lock.try_lock_until(deadline)) return size_t{0};
  size_t done = 0;
  while (done < data.size()) {
    if (closed_ || !fd_) return MakeError(ErrorCode::kFailedPrecondition, "stdin is closed");
    ssize_t n = ::write(fd_.get(), data.data() + done, data.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (done > 0) break;  // part of it went: the caller sends the rest
      if (!WaitFor(POLLOUT, deadline)) break;
      continue;
    }
    // EPIPE: the process closed its stdin.
    return ErrnoError("write to stdin", "");
  }
  if (done == 0 && closed_) return MakeError(ErrorCode::kFailedPrecondition, "stdin is closed");
  return done;
}

void StdioPipe::Close() {
  if (closed_.exchange(true)) return;
  uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
  std::lock_guard lock(io_mutex_);  // the pending call, woken, returns first
  fd_.Reset();
}

}  // namespace beaconbox::guest
