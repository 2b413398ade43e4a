#include "common/ttrpc/connection.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
    : options_(options),
      fd_(std::move(fd)),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      buffer_(kReadBufferSize, '\0') {
  // Non-blocking, so that Shutdown can always wake a reader or a writer through
  // the eventfd, on sockets and on character devices (virtio-serial) alike.
  int flags = ::fcntl(fd_.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK);
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

bool Connection::WaitFor(short events) {
  pollfd fds[2] = {{fd_.get(), events, 0}, {wake_fd_.get(), POLLIN, 0}};
  while (true) {
    if (closed()) return false;
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (fds[1].revents != 0) return false;
    if (fds[0].revents & (POLLERR | POLLNVAL)) return false;
    // POLLHUP still lets a reader drain what is buffered; read() then returns 0.
    if (fds[0].revents != 0) return true;
  }
}

bool Connection::Fill() {
  if (buffer_start_ == buffer_end_) buffer_start_ = buffer_end_ = 0;
  if (buffer_end_ == buffer_.size()) {
    std::memmove(buffer_.data(), buffer_.data() + buffer_start_, buffer_end_ - buffer_start_);
    buffer_end_ -= buffer_start_;
    buffer_start_ = 0;
  }
  while (true) {
    ssize_t n = ::read(fd_.get(), buffer_.data() + buffer_end_, buffer_.size() - buffer_end_);
    if (n > 0) {
      buffer_end_ += static_cast<size_t>(n);
      return true;
    }
    if (n == 0) return false;  // peer closed
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
    if (!WaitFor(POLLIN)) return false;
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

bool Connection::Skip(size_t n) {
  while (n > 0) {
    if (buffer_start_ == buffer_end_ && !Fill()) return false;
    size_t take = std::min(n, buffer_end_ - buffer_start_);
    buffer_start_ += take;
    n -= take;
  }
  return true;
}

Connection::ReadResult Connection::ReadFrame(Frame* frame) {
  char header[kHeaderSize];
  if (!ReadExact(header, sizeof(header))) return ReadResult::kClosed;
  uint32_t length = LoadBigEndian32(header);
  frame->stream_id = LoadBigEndian32(header + 4);
  frame->type = static_cast<uint8_t>(header[8]);
  frame->flags = static_cast<uint8_t>(header[9]);
  frame->payload.clear();
  if (length > options_.max_message_size) {
    // Never allocate what the peer claims; drop the body as it streams past.
    return Skip(length) ? ReadResult::kOversize : ReadResult::kClosed;
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
    ssize_t n = ::write(fd_.get(), rest.data(), rest.size());
    if (n > 0) {
      rest.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!WaitFor(POLLOUT)) return false;
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
