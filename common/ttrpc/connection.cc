#include "common/ttrpc/connection.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace beaconbox::ttrpc::internal {
namespace {

constexpr size_t kReadBufferSize = 64 * 1024;

uint32_t LoadBigEndian32(const char* p) {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

void StoreBigEndian32(char* p, uint32_t value) {
  p[0] = static_cast<char>(value >> 24);
  p[1] = static_cast<char>(value >> 16);
  p[2] = static_cast<char>(value >> 8);
  p[3] = static_cast<char>(value);
}

}  // namespace

Connection::Connection(UniqueFd fd, Options options)
    : budget(std::make_shared<ByteBudget>(options.max_buffered_bytes)),
      options_(options),
      fd_(std::move(fd)),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      buffer_(kReadBufferSize, '\0') {
  // Non-blocking, so that Shutdown can always wake a reader or a writer through
  // the eventfd, on sockets and on character devices (virtio-serial) alike.
  int flags = ::fcntl(fd_.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK);
  struct stat st {};
  is_socket_ = ::fstat(fd_.get(), &st) == 0 && S_ISSOCK(st.st_mode);
}

Connection::~Connection() {
  Shutdown();
  if (reader.joinable()) {
    if (reader.get_id() == std::this_thread::get_id()) {
      reader.detach();
    } else {
      reader.join();
    }
  }
}

Connection::Ready Connection::WaitFor(short events) {
  pollfd fds[2] = {{fd_.get(), events, 0}, {wake_fd_.get(), POLLIN, 0}};
  while (true) {
    if (closed()) return Ready::kStopped;
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Ready::kStopped;
    }
    if (fds[1].revents != 0) return Ready::kStopped;
    if (fds[0].revents & (POLLERR | POLLNVAL)) return Ready::kStopped;
    if (fds[0].revents & events) return Ready::kReady;
    // POLLHUP alone: what is buffered can still be read (read() then returns 0 on
    // a socket); a character device may instead keep saying EAGAIN.
    if (fds[0].revents & POLLHUP) return Ready::kHangup;
  }
}

bool Connection::Fill() {
  if (buffer_start_ == buffer_end_) buffer_start_ = buffer_end_ = 0;
  if (buffer_end_ == buffer_.size()) {
    std::memmove(buffer_.data(), buffer_.data() + buffer_start_, buffer_end_ - buffer_start_);
    buffer_end_ -= buffer_start_;
    buffer_start_ = 0;
  }
  bool hangup = false;
  while (true) {
    ssize_t n = ::read(fd_.get(), buffer_.data() + buffer_end_, buffer_.size() - buffer_end_);
    if (n > 0) {
      buffer_end_ += static_cast<size_t>(n);
      return true;
    }
    if (n == 0) return false;  // peer closed
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
    if (hangup) return false;  // a hung-up device with nothing to read: never spin
    Ready ready = WaitFor(POLLIN);
    if (ready == Ready::kStopped) return false;
    hangup = ready == Ready::kHangup;
  }
}

bool Connection::ReadExact(char* out, size_t n) {
  while (n > 0) {
    if (buffer_start_ == buffer_end_ && !Fill()) return false;
    size_t take = std::min(n, buffer_end_ - buffer_start_);
    std::memcpy(out, buffer_.data() + buffer_start_, take);
    buffer_start_ += take;
    out += take;
    n -= take;
  }
  return true;
}

bool Connection::SkipPayload(size_t n) {
  while (n > 0) {
    if (buffer_start_ == buffer_end_ && !Fill()) return false;
    size_t take = std::min(n, buffer_end_ - buffer_start_);
    buffer_start_ += take;
    n -= take;
  }
  return true;
}

Connection::ReadResult Connection::ReadFrame(Frame* frame, uint32_t* oversize_length) {
  char header[kHeaderSize];
  if (closed() || !ReadExact(header, sizeof(header))) return ReadResult::kClosed;
  uint32_t length = LoadBigEndian32(header);
  frame->stream_id = LoadBigEndian32(header + 4);
  frame->type = static_cast<uint8_t>(header[8]);
  frame->flags = static_cast<uint8_t>(header[9]);
  frame->payload.clear();
  if (length > options_.max_message_size) {
    // Never allocate what the peer claims; the caller drops the body.
    *oversize_length = length;
    return ReadResult::kOversize;
  }
  frame->payload.resize(length);
  if (!ReadExact(frame->payload.data(), length)) return ReadResult::kClosed;
  return ReadResult::kFrame;
}

bool Connection::WriteFrame(uint32_t stream_id, uint8_t type, uint8_t flags,
                            std::string_view payload) {
  if (payload.size() > options_.max_message_size) return false;
  std::string frame(kHeaderSize + payload.size(), '\0');
  StoreBigEndian32(frame.data(), static_cast<uint32_t>(payload.size()));
  StoreBigEndian32(frame.data() + 4, stream_id);
  frame[8] = static_cast<char>(type);
  frame[9] = static_cast<char>(flags);
  std::memcpy(frame.data() + kHeaderSize, payload.data(), payload.size());

  std::lock_guard lock(write_mutex_);
  std::string_view rest = frame;
  while (!rest.empty()) {
    if (shut_down_ || !fd_) return false;
    // On a socket, send() with MSG_NOSIGNAL: a peer that hung up must give EPIPE,
    // not a SIGPIPE that kills the process. Character devices raise no SIGPIPE.
    ssize_t n = is_socket_ ? ::send(fd_.get(), rest.data(), rest.size(), MSG_NOSIGNAL)
                           : ::write(fd_.get(), rest.data(), rest.size());
    if (n > 0) {
      rest.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (WaitFor(POLLOUT) != Ready::kReady) return false;
      continue;
    }
    return false;
  }
  return true;
}

void Connection::Shutdown() {
  if (shut_down_.exchange(true)) return;
  uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
  budget->Wake();
  // Wake every thread waiting on this connection's state: consumers, a reader
  // waiting for queue room or for a handler slot.
  std::vector<std::shared_ptr<ClientStreamState>> client;
  std::vector<std::shared_ptr<ServerStreamState>> server;
  {
    std::lock_guard lock(mutex);
    for (auto& [id, stream] : client_streams) client.push_back(stream);
    for (auto& [id, stream] : server_streams) server.push_back(stream);
    handler_finished.notify_all();
  }
  for (auto& stream : client) {
    std::lock_guard lock(stream->mutex);
    stream->changed.notify_all();
  }
  for (auto& stream : server) {
    std::lock_guard lock(stream->mutex);
    stream->changed.notify_all();
  }
}

bool Connection::closed() const { return shut_down_.load(); }

void Connection::CloseFd() {
  Shutdown();
  std::lock_guard lock(write_mutex_);
  fd_.Reset();
}

void Connection::FailAll(const RpcStatus& status) {
  std::map<uint32_t, std::shared_ptr<ClientStreamState>> streams;
  {
    std::lock_guard lock(mutex);
    streams.swap(client_streams);
  }
  for (auto& [id, stream] : streams) {
    std::lock_guard lock(stream->mutex);
    if (!stream->finished) {
      stream->finished = true;
      stream->status = status;
    }
    stream->changed.notify_all();
  }
}

}  // namespace beaconbox::ttrpc::internal
