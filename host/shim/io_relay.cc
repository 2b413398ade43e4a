#include "host/shim/io_relay.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/base/unique_fd.h"
#include "host/shim/stop_aware_io.h"

namespace beaconbox::shim {
namespace {

using namespace std::chrono_literals;

constexpr char kGuestService[] = "beaconbox.guest.v1.Guest";
// One call's bytes: what each side holds per stream at most.
constexpr uint32_t kOutputChunk = 1 << 20;
constexpr size_t kInputChunk = 64 * 1024;
// How long the guest waits for output (or stdin room) before answering with none;
// the call's deadline adds a margin for a slow (TCG) guest. A guest that does not
// answer by then gets the next call.
constexpr auto kGuestWait = 30s;
constexpr auto kGuestCallTimeout = kGuestWait + 30s;

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
      canceller_(std::make_shared<ttrpc::Canceller>()),
      stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      stdin_close_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

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

bool IoRelay::stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
}

bool IoRelay::WaitOutputDrained(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return drained_.wait_for(lock, timeout, [this] { return outputs_open_ == 0; });
}

ttrpc::RpcStatus IoRelay::CallGuest(std::string_view method,
                                    const google::protobuf::MessageLite& request,
                                    google::protobuf::MessageLite* response) {
  ttrpc::CallOptions options;
  options.timeout = kGuestCallTimeout;
  options.canceller = canceller_;
  return ttrpc::CallProto(guest_.connection(), kGuestService, method, request, response, options);
}

void IoRelay::CopyOutput(guestapi::Stream stream, const std::string& fifo_path) {
  UniqueFd fifo(::open(fifo_path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fifo) {
    spdlog::warn("{}: opening {} failed: {}", container_id_, fifo_path, std::strerror(errno));
  } else {
    int flags = ::fcntl(fifo.get(), F_GETFL);
    if (flags >= 0) ::fcntl(fifo.get(), F_SETFL, flags | O_NONBLOCK);  // Stop can interrupt
  }
  guestapi::ReadOutputRequest request;
  request.set_container_id(container_id_);
  request.set_exec_id(exec_id_);
  request.set_stream(stream);
  request.set_max_bytes(kOutputChunk);
  request.set_wait_ms(static_cast<uint32_t>(kGuestWait.count() * 1000));
  guestapi::ReadOutputResponse chunk;
  while (!stopping()) {
    ttrpc::RpcStatus status = CallGuest("ReadOutput", request, &chunk);
    if (status.code == ttrpc::Code::kDeadlineExceeded) continue;  // the guest is slow: ask again
    if (!status.ok()) {
      if (status.code != ttrpc::Code::kCancelled) {
        spdlog::warn("{}: output stream: {}", container_id_,
                     ErrorFromRpc(status, "guest ReadOutput").message);
      }
      break;
    }
    // A reader that went away (ctr run -d or ctr c restore exited, ctr killed) does not
    // stop the drain: the guest's pipe must still be emptied or the container blocks on
    // write. What comes while nobody reads is dropped; a new reader (ctr task attach)
    // gets the output from then on: the FIFO is opened again, without waiting, when
    // there is output to give.
    if (!fifo && !chunk.data().empty()) {
      fifo.Reset(::open(fifo_path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));  // ENXIO: none
    }
    if (fifo && !chunk.data().empty() && !WriteAll(fifo.get(), chunk.data(), stop_fd_.get())) {
      if (stopping()) break;
      fifo.Reset();
    }
    if (chunk.eof()) break;
  }
  OutputDone();
}

bool IoRelay::PushInput(std::string_view data) {
  guestapi::WriteInputRequest request;
  request.set_container_id(container_id_);
  request.set_exec_id(exec_id_);
  request.set_wait_ms(static_cast<uint32_t>(kGuestWait.count() * 1000));
  guestapi::WriteInputResponse response;
  while (!data.empty()) {
    if (stopping()) return false;
    request.set_data(data.data(), data.size());
    ttrpc::RpcStatus status = CallGuest("WriteInput", request, &response);
    if (status.code == ttrpc::Code::kDeadlineExceeded) continue;
    if (!status.ok()) {
      if (status.code != ttrpc::Code::kCancelled) {
        spdlog::warn("{}: stdin: {}", container_id_,
                     ErrorFromRpc(status, "guest WriteInput").message);
      }
      return false;
    }
    data.remove_prefix(std::min<size_t>(response.written(), data.size()));
  }
  return true;
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
  std::string buffer(kInputChunk, '\0');
  bool closing = false;  // CloseIO: send what the FIFO holds now, then close
  while (true) {
    if (!closing) {
      // POLLHUP comes only once a writer connected and left: that is stdin's EOF.
      pollfd fds[3] = {
          {fifo.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}, {stdin_close_fd_.get(), POLLIN, 0}};
      if (::poll(fds, 3, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (fds[1].revents != 0) return;  // Stop: the guest's Delete closes stdin
      closing = fds[2].revents != 0;
    }
    ssize_t n = ::read(fifo.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (closing) break;
      continue;
    }
    if (n <= 0) break;
    if (!PushInput(std::string_view(buffer.data(), static_cast<size_t>(n)))) return;
  }
  if (stopping()) return;
  guestapi::CloseInputRequest request;
  request.set_container_id(container_id_);
  request.set_exec_id(exec_id_);
  guestapi::Empty empty;
  ttrpc::RpcStatus status = CallGuest("CloseInput", request, &empty);
  if (!status.ok() && status.code != ttrpc::Code::kCancelled) {
    spdlog::warn("{}: {}", container_id_, ErrorFromRpc(status, "guest CloseInput").message);
  }
}

void IoRelay::CloseStdin() {
  {
    std::lock_guard lock(mutex_);
    if (stdin_closed_) return;
    stdin_closed_ = true;
  }
  Signal(stdin_close_fd_.get());
}

void IoRelay::Stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    threads.swap(threads_);
  }
  if (threads.empty()) return;
  Signal(stop_fd_.get());
  canceller_->Cancel();  // guest calls in flight end now
  if (!paths_.stdout_path.empty()) UnblockFifoOpen(paths_.stdout_path, O_WRONLY);
  if (!paths_.stderr_path.empty()) UnblockFifoOpen(paths_.stderr_path, O_WRONLY);
  for (auto& thread : threads) thread.join();
}

}  // namespace beaconbox::shim
