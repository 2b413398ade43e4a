// ttrpc: containerd's small RPC protocol, one implementation for the shim and the
// guest agent. Wire format (as github.com/containerd/ttrpc, including the 1.2 streams):
// frames of a 10-byte header (u32 BE length, u32 BE stream id, u8 type, u8 flags)
// followed by `length` bytes: a Request (type 1), a Response (type 2) or stream data
// (type 3). Clients use odd stream ids.
//
// The peer may be hostile (the guest runs container code): frame sizes are checked
// before anything is allocated, garbage closes the connection, and the number of
// handlers a peer can start at once is bounded.
#pragma once

#include <google/protobuf/message_lite.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox::ttrpc {

// gRPC status codes, as ttrpc carries them (google.rpc.Code).
enum class Code : int32_t {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

struct RpcStatus {
  Code code = Code::kOk;
  std::string message;
  bool ok() const { return code == Code::kOk; }
};

RpcStatus RpcStatusFromError(const Error& error);
Error ErrorFromRpcStatus(const RpcStatus& status);

using Metadata = std::vector<std::pair<std::string, std::string>>;

// Decides whether a request may run, from its method and metadata, before anything
// else is done with it (unknown methods included). kOk lets it run; any other status
// is the answer and no handler runs (its stream's data frames are then dropped as
// those of a finished stream). Runs on the connection's reader thread: it must be
// quick and must not block.
using Authorizer = std::function<RpcStatus(std::string_view service, std::string_view method,
                                           const Metadata& metadata)>;

struct Options {
  // Largest frame accepted or sent, as Go's ttrpc default.
  size_t max_message_size = 4 << 20;
  // Handlers one connection may run at once. A request beyond that waits (the
  // connection stops reading) up to `handler_wait`, then gets kResourceExhausted.
  size_t max_concurrent_handlers = 128;
  std::chrono::milliseconds handler_wait{1000};
  // Bytes one connection holds for its consumers, all streams together: messages
  // not yet taken and the requests of running handlers. Past it the connection stops
  // reading until a consumer takes something (back-pressure on the peer), so one
  // connection holds at most this plus one message.
  size_t max_buffered_bytes = 32 << 20;
  // Client: sent with every call and stream, before CallOptions::metadata (e.g. the
  // token that seals the guest agent's channel).
  Metadata default_metadata;
  // Server: every request goes through it when set (see Authorizer).
  Authorizer authorizer;
  // Client: the first stream id (odd; an even value is taken as the next odd one). A
  // server that keeps its connection across a reconnect (a VM restored from a
  // checkpoint: its agent still holds the saved session) refuses ids it has seen.
  uint32_t first_stream_id = 1;
};

// Which sides of a stream method carry a stream (as ttrpc 1.2's StreamDesc). It sets
// how the server ends the stream: a server-streaming method ends with an empty
// remote-closed data frame, any other with a Response carrying the final payload
// (ServerStream::SetFinalResponse). Errors always end with a Response.
struct StreamDesc {
  bool client_streaming = true;
  bool server_streaming = true;
};

namespace internal {
class Connection;
struct ServerStreamState;
struct ClientStreamState;
}  // namespace internal

// Cancels client calls from another thread: Cancel() ends every call and stream
// started with it (CallOptions::canceller), in flight or later, with kCancelled.
// As with Go's ttrpc, nothing goes on the wire: the server's handler runs on and
// its late answer is dropped. Thread-safe.
class Canceller {
 public:
  void Cancel();
  bool cancelled() const;

 private:
  friend struct CancellerAccess;
  mutable std::mutex mutex_;
  bool cancelled_ = false;
  std::vector<std::weak_ptr<internal::ClientStreamState>> calls_;  // guarded by mutex_
};

struct CallOptions {
  Metadata metadata;
  std::chrono::milliseconds timeout{0};  // 0: no deadline
  std::shared_ptr<Canceller> canceller;  // null: the call cannot be cancelled
};

class ServerContext {
 public:
  const Metadata& metadata() const { return metadata_; }
  // First value of `key`, or "" when absent.
  std::string MetadataValue(std::string_view key) const;
  // The client's deadline; time_point::max() when it set none.
  std::chrono::steady_clock::time_point deadline() const { return deadline_; }
  // True once the connection this request came on is closed.
  bool cancelled() const;

 private:
  friend class Server;
  Metadata metadata_;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  std::shared_ptr<internal::Connection> connection_;
};

// A stream seen by its handler. Recv gives the client's messages: for a method the
// client does not stream to, the request payload is the only one.
class ServerStream {
 public:
  explicit ServerStream(std::shared_ptr<internal::ServerStreamState> state);
  bool Recv(std::string* message);  // false at the client's end of stream
  // False when the connection is gone, or the method is not server-streaming.
  bool Send(std::string_view message);
  // Payload of the final response, for methods answering a client stream with one
  // message. Setting it makes the stream end with a Response even when the method
  // is registered as server-streaming.
  void SetFinalResponse(std::string payload);

 private:
  std::shared_ptr<internal::ServerStreamState> state_;
};

using UnaryHandler =
    std::function<RpcStatus(ServerContext&, std::string_view request, std::string* response)>;
using StreamHandler = std::function<RpcStatus(ServerContext&, ServerStream&)>;

class Server {
 public:
  explicit Server(Options options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void RegisterUnary(std::string service, std::string method, UnaryHandler handler);
  void RegisterStream(std::string service, std::string method, StreamHandler handler,
                      StreamDesc desc = {});

  // Serves one connected stream (socket or character device) until the peer closes
  // it or Shutdown is called. Handlers run on a process-wide thread pool and may
  // outlive this call and the Server (they hold copies of what they need); a
  // handler sees the end as Recv/Send failing and ServerContext::cancelled().
  void ServeConnection(UniqueFd fd);
  // Accepts on `listen_fd` (not owned) and serves each connection on its own
  // thread, until Shutdown.
  Status Serve(int listen_fd);
  // Stops Serve and every connection. The destructor also waits for the
  // connection threads Serve started.
  void Shutdown();
  // Bytes held now for handlers, all connections together (see
  // Options::max_buffered_bytes): what a peer has made this server buffer.
  size_t buffered_bytes();

 private:
  struct Method {
    UnaryHandler unary;
    StreamHandler stream;
    StreamDesc desc;
  };
  friend class internal::Connection;
  const Method* Find(const std::string& service, const std::string& method) const;

  const Options options_;
  std::map<std::string, Method> methods_;  // "service/method"
  std::mutex mutex_;
  bool shutdown_ = false;
  UniqueFd wake_fd_;  // eventfd: wakes Serve and every connection on Shutdown
  std::vector<std::weak_ptr<internal::Connection>> connections_;
  std::condition_variable serve_threads_done_;
  size_t serve_threads_ = 0;  // connection threads started by Serve, still running
};

class ClientStream {
 public:
  explicit ClientStream(std::shared_ptr<internal::ClientStreamState> state);
  ~ClientStream();
  // False when the connection is gone, the stream ended, or the call is not
  // client-streaming.
  bool Send(std::string_view message);
  Status CloseSend();  // end of the client's messages; a no-op for non-client streams
  // False at the end of the server's messages. The final Response's payload (a
  // client-streaming method's one answer), when not empty, comes as the last message.
  bool Recv(std::string* message);
  RpcStatus Finish();  // the final status; waits for it (or the call's deadline)

 private:
  std::shared_ptr<internal::ClientStreamState> state_;
};

class Client {
 public:
  explicit Client(UniqueFd fd, Options options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Thread-safe: many calls may be in flight on one connection.
  RpcStatus Call(std::string_view service, std::string_view method, std::string_view request,
                 std::string* response, const CallOptions& options = {});

  // Opens a stream. `request` is the request message; for a client-streaming call
  // (`client_streaming`) it is usually empty and messages follow with Send. A
  // deadline (options.timeout) covers the whole stream: Recv and Finish give up then
  // and Finish reports kDeadlineExceeded.
  Result<std::unique_ptr<ClientStream>> OpenStream(std::string_view service,
                                                   std::string_view method,
                                                   std::string_view request, bool client_streaming,
                                                   const CallOptions& options = {});
  // A client-streaming (or bidirectional) stream with no request payload: every
  // message goes with Send.
  Result<std::unique_ptr<ClientStream>> OpenStream(std::string_view service,
                                                   std::string_view method,
                                                   const CallOptions& options = {}) {
    return OpenStream(service, method, "", /*client_streaming=*/true, options);
  }

  // Fails pending calls with kUnavailable and stops the reader. Idempotent.
  void Close();
  bool closed() const;
  // The id the next call or stream gets.
  uint32_t next_stream_id() const;

 private:
  std::shared_ptr<internal::Connection> connection_;
};

// Typed helpers.
inline RpcStatus CallProto(Client& client, std::string_view service, std::string_view method,
                           const google::protobuf::MessageLite& request,
                           google::protobuf::MessageLite* response,
                           const CallOptions& options = {}) {
  std::string bytes;
  RpcStatus status = client.Call(service, method, request.SerializeAsString(), &bytes, options);
  if (status.ok() && response != nullptr && !response->ParseFromString(bytes)) {
    return RpcStatus{Code::kInternal, "unparsable response to " + std::string(method)};
  }
  return status;
}

template <typename Request, typename Response>
void RegisterUnaryProto(
    Server& server, std::string service, std::string method,
    std::function<RpcStatus(ServerContext&, const Request&, Response*)> handler) {
  server.RegisterUnary(
      std::move(service), method,
      [handler = std::move(handler), method](ServerContext& context, std::string_view bytes,
                                             std::string* out) {
        Request request;
        if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
          return RpcStatus{Code::kInvalidArgument, "unparsable request to " + method};
        }
        Response response;
        RpcStatus status = handler(context, request, &response);
        if (status.ok()) response.SerializeToString(out);
        return status;
      });
}

}  // namespace beaconbox::ttrpc
