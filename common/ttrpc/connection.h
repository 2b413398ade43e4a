// Internal: one ttrpc connection's framing and the state shared by its client or
// server side. Not part of the public API (ttrpc.h).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/base/unique_fd.h"
#include "common/ttrpc/ttrpc.h"

namespace beaconbox::ttrpc::internal {

enum FrameType : uint8_t { kRequest = 1, kResponse = 2, kData = 3 };
enum FrameFlags : uint8_t { kRemoteClosed = 0x1, kRemoteOpen = 0x2, kNoData = 0x4 };
constexpr size_t kHeaderSize = 10;
// A stream's unread messages are bounded: past either limit the connection's reader
// waits for the consumer (back-pressure, as Go's ttrpc), so a peer cannot make us
// queue without bound.
constexpr size_t kMaxQueuedMessages = 256;
constexpr size_t kMaxQueuedBytesFactor = 4;  // times Options::max_message_size

struct Frame {
  uint32_t stream_id = 0;
  uint8_t type = 0;
  uint8_t flags = 0;
  std::string payload;
};

// The bytes one connection holds for its consumers: messages queued on all its
// streams and the request payloads of its running handlers. The connection's reader
// reads the next frame only while the budget is not spent, so a peer cannot make one
// connection hold more than Options::max_buffered_bytes plus one message, however
// many streams it opens. Thread-safe.
class ByteBudget {
 public:
  explicit ByteBudget(size_t limit) : limit_(limit) {}
  // Waits until some of the budget is free or `stopped` is set; false on stop.
  bool WaitForRoom(const std::atomic<bool>& stopped) {
    std::unique_lock lock(mutex_);
    freed_.wait(lock, [&] { return used_ < limit_ || stopped.load(); });
    return !stopped.load();
  }
  void Take(size_t n) {
    std::lock_guard lock(mutex_);
    used_ += n;
  }
  void Give(size_t n) {
    std::lock_guard lock(mutex_);
    used_ -= std::min(n, used_);
    freed_.notify_all();
  }
  void Wake() {
    std::lock_guard lock(mutex_);
    freed_.notify_all();
  }
  size_t used() const {
    std::lock_guard lock(mutex_);
    return used_;
  }

 private:
  const size_t limit_;
  mutable std::mutex mutex_;
  std::condition_variable freed_;
  size_t used_ = 0;
};

// Messages received on one stream, waiting for their consumer. Their bytes count
// against the connection's budget until they are taken or dropped.
struct MessageQueue {
  std::shared_ptr<ByteBudget> budget;  // the connection's
  std::deque<std::string> messages;
  size_t bytes = 0;

  MessageQueue() = default;
  MessageQueue(const MessageQueue&) = delete;
  MessageQueue& operator=(const MessageQueue&) = delete;
  ~MessageQueue() { Clear(); }

  bool Full(size_t max_message_size) const {
    return messages.size() >= kMaxQueuedMessages ||
           bytes >= kMaxQueuedBytesFactor * max_message_size;
  }
  void Push(std::string message) {
    bytes += message.size();
    if (budget) budget->Take(message.size());
    messages.push_back(std::move(message));
  }
  std::string Pop() {
    std::string message = std::move(messages.front());
    messages.pop_front();
    bytes -= message.size();
    if (budget) budget->Give(message.size());
    return message;
  }
  // The consumer went away: what it never took is dropped.
  void Clear() {
    if (budget) budget->Give(bytes);
    messages.clear();
    bytes = 0;
  }
};

// State of one call or stream on the client side.
struct ClientStreamState {
  std::shared_ptr<Connection> connection;
  uint32_t stream_id = 0;
  bool client_streaming = false;
  bool unary = false;  // a Call: data frames are a protocol error
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::mutex mutex;
  std::condition_variable changed;
  MessageQueue queue;
  bool finished = false;   // the stream ended: Response, remote-closed data, or failure
  bool abandoned = false;  // the caller went away; the reader drops what comes
  bool send_closed = false;
  RpcStatus status;
  std::string final_payload;
  bool final_payload_taken = false;
};

// State of one stream on the server side.
struct ServerStreamState {
  std::shared_ptr<Connection> connection;
  uint32_t stream_id = 0;
  bool server_streaming = true;
  std::mutex mutex;
  std::condition_variable changed;
  MessageQueue queue;
  bool remote_closed = false;
  bool handler_done = false;
  bool final_response_set = false;
  std::string final_response;
  bool oversize_sent = false;  // a Send over the limit: the stream ends in an error
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(UniqueFd fd, Options options);
  ~Connection();

  const Options& options() const { return options_; }

  enum class ReadResult { kFrame, kOversize, kClosed };
  // Reads the next frame. For an oversize frame only the header is read (nothing
  // is allocated): the caller answers it, then calls SkipPayload(*oversize_length).
  ReadResult ReadFrame(Frame* frame, uint32_t* oversize_length);
  // Drops `n` bytes as they stream past; false when the connection ended first.
  bool SkipPayload(size_t n);
  // Writes one frame atomically with respect to other writers.
  bool WriteFrame(uint32_t stream_id, uint8_t type, uint8_t flags, std::string_view payload);

  // Stops I/O: wakes a blocked reader or writer; later writes fail. Idempotent.
  void Shutdown();
  // Closes the descriptor; call once no thread reads any more.
  void CloseFd();
  bool closed() const;

  // Client side. `mutex` guards the maps below; `start_mutex` keeps request frames
  // in stream id order on the wire (Go's ttrpc 1.2 server refuses a smaller id).
  std::mutex mutex;
  std::mutex start_mutex;
  uint32_t next_stream_id = 1;
  std::map<uint32_t, std::shared_ptr<ClientStreamState>> client_streams;
  std::thread reader;
  void FailAll(const RpcStatus& status);

  // What this connection holds for its consumers, both sides (see ByteBudget).
  const std::shared_ptr<ByteBudget> budget;
  // Waits until the budget has room; false when the connection stopped first.
  bool WaitForBudget() { return budget->WaitForRoom(shut_down_); }

  // Server side.
  std::map<uint32_t, std::shared_ptr<ServerStreamState>> server_streams;
  size_t active_handlers = 0;
  std::condition_variable handler_finished;
  uint32_t last_stream_id = 0;

 private:
  bool Fill();  // reads more bytes into the buffer
  bool ReadExact(char* out, size_t n);
  // Polls the fd and the wake eventfd. kHangup: the fd reported only POLLHUP.
  enum class Ready { kReady, kHangup, kStopped };
  Ready WaitFor(short events);

  const Options options_;
  UniqueFd fd_;
  bool is_socket_ = false;
  UniqueFd wake_fd_;
  mutable std::mutex write_mutex_;
  std::atomic<bool> shut_down_{false};
  std::string buffer_;
  size_t buffer_start_ = 0;
  size_t buffer_end_ = 0;
};

}  // namespace beaconbox::ttrpc::internal
