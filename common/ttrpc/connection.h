// Internal: one ttrpc connection's framing and the state shared by its client or
// server side. Not part of the public API (ttrpc.h).
#pragma once

#include <atomic>
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

struct Frame {
  uint32_t stream_id = 0;
  uint8_t type = 0;
  uint8_t flags = 0;
  std::string payload;
};

// State of one call or stream on the client side.
struct ClientStreamState {
  std::shared_ptr<Connection> connection;
  uint32_t stream_id = 0;
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<std::string> messages;
  bool finished = false;  // the final Response arrived (or the connection died)
  RpcStatus status;
  std::string final_payload;
  bool final_payload_taken = false;
};

// State of one stream on the server side.
struct ServerStreamState {
  std::shared_ptr<Connection> connection;
  uint32_t stream_id = 0;
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<std::string> messages;
  bool remote_closed = false;
  std::string final_response;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(UniqueFd fd, Options options);
  ~Connection();

  const Options& options() const { return options_; }

  enum class ReadResult { kFrame, kOversize, kClosed };
  // Reads the next frame. An oversize frame's body is skipped without being stored;
  // its header fields are still filled in.
  ReadResult ReadFrame(Frame* frame);
  // Writes one frame atomically with respect to other writers.
  bool WriteFrame(uint32_t stream_id, uint8_t type, uint8_t flags, std::string_view payload);

  // Stops I/O: wakes a blocked reader or writer; later writes fail. Idempotent.
  void Shutdown();
  // Closes the descriptor; call once no thread reads any more.
  void CloseFd();
  bool closed() const;

  // Client side.
  std::mutex mutex;
  uint32_t next_stream_id = 1;
  std::map<uint32_t, std::shared_ptr<ClientStreamState>> client_streams;
  std::thread reader;
  void FailAll(const RpcStatus& status);

  // Server side.
  std::map<uint32_t, std::shared_ptr<ServerStreamState>> server_streams;
  size_t active_handlers = 0;

 private:
  bool Fill();                       // reads more bytes into the buffer
  bool ReadExact(char* out, size_t n);
  bool Skip(size_t n);
  bool WaitFor(short events);        // poll the fd and the wake eventfd

  const Options options_;
  UniqueFd fd_;
  UniqueFd wake_fd_;
  mutable std::mutex write_mutex_;
  std::atomic<bool> shut_down_{false};
  std::string buffer_;
  size_t buffer_start_ = 0;
  size_t buffer_end_ = 0;
};

}  // namespace beaconbox::ttrpc::internal
