#include "host/shim/io_relay.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include <cerrno>

#include "common/base/unique_fd.h"

namespace beaconbox::shim {
namespace {

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// A thread blocked in open() on a FIFO waits for a peer. Opening the other end
// without blocking releases it, so Stop never hangs on a client that went away.
void UnblockFifoOpen(const std::string& path, int our_flags) {
  int peer_flags = (our_flags == O_WRONLY ? O_RDONLY : O_WRONLY) | O_NONBLOCK | O_CLOEXEC;
  UniqueFd fd(::open(path.c_str(), peer_flags));
}

}  // namespace

IoRelay::IoRelay(GuestClient& guest, std::string container_id, std::string exec_id,
                 StdioPaths paths)
    : guest_(guest),
      container_id_(std::move(container_id)),
      exec_id_(std::move(exec_id)),
      paths_(std::move(paths)),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

IoRelay::~IoRelay() { Stop(); }

void IoRelay::Start() {
  std::lock_guard lock(mutex_);
  if (!paths_.stdout_path.empty()) {
    ++outputs_open_;
    threads_.emplace_back([this] { CopyOutput(guestapi::STREAM_STDOUT, paths_.stdout_path); });
  }
  if (!paths_.stderr_path.empty() && !paths_.terminal) {
    ++outputs_open_;
    threads_.emplace_back([this] { CopyOutput(guestapi::STREAM_STDERR, paths_.stderr_path); });
  }
  if (!paths_.stdin_path.empty()) {
    threads_.emplace_back([this] { CopyInput(paths_.stdin_path); });
  }
}

void IoRelay::OutputDone() {
  std::lock_guard lock(mutex_);
  --outputs_open_;
  drained_.notify_all();
}

bool IoRelay::WaitOutputDrained(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return drained_.wait_for(lock, timeout, [this] { return outputs_open_ == 0; });
}

void IoRelay::CopyOutput(guestapi::Stream stream, const std::string& fifo_path) {
  UniqueFd fifo(::open(fifo_path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fifo) {
    spdlog::warn("{}: opening {} failed: {}", container_id_, fifo_path, std::strerror(errno));
  }
  guestapi::ReadOutputRequest request;
  request.set_container_id(container_id_);
  request.set_exec_id(exec_id_);
  request.set_stream(stream);
  auto opened = guest_.connection().OpenStream("beaconbox.guest.v1.Guest", "ReadOutput",
                                               request.SerializeAsString(),
                                               /*client_streaming=*/false);
  if (opened.ok()) {
    std::string message;
    guestapi::OutputChunk chunk;
    while ((*opened)->Recv(&message)) {
      if (!chunk.ParseFromString(message)) {
        spdlog::warn("{}: unparsable output chunk from the guest dropped", container_id_);
        continue;
      }
      // A reader that went away (ctr killed) does not stop the drain: the guest's
      // pipe must still be emptied or the container blocks on write.
      if (fifo && !WriteAll(fifo.get(), chunk.data())) fifo.Reset();
    }
    (*opened)->Finish();
  } else if (!opened.ok()) {
    spdlog::warn("{}: output stream: {}", container_id_, opened.error().message);
  }
  OutputDone();
}

void IoRelay::CopyInput(const std::string& fifo_path) {
  // Non-blocking open: a reader's open never waits for a writer, so Stop and
  // CloseIO are never stuck behind a client that opened and closed stdin already
  // (ctr with nothing to send does exactly that).
  UniqueFd fifo(::open(fifo_path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fifo) {
    spdlog::warn("{}: opening {} failed: {}", container_id_, fifo_path, std::strerror(errno));
    return;
  }
  auto opened = guest_.connection().OpenStream("beaconbox.guest.v1.Guest", "WriteInput", "",
                                               /*client_streaming=*/true);
  if (!opened.ok()) {
    spdlog::warn("{}: input stream: {}", container_id_, opened.error().message);
    return;
  }
  auto& stream = *opened;
  guestapi::InputChunk chunk;
  chunk.set_container_id(container_id_);
  chunk.set_exec_id(exec_id_);
  // The first message names the process even before any input arrives.
  bool alive = stream->Send(chunk.SerializeAsString());
  char buffer[32 * 1024];
  while (alive) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_ || stdin_closed_) break;
    }
    // POLLHUP comes only once a writer connected and left: that is stdin's EOF.
    pollfd fds[2] = {{fifo.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) break;  // Stop or CloseIO
    ssize_t n = ::read(fifo.get(), buffer, sizeof(buffer));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    chunk.set_data(buffer, static_cast<size_t>(n));
    alive = stream->Send(chunk.SerializeAsString());
  }
  (void)stream->CloseSend();
  stream->Finish();
}

void IoRelay::CloseStdin() {
  {
    std::lock_guard lock(mutex_);
    if (stdin_closed_) return;
    stdin_closed_ = true;
  }
  Wake();
}

void IoRelay::Wake() {
  uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
}

void IoRelay::Stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    threads.swap(threads_);
  }
  if (threads.empty()) return;
  Wake();
  if (!paths_.stdout_path.empty()) UnblockFifoOpen(paths_.stdout_path, O_WRONLY);
  if (!paths_.stderr_path.empty()) UnblockFifoOpen(paths_.stderr_path, O_WRONLY);
  for (auto& thread : threads) thread.join();
}

}  // namespace beaconbox::shim
