// File descriptors passed over a Unix stream socket (SCM_RIGHTS), written once: the
// sender attaches them to the first bytes it writes, the receiver takes at most the
// count it names and closes any beyond it (a peer is untrusted: what it sends must not
// pile up in this process's descriptor table). Header-only and POSIX-only, as
// file_util.h.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/errno_error.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox {

// The most descriptors one message may carry either way (the kernel's own bound is 253).
inline constexpr size_t kMaxPassedFds = 64;

// Writes all of `bytes` to the connected stream socket `socket`, `fds` as one
// SCM_RIGHTS message on the first sendmsg: the peer receives them with bytes[0]. The
// descriptors stay the caller's (the peer gets its own copies). A non-blocking socket
// that is full is waited for (poll) until `deadline`, then kTimeout.
inline Status SendWithFds(
    int socket, std::string_view bytes, std::span<const int> fds,
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max()) {
  if (fds.size() > kMaxPassedFds ||
      std::any_of(fds.begin(), fds.end(), [](int fd) { return fd < 0; })) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::to_string(fds.size()) + " descriptors to send (want at most " +
                         std::to_string(kMaxPassedFds) + ", all open)");
  }
  if (bytes.empty() && !fds.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "descriptors to send without a byte: a stream socket carries them only "
                     "with data");
  }
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
  bool fds_sent = fds.empty();
  size_t done = 0;
  while (done < bytes.size()) {
    iovec data{const_cast<char*>(bytes.data() + done), bytes.size() - done};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    if (!fds_sent) {
      message.msg_control = control;
      message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
    }
    const ssize_t sent = ::sendmsg(socket, &message, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return MakeError(
            ErrorCode::kTimeout,
            "socket did not take " + std::to_string(bytes.size() - done) + " more bytes in time");
      }
      pollfd wait{socket, POLLOUT, 0};
      (void)::poll(&wait, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
      continue;
    }
    if (sent < 0) return ErrnoError("sendmsg", fds_sent ? "" : "with descriptors");
    if (sent == 0) return MakeError(ErrorCode::kUnavailable, "sendmsg: the peer took nothing");
    fds_sent = true;
    done += static_cast<size_t>(sent);
  }
  return Status::Ok();
}

// What one ReceiveWithFds read.
struct ReceivedWithFds {
  size_t size = 0;            // bytes read into the buffer; 0: the peer closed the stream
  std::vector<UniqueFd> fds;  // descriptors that came with them, close-on-exec, in order
  bool fds_dropped = false;   // more came than were wanted: the rest are closed
};

// One recvmsg on stream socket `socket` into `buffer` (EINTR retried), keeping at most
// `max_fds` (at most kMaxPassedFds) of the descriptors that come with those bytes;
// any beyond, whether the kernel delivered them (a control buffer holds whole 8-byte
// words) or truncated them away (MSG_CTRUNC), are closed and fds_dropped says so.
// Control messages other than SCM_RIGHTS are ignored. On an error nothing received
// stays open and errno still holds recvmsg's (EAGAIN on an empty non-blocking socket).
inline Result<ReceivedWithFds> ReceiveWithFds(int socket, std::span<char> buffer, size_t max_fds) {
  max_fds = std::min(max_fds, kMaxPassedFds);
  ReceivedWithFds received;
  received.fds.reserve(max_fds);  // no allocation once descriptors have arrived
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
  iovec data{buffer.data(), buffer.size()};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  if (max_fds > 0) {
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * max_fds);
  }
  ssize_t n;
  do {
    n = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    const int recv_errno = errno;
    Error error = ErrnoError("recvmsg", "", recv_errno);
    errno = recv_errno;
    return error;
  }
  received.size = static_cast<size_t>(n);
  received.fds_dropped = (message.msg_flags & MSG_CTRUNC) != 0;
  if (message.msg_controllen == 0) return received;
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
       header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS ||
        header->cmsg_len < CMSG_LEN(0)) {
      continue;
    }
    const size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
      UniqueFd owned(fd);
      if (received.fds.size() < max_fds) {
        received.fds.push_back(std::move(owned));
      } else {
        received.fds_dropped = true;  // `owned` closes it
      }
    }
  }
  return received;
}

}  // namespace beaconbox
