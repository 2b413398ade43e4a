// Helpers shared by the fuzz targets (tests/fuzz/).
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <thread>
#include <utility>

#include "common/base/unique_fd.h"

namespace beaconbox::fuzz {

// A connected AF_UNIX stream pair; aborts when the process is out of descriptors
// (a leak in the code under test shows up as this).
inline std::pair<UniqueFd, UniqueFd> SocketPair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    std::fprintf(stderr, "fuzz: socketpair: %s\n", std::strerror(errno));
    std::abort();
  }
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

inline bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads and drops everything until EOF or an error.
inline void Drain(int fd) {
  char buffer[4096];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
  }
}

// Waits until `token` has no other owner: handlers that captured a copy of it run on
// ttrpc's worker pool and may still be running after the connection ended. Waiting
// keeps one input's work from running into the next one's. Aborts after a minute:
// a handler that never ends is a finding (a hang).
inline void WaitSoleOwner(const std::shared_ptr<int>& token) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (token.use_count() > 1) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "fuzz: a handler is still running after 60 s\n");
      std::abort();
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// Big-endian u32, as ttrpc frame headers carry their length and stream id.
inline uint32_t LoadBigEndian32(const char* p) {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

}  // namespace beaconbox::fuzz
