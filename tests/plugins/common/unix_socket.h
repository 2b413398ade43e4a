// Unix stream sockets for tests and test doubles that play a server (a canned HTTP
// API, QMP, fake-cloud-hypervisor): listen on a path, connect to one. Close-on-exec;
// an invalid UniqueFd (errno set) when the path is too long or a call fails.
#pragma once

#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

#include "common/base/unique_fd.h"

namespace beaconbox::plugins::testing {

inline bool UnixAddress(const std::string& path, sockaddr_un* addr) {
  *addr = {};
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr->sun_path)) {
    errno = ENAMETOOLONG;
    return false;
  }
  path.copy(addr->sun_path, path.size());
  return true;
}

// Listens on `path` (a stale socket file there is removed first).
inline UniqueFd ListenUnix(const std::string& path, int backlog = 16) {
  sockaddr_un addr;
  if (!UnixAddress(path, &addr)) return UniqueFd();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return UniqueFd();
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd.get(), backlog) != 0) {
    return UniqueFd();
  }
  return fd;
}

inline UniqueFd ConnectUnix(const std::string& path) {
  sockaddr_un addr;
  if (!UnixAddress(path, &addr)) return UniqueFd();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return UniqueFd();
  }
  return fd;
}

}  // namespace beaconbox::plugins::testing
