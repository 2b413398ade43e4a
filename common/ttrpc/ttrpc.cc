#include "common/ttrpc/ttrpc.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <thread>

#include "common/base/errno_error.h"
#include "common/ttrpc/connection.h"
#include "common/ttrpc/wire.pb.h"
#include "common/ttrpc/worker_pool.h"

namespace beaconbox::ttrpc {

using internal::ClientStreamState;
using internal::Connection;
using internal::Frame;
using internal::ServerStreamState;

RpcStatus RpcStatusFromError(const Error& error) {
  Code code = Code::kUnknown;
  switch (error.code) {
    case ErrorCode::kInvalidArgument:
      code = Code::kInvalidArgument;
      break;
    case ErrorCode::kNotFound:
      code = Code::kNotFound;
      break;
    case ErrorCode::kAlreadyExists:
      code = Code::kAlreadyExists;
      break;
    case ErrorCode::kPermission:
      code = Code::kPermissionDenied;
      break;
    case ErrorCode::kUnavailable:
      code = Code::kUnavailable;
      break;
    case ErrorCode::kExhausted:
      code = Code::kResourceExhausted;
      break;
    case ErrorCode::kTimeout:
      code = Code::kDeadlineExceeded;
      break;
    case ErrorCode::kNotImplemented:
      code = Code::kUnimplemented;
      break;
    case ErrorCode::kFailedPrecondition:
      code = Code::kFailedPrecondition;
      break;
    case ErrorCode::kInternal:
      code = Code::kInternal;
      break;
  }
  return RpcStatus{code, error.message};
}

Error ErrorFromRpcStatus(const RpcStatus& status) {
  ErrorCode code = ErrorCode::kInternal;
  switch (status.code) {
    case Code::kInvalidArgument:
      code = ErrorCode::kInvalidArgument;
      break;
    case Code::kNotFound:
      code = ErrorCode::kNotFound;
      break;
    case Code::kAlreadyExists:
      code = ErrorCode::kAlreadyExists;
      break;
    case Code::kPermissionDenied:
      code = ErrorCode::kPermission;
      break;
    case Code::kUnavailable:
      code = ErrorCode::kUnavailable;
      break;
    case Code::kResourceExhausted:
      code = ErrorCode::kExhausted;
      break;
    case Code::kDeadlineExceeded:
      code = ErrorCode::kTimeout;
      break;
    case Code::kUnimplemented:
      code = ErrorCode::kNotImplemented;
      break;
    case Code::kFailedPrecondition:
      code = ErrorCode::kFailedPrecondition;
      break;
    default:
      break;
  }
  return Error{code, status.message};
}

// ---------------------------------------------------------------------------
// Server

std::string ServerContext::MetadataValue(std::string_view key) const {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return v;
  }
  return "";
}

bool ServerContext::cancelled() const { return connection_ == nullptr || connection_->closed(); }

ServerStream::ServerStream(std::shared_ptr<ServerStreamState> state) : state_(std::move(state)) {}

bool ServerStream::Recv(std::string* message) {
  std::unique_lock lock(state_->mutex);
  state_->changed.wait(lock, [this] {
    return !state_->queue.messages.empty() || state_->remote_closed || state_->connection->closed();
  });
  if (state_->queue.messages.empty()) return false;
  *message = state_->queue.Pop();
  state_->changed.notify_all();  // the reader may be waiting for room
  return true;
}

bool ServerStream::Send(std::string_view message) {
  if (!state_->server_streaming) return false;
  if (message.size() > state_->connection->options().max_message_size) {
    // Not sent, and not silently: the client gets an error in place of a stream
    // that would look complete without this message.
    std::lock_guard lock(state_->mutex);
    state_->oversize_sent = true;
    return false;
  }
  return state_->connection->WriteFrame(state_->stream_id, internal::kData, 0, message);
}

void ServerStream::SetFinalResponse(std::string payload) {
  std::lock_guard lock(state_->mutex);
  state_->final_response = std::move(payload);
  state_->final_response_set = true;
}

Server::Server(Options options)
    : options_(options), wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

Server::~Server() {
  Shutdown();
  std::unique_lock lock(mutex_);
  serve_threads_done_.wait(lock, [this] { return serve_threads_ == 0; });
}

void Server::RegisterUnary(std::string service, std::string method, UnaryHandler handler) {
  methods_[service + "/" + method] = Method{std::move(handler), nullptr, {}};
}

void Server::RegisterStream(std::string service, std::string method, StreamHandler handler,
                            StreamDesc desc) {
  methods_[service + "/" + method] = Method{nullptr, std::move(handler), desc};
}

const Server::Method* Server::Find(const std::string& service, const std::string& method) const {
  auto it = methods_.find(service + "/" + method);
  return it == methods_.end() ? nullptr : &it->second;
}

namespace {

std::string EncodeResponse(const RpcStatus& status, std::string_view payload) {
  wire::Response response;
  response.mutable_status()->set_code(static_cast<int32_t>(status.code));
  response.mutable_status()->set_message(status.message);
  if (status.ok()) response.set_payload(std::string(payload));
  return response.SerializeAsString();
}

// Sends the final Response of a call. One too large for the peer to accept is
// replaced by an error, so the caller does not wait for an answer that never comes.
void SendResponse(Connection& connection, uint32_t stream_id, const RpcStatus& status,
                  std::string_view payload) {
  std::string bytes = EncodeResponse(status, payload);
  if (bytes.size() > connection.options().max_message_size) {
    bytes = EncodeResponse(
        {Code::kResourceExhausted, "response larger than the maximum message size"}, "");
  }
  connection.WriteFrame(stream_id, internal::kResponse, 0, bytes);
}

// Runs a handler and turns an escaping exception into kInternal: a bug in one
// handler must not take the whole process down.
template <typename Fn>
RpcStatus RunHandler(Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& exception) {
    return RpcStatus{Code::kInternal, std::string("handler failed: ") + exception.what()};
  } catch (...) {
    return RpcStatus{Code::kInternal, "handler failed"};
  }
}

void ReleaseHandlerSlot(Connection& connection) {
  std::lock_guard lock(connection.mutex);
  --connection.active_handlers;
  connection.handler_finished.notify_all();
}

// Queues a data frame for a stream's consumer, waiting while its queue is full.
// Returns false when the connection ended meanwhile.
template <typename State, typename Gone>
void Enqueue(Connection& connection, State& stream, std::string message, Gone gone) {
  std::unique_lock lock(stream.mutex);
  stream.changed.wait(lock, [&] {
    return !stream.queue.Full(connection.options().max_message_size) || gone() ||
           connection.closed();
  });
  if (gone() || connection.closed()) return;
  stream.queue.Push(std::move(message));
  stream.changed.notify_all();
}

void DeliverServerData(Connection& connection, Frame& frame) {
  std::shared_ptr<ServerStreamState> stream;
  {
    std::lock_guard lock(connection.mutex);
    auto it = connection.server_streams.find(frame.stream_id);
    if (it != connection.server_streams.end()) stream = it->second;
  }
  if (!stream) return;  // a stream that already ended: late data is dropped
  auto gone = [&] { return stream->handler_done || stream->remote_closed; };
  if (!(frame.flags & internal::kNoData)) {
    Enqueue(connection, *stream, std::move(frame.payload), gone);
  }
  if (frame.flags & internal::kRemoteClosed) {
    std::lock_guard lock(stream->mutex);
    stream->remote_closed = true;
    stream->changed.notify_all();
  }
}

}  // namespace

// Waits for a free handler slot on `connection`; false when none came in time.
static bool AcquireHandlerSlot(Connection& connection, const Options& options) {
  std::unique_lock lock(connection.mutex);
  bool free = connection.handler_finished.wait_for(lock, options.handler_wait, [&] {
    return connection.active_handlers < options.max_concurrent_handlers || connection.closed();
  });
  if (!free || connection.closed()) return false;
  ++connection.active_handlers;
  return true;
}

void Server::ServeConnection(UniqueFd fd) {
  auto connection = std::make_shared<Connection>(std::move(fd), options_);
  {
    std::lock_guard lock(mutex_);
    if (shutdown_) return;
    std::erase_if(connections_, [](const auto& weak) { return weak.expired(); });
    connections_.push_back(connection);
  }
  Frame frame;
  while (true) {
    if (!connection->WaitForBudget()) break;
    uint32_t oversize_length = 0;
    auto result = connection->ReadFrame(&frame, &oversize_length);
    if (result == Connection::ReadResult::kClosed) break;
    if (result == Connection::ReadResult::kOversize) {
      // Answered at once; the body is then dropped as it arrives.
      if (frame.type == internal::kRequest) {
        SendResponse(*connection, frame.stream_id,
                     {Code::kResourceExhausted, "request of " + std::to_string(oversize_length) +
                                                    " bytes is larger than the maximum of " +
                                                    std::to_string(options_.max_message_size)},
                     "");
      }
      if (!connection->SkipPayload(oversize_length)) break;
      continue;
    }
    if (frame.type == internal::kData) {
      DeliverServerData(*connection, frame);
      continue;
    }
    if (frame.type != internal::kRequest) continue;  // unknown types are skipped, as Go does

    wire::Request request;
    if (!request.ParseFromString(frame.payload) || frame.stream_id % 2 == 0) break;  // garbage
    const uint32_t stream_id = frame.stream_id;
    // Before anything else: a refused peer learns nothing (methods, stream ids).
    if (options_.authorizer) {
      Metadata metadata;
      for (const auto& kv : request.metadata()) metadata.emplace_back(kv.key(), kv.value());
      RpcStatus allowed = RunHandler(
          [&] { return options_.authorizer(request.service(), request.method(), metadata); });
      if (!allowed.ok()) {
        SendResponse(*connection, stream_id, allowed, "");
        continue;
      }
    }
    if (stream_id <= connection->last_stream_id) {
      SendResponse(*connection, stream_id,
                   {Code::kInvalidArgument, "stream id reused: ids must increase"}, "");
      continue;
    }
    connection->last_stream_id = stream_id;
    const Method* method = Find(request.service(), request.method());
    if (method == nullptr) {
      SendResponse(*connection, stream_id,
                   {Code::kUnimplemented, "service " + request.service() + ": method " +
                                              request.method() + " not implemented"},
                   "");
      continue;
    }
    if (!AcquireHandlerSlot(*connection, options_)) {
      if (connection->closed()) break;
      SendResponse(*connection, stream_id, {Code::kResourceExhausted, "too many calls in flight"},
                   "");
      continue;
    }
    auto context = std::make_shared<ServerContext>();
    for (const auto& kv : request.metadata()) context->metadata_.emplace_back(kv.key(), kv.value());
    if (request.timeout_nano() > 0) {
      // The peer's timeout may be anything up to 2^63 ns: one that steady_clock cannot
      // represent from now on (the sum would overflow) means no deadline.
      const auto now = std::chrono::steady_clock::now();
      const std::chrono::nanoseconds timeout(request.timeout_nano());
      if (timeout < std::chrono::steady_clock::time_point::max() - now) {
        context->deadline_ = now + timeout;
      }
    }
    context->connection_ = connection;

    if (method->unary) {
      // The request counts against the connection's budget until its handler ends.
      const size_t request_bytes = request.payload().size();
      connection->budget->Take(request_bytes);
      internal::RunOnPool([connection, context, stream_id, request_bytes, handler = method->unary,
                           payload = std::move(*request.mutable_payload())] {
        std::string response;
        RpcStatus status = RunHandler([&] { return handler(*context, payload, &response); });
        SendResponse(*connection, stream_id, status, response);
        connection->budget->Give(request_bytes);
        ReleaseHandlerSlot(*connection);
      });
      continue;
    }

    auto stream = std::make_shared<ServerStreamState>();
    stream->connection = connection;
    stream->stream_id = stream_id;
    stream->server_streaming = method->desc.server_streaming;
    stream->queue.budget = connection->budget;
    // The request payload is the first message, except for a client-streaming
    // method called with none (Go's rule, so that an empty request is no message).
    if (!request.payload().empty() || !method->desc.client_streaming) {
      stream->queue.Push(std::move(*request.mutable_payload()));
    }
    stream->remote_closed = !(frame.flags & internal::kRemoteOpen);
    {
      std::lock_guard lock(connection->mutex);
      connection->server_streams[stream_id] = stream;
    }
    internal::RunOnPool([connection, context, stream, handler = method->stream] {
      ServerStream server_stream(stream);
      RpcStatus status = RunHandler([&] { return handler(*context, server_stream); });
      bool respond;
      std::string final_response;
      {
        std::lock_guard lock(stream->mutex);
        stream->handler_done = true;
        stream->queue.Clear();         // messages the handler never took
        stream->changed.notify_all();  // a reader waiting for room gives up
        if (status.ok() && stream->oversize_sent) {
          status = {Code::kResourceExhausted,
                    "stream message larger than the maximum message size not sent"};
        }
        respond = !status.ok() || !stream->server_streaming || stream->final_response_set;
        final_response = std::move(stream->final_response);
      }
      {
        std::lock_guard lock(connection->mutex);
        connection->server_streams.erase(stream->stream_id);
      }
      if (respond) {
        SendResponse(*connection, stream->stream_id, status, final_response);
      } else {
        // ttrpc 1.2: a server stream ends with an empty remote-closed data frame.
        connection->WriteFrame(stream->stream_id, internal::kData,
                               internal::kRemoteClosed | internal::kNoData, "");
      }
      stream->connection.reset();  // breaks the cycle connection -> stream -> connection
      ReleaseHandlerSlot(*connection);
    });
  }
  // The peer is gone: wake every stream handler waiting for client messages. The
  // handlers still running keep the connection object; their writes now fail.
  connection->Shutdown();
  std::map<uint32_t, std::shared_ptr<ServerStreamState>> streams;
  {
    std::lock_guard lock(connection->mutex);
    streams = connection->server_streams;
  }
  for (auto& [id, stream] : streams) {
    std::lock_guard lock(stream->mutex);
    stream->remote_closed = true;
    stream->changed.notify_all();
  }
  connection->CloseFd();
}

Status Server::Serve(int listen_fd) {
  while (true) {
    pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("poll", "ttrpc listener");
    }
    if (fds[1].revents != 0) return Status::Ok();
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      return ErrnoError("accept", "ttrpc listener");
    }
    {
      std::lock_guard lock(mutex_);
      ++serve_threads_;
    }
    std::thread([this, fd] {
      ServeConnection(UniqueFd(fd));
      std::lock_guard lock(mutex_);
      --serve_threads_;
      serve_threads_done_.notify_all();
    }).detach();
  }
}

size_t Server::buffered_bytes() {
  std::lock_guard lock(mutex_);
  size_t total = 0;
  for (auto& weak : connections_) {
    if (auto connection = weak.lock()) total += connection->budget->used();
  }
  return total;
}

void Server::Shutdown() {
  std::vector<std::weak_ptr<Connection>> connections;
  {
    std::lock_guard lock(mutex_);
    if (shutdown_) return;
    shutdown_ = true;
    connections.swap(connections_);
  }
  uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
  for (auto& weak : connections) {
    if (auto connection = weak.lock()) connection->Shutdown();
  }
}

// ---------------------------------------------------------------------------
// Client

namespace {

// Ends a call or stream with `status` (first end wins) and wakes its waiters.
void Finish(ClientStreamState& stream, RpcStatus status, std::string final_payload = "") {
  std::lock_guard lock(stream.mutex);
  if (stream.finished) return;
  stream.finished = true;
  stream.status = std::move(status);
  stream.final_payload = std::move(final_payload);
  stream.changed.notify_all();
}

void DeliverResponse(ClientStreamState& stream, const std::string& payload) {
  wire::Response response;
  if (!response.ParseFromString(payload)) {
    Finish(stream, {Code::kDataLoss, "unparsable ttrpc response"});
    return;
  }
  RpcStatus status{static_cast<Code>(response.status().code()), response.status().message()};
  if (status.code < Code::kOk || status.code > Code::kUnauthenticated) status.code = Code::kUnknown;
  Finish(stream, std::move(status), std::move(*response.mutable_payload()));
}

void ClientReadLoop(Connection* connection) {
  Frame frame;
  while (true) {
    if (!connection->WaitForBudget()) break;
    uint32_t oversize_length = 0;
    auto result = connection->ReadFrame(&frame, &oversize_length);
    if (result == Connection::ReadResult::kClosed) break;
    bool ends_stream = result == Connection::ReadResult::kOversize ||
                       frame.type == internal::kResponse ||
                       (frame.type == internal::kData && (frame.flags & internal::kRemoteClosed));
    std::shared_ptr<ClientStreamState> stream;
    {
      std::lock_guard lock(connection->mutex);
      auto it = connection->client_streams.find(frame.stream_id);
      if (it != connection->client_streams.end()) {
        stream = it->second;
        if (stream->unary && frame.type == internal::kData) ends_stream = true;
        if (ends_stream) connection->client_streams.erase(it);
      }
    }
    if (result == Connection::ReadResult::kOversize) {
      // The call fails at once; the body is then dropped as it arrives.
      if (stream) {
        Finish(*stream, {Code::kResourceExhausted,
                         "response of " + std::to_string(oversize_length) +
                             " bytes is larger than the maximum of " +
                             std::to_string(connection->options().max_message_size)});
      }
      if (!connection->SkipPayload(oversize_length)) break;
      continue;
    }
    if (!stream) continue;  // a call that timed out or was abandoned
    if (frame.type == internal::kResponse) {
      DeliverResponse(*stream, frame.payload);
    } else if (frame.type == internal::kData && stream->unary) {
      Finish(*stream, {Code::kInternal, "ttrpc protocol error: stream data for a unary call"});
    } else if (frame.type == internal::kData) {
      if (!(frame.flags & internal::kNoData)) {
        Enqueue(*connection, *stream, std::move(frame.payload),
                [&] { return stream->abandoned || stream->finished; });
      }
      // ttrpc 1.2: remote-closed data is a server stream's successful end.
      if (frame.flags & internal::kRemoteClosed) Finish(*stream, {});
    }
  }
  connection->Shutdown();
  connection->FailAll({Code::kUnavailable, "ttrpc: connection closed"});
}

}  // namespace

Client::Client(UniqueFd fd, Options options)
    : connection_(std::make_shared<Connection>(std::move(fd), options)) {
  connection_->next_stream_id = std::max<uint32_t>(options.first_stream_id | 1u, 1u);
  connection_->reader =
      std::thread([connection = connection_.get()] { ClientReadLoop(connection); });
}

Client::~Client() { Close(); }

uint32_t Client::next_stream_id() const {
  // Not start_mutex: a writer may hold it, blocked on a paused peer (a checkpoint).
  std::lock_guard lock(connection_->mutex);
  return connection_->next_stream_id;
}

void Client::Close() {
  connection_->Shutdown();
  connection_->FailAll({Code::kUnavailable, "ttrpc: client closed"});
  if (connection_->reader.joinable() &&
      connection_->reader.get_id() != std::this_thread::get_id()) {
    connection_->reader.join();
  }
  connection_->CloseFd();
}

bool Client::closed() const { return connection_->closed(); }

namespace {}  // namespace

struct CancellerAccess {
  // Adds a call to `canceller`; false when it was cancelled already.
  static bool Register(Canceller& canceller, const std::shared_ptr<ClientStreamState>& stream) {
    std::lock_guard lock(canceller.mutex_);
    if (canceller.cancelled_) return false;
    std::erase_if(canceller.calls_, [](const auto& weak) { return weak.expired(); });
    canceller.calls_.push_back(stream);
    return true;
  }
};

void Canceller::Cancel() {
  std::vector<std::weak_ptr<ClientStreamState>> calls;
  {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
    calls.swap(calls_);
  }
  for (auto& weak : calls) {
    auto stream = weak.lock();
    if (!stream) continue;
    std::lock_guard lock(stream->mutex);
    if (!stream->finished) {
      stream->finished = true;
      stream->status = {Code::kCancelled, "ttrpc: call cancelled"};
    }
    // The reader drops what still comes, and one waiting for queue room moves on.
    stream->abandoned = true;
    stream->queue.Clear();
    stream->changed.notify_all();
  }
}

bool Canceller::cancelled() const {
  std::lock_guard lock(mutex_);
  return cancelled_;
}

namespace {

// Registers a new stream and sends its request frame.
Result<std::shared_ptr<ClientStreamState>> StartCall(const std::shared_ptr<Connection>& connection,
                                                     std::string_view service,
                                                     std::string_view method,
                                                     std::string_view payload, uint8_t flags,
                                                     bool unary, const CallOptions& options) {
  wire::Request request;
  request.set_service(std::string(service));
  request.set_method(std::string(method));
  request.set_payload(std::string(payload));
  if (options.timeout.count() > 0) {
    request.set_timeout_nano(
        std::chrono::duration_cast<std::chrono::nanoseconds>(options.timeout).count());
  }
  for (const auto& [key, value] : connection->options().default_metadata) {
    auto* kv = request.add_metadata();
    kv->set_key(key);
    kv->set_value(value);
  }
  for (const auto& [key, value] : options.metadata) {
    auto* kv = request.add_metadata();
    kv->set_key(key);
    kv->set_value(value);
  }
  std::string bytes = request.SerializeAsString();
  if (bytes.size() > connection->options().max_message_size) {
    return MakeError(ErrorCode::kExhausted, "request of " + std::to_string(bytes.size()) +
                                                " bytes is larger than the maximum message size");
  }
  auto stream = std::make_shared<ClientStreamState>();
  stream->connection = connection;
  stream->unary = unary;
  stream->queue.budget = connection->budget;
  stream->client_streaming = (flags & internal::kRemoteOpen) != 0;
  if (options.timeout.count() > 0) {
    stream->deadline = std::chrono::steady_clock::now() + options.timeout;
  }
  if (options.canceller && !CancellerAccess::Register(*options.canceller, stream)) {
    return MakeError(ErrorCode::kUnavailable, "ttrpc: call cancelled");
  }
  std::lock_guard start_lock(connection->start_mutex);
  {
    std::lock_guard lock(connection->mutex);
    if (connection->closed()) {
      return MakeError(ErrorCode::kUnavailable, "ttrpc: connection closed");
    }
    // Ids only grow (the server refuses reuse); after 2^31 calls the connection is spent.
    if (connection->next_stream_id > UINT32_MAX - 2) {
      return MakeError(ErrorCode::kUnavailable, "ttrpc: stream ids exhausted; reconnect");
    }
    stream->stream_id = connection->next_stream_id;
    connection->next_stream_id += 2;
    connection->client_streams[stream->stream_id] = stream;
  }
  if (!connection->WriteFrame(stream->stream_id, internal::kRequest, flags, bytes)) {
    std::lock_guard lock(connection->mutex);
    connection->client_streams.erase(stream->stream_id);
    return MakeError(ErrorCode::kUnavailable, "ttrpc: connection closed");
  }
  return stream;
}

// The caller stops listening: later frames for the stream are dropped, and a
// reader waiting for queue room moves on.
void Abandon(ClientStreamState& stream) {
  {
    std::lock_guard lock(stream.connection->mutex);
    stream.connection->client_streams.erase(stream.stream_id);
  }
  std::lock_guard lock(stream.mutex);
  stream.abandoned = true;
  stream.queue.Clear();
  stream.changed.notify_all();
}

// Waits (stream.mutex held by `lock`) until `ready`, or the stream's deadline,
// which then ends the stream with kDeadlineExceeded. False on the deadline.
template <typename Ready>
bool WaitUntilDeadline(ClientStreamState& stream, std::unique_lock<std::mutex>& lock, Ready ready) {
  if (stream.changed.wait_until(lock, stream.deadline, ready)) return true;
  if (!stream.finished) {
    stream.finished = true;
    stream.status = {Code::kDeadlineExceeded, "ttrpc: deadline exceeded"};
  }
  return false;
}

}  // namespace

RpcStatus Client::Call(std::string_view service, std::string_view method, std::string_view request,
                       std::string* response, const CallOptions& options) {
  auto started = StartCall(connection_, service, method, request, 0, /*unary=*/true, options);
  if (!started.ok()) {
    if (options.canceller && options.canceller->cancelled()) {
      return RpcStatus{Code::kCancelled, "ttrpc: call cancelled"};
    }
    return RpcStatusFromError(started.error());
  }
  auto stream = *started;
  std::unique_lock lock(stream->mutex);
  if (!WaitUntilDeadline(*stream, lock, [&] { return stream->finished; })) {
    lock.unlock();
    Abandon(*stream);
    return RpcStatus{Code::kDeadlineExceeded, std::string(method) + ": deadline exceeded"};
  }
  RpcStatus status = stream->status;
  if (status.ok() && response != nullptr) *response = std::move(stream->final_payload);
  lock.unlock();
  // A cancelled call is still registered with the reader; an answered one no longer.
  if (status.code == Code::kCancelled) Abandon(*stream);
  return status;
}

Result<std::unique_ptr<ClientStream>> Client::OpenStream(std::string_view service,
                                                         std::string_view method,
                                                         std::string_view request,
                                                         bool client_streaming,
                                                         const CallOptions& options) {
  uint8_t flags = client_streaming ? internal::kRemoteOpen : internal::kRemoteClosed;
  BBX_ASSIGN_OR_RETURN(auto stream, StartCall(connection_, service, method, request, flags,
                                              /*unary=*/false, options));
  return std::make_unique<ClientStream>(std::move(stream));
}

ClientStream::ClientStream(std::shared_ptr<ClientStreamState> state) : state_(std::move(state)) {}

ClientStream::~ClientStream() { Abandon(*state_); }

bool ClientStream::Send(std::string_view message) {
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->client_streaming || state_->send_closed || state_->finished) return false;
  }
  return state_->connection->WriteFrame(state_->stream_id, internal::kData, 0, message);
}

Status ClientStream::CloseSend() {
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->client_streaming || state_->send_closed || state_->finished) return Status::Ok();
    state_->send_closed = true;
  }
  if (!state_->connection->WriteFrame(state_->stream_id, internal::kData,
                                      internal::kRemoteClosed | internal::kNoData, "")) {
    return MakeError(ErrorCode::kUnavailable, "ttrpc: connection closed");
  }
  return Status::Ok();
}

bool ClientStream::Recv(std::string* message) {
  std::unique_lock lock(state_->mutex);
  bool ready = WaitUntilDeadline(
      *state_, lock, [this] { return !state_->queue.messages.empty() || state_->finished; });
  if (!state_->queue.messages.empty()) {
    *message = state_->queue.Pop();
    state_->changed.notify_all();  // the reader may be waiting for room
    return true;
  }
  if (!ready) return false;
  // A client-streaming call answers with one message in the final response.
  if (state_->status.ok() && !state_->final_payload.empty() && !state_->final_payload_taken) {
    state_->final_payload_taken = true;
    *message = state_->final_payload;
    return true;
  }
  return false;
}

RpcStatus ClientStream::Finish() {
  std::unique_lock lock(state_->mutex);
  WaitUntilDeadline(*state_, lock, [this] { return state_->finished; });
  return state_->status;
}

}  // namespace beaconbox::ttrpc
