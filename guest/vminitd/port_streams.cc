#include "guest/vminitd/port_streams.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/base/errno_error.h"

namespace beaconbox::guest {
namespace {

// A listener whose backlog is full lets a loopback connect hang; give up after this.
constexpr int kConnectTimeoutMs = 5000;

// Connects a TCP socket to `address` without blocking longer than kConnectTimeoutMs;
// the errno of the failure otherwise.
Result<UniqueFd> ConnectLoopback(const sockaddr* address, socklen_t size) {
  UniqueFd fd(::socket(address->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return ErrnoError("socket", "");
  if (::connect(fd.get(), address, size) != 0) {
    if (errno != EINPROGRESS) return ErrnoError("connect", "");
    pollfd pfd{fd.get(), POLLOUT, 0};
    int n;
    do {
      n = ::poll(&pfd, 1, kConnectTimeoutMs);
    } while (n < 0 && errno == EINTR);
    if (n == 0) return MakeError(ErrorCode::kTimeout, "connect: timed out");
    int err = 0;
    socklen_t len = sizeof(err);
    if (n < 0 || ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
      return ErrnoError("connect", "");
    }
    if (err != 0) return ErrnoError("connect", "", err);
  }
  return fd;
}

}  // namespace

Result<uint64_t> PortStreams::Open(uint32_t port) {
  if (port == 0 || port > 65535) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "port-forward: port " + std::to_string(port) + " is not in 1..65535");
  }
  {
    std::lock_guard lock(mutex_);
    if (streams_.size() >= kMaxStreams) {
      return MakeError(ErrorCode::kExhausted, "port-forward: " + std::to_string(kMaxStreams) +
                                                  " connections are open already; close one first");
    }
  }
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_port = htons(static_cast<uint16_t>(port));
  v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  auto connected = ConnectLoopback(reinterpret_cast<const sockaddr*>(&v4), sizeof(v4));
  if (!connected.ok()) {
    sockaddr_in6 v6{};
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(static_cast<uint16_t>(port));
    v6.sin6_addr = in6addr_loopback;
    auto connected6 = ConnectLoopback(reinterpret_cast<const sockaddr*>(&v6), sizeof(v6));
    if (!connected6.ok()) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "port-forward: nothing listens on port " + std::to_string(port) +
                           " in the pod (127.0.0.1: " + connected.error().message +
                           "; ::1: " + connected6.error().message + ")");
    }
    connected = std::move(connected6);
  }
  UniqueFd writer_fd(::fcntl(connected->get(), F_DUPFD_CLOEXEC, 0));
  if (!writer_fd) return ErrnoError("dup", "port-forward socket");
  Entry entry;
  entry.socket = connected->get();
  entry.stream.reader = std::make_shared<StdioPipe>(std::move(*connected));
  entry.stream.writer = std::make_shared<StdioPipe>(std::move(writer_fd));
  std::lock_guard lock(mutex_);
  if (streams_.size() >= kMaxStreams) {
    return MakeError(ErrorCode::kExhausted, "port-forward: too many connections open");
  }
  const uint64_t id = next_id_++;
  streams_.emplace(id, std::move(entry));
  return id;
}

Result<PortStreams::Stream> PortStreams::Find(uint64_t id) {
  std::lock_guard lock(mutex_);
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    return MakeError(ErrorCode::kNotFound, "port-forward: no open stream " + std::to_string(id));
  }
  return it->second.stream;
}

Status PortStreams::Close(uint64_t id, bool write_only) {
  Stream stream;
  {
    std::lock_guard lock(mutex_);
    auto it = streams_.find(id);
    if (it == streams_.end()) return Status::Ok();
    if (write_only) {
      // The reader's descriptor stays open while the entry exists (a full Close
      // removes the entry before closing it).
      ::shutdown(it->second.socket, SHUT_WR);
      return Status::Ok();
    }
    stream = std::move(it->second.stream);
    streams_.erase(it);
  }
  stream.writer->Close();
  stream.reader->Close();
  return Status::Ok();
}

void PortStreams::CloseAll() {
  std::map<uint64_t, Entry> all;
  {
    std::lock_guard lock(mutex_);
    all.swap(streams_);
  }
  for (auto& [id, entry] : all) {
    entry.stream.writer->Close();
    entry.stream.reader->Close();
  }
}

}  // namespace beaconbox::guest
