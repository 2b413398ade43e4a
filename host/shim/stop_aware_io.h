// Writes that a relay's Stop can interrupt: the shim's stdio relay (io_relay.h) and
// port-forward relay (port_forward.h) each hold an eventfd that Stop makes readable.
#pragma once

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string_view>

namespace beaconbox::shim {

// Makes the eventfd `event_fd` readable.
inline void Signal(int event_fd) {
  uint64_t one = 1;
  (void)!::write(event_fd, &one, sizeof(one));
}

// Writes all of `data` to the non-blocking `fd` (a FIFO or a socket; the shim
// ignores SIGPIPE), waiting for room while `stop_fd` is not readable. False when the
// reader went away or Stop came first.
inline bool WriteAll(int fd, std::string_view data, int stop_fd) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd fds[2] = {{fd, POLLOUT, 0}, {stop_fd, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0 && errno != EINTR) return false;
      if (fds[1].revents != 0) return false;
      continue;
    }
    return false;  // EPIPE: the reader is gone
  }
  return true;
}

}  // namespace beaconbox::shim
