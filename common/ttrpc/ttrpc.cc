#include "common/ttrpc/ttrpc.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <exception>
#include <thread>

#include "common/base/errno_error.h"
#include "common/ttrpc/connection.h"
#include "common/ttrpc/wire.pb.h"

namespace beaconbox::ttrpc {

using internal::ClientStreamState;
using internal::Connection;
using internal::Frame;
using internal::ServerStreamState;

RpcStatus RpcStatusFromError(const Error& error) {
  Code code = Code::kUnknown;
  switch (error.code) {
    case ErrorCode::kInvalidArgument: code = Code::kInvalidArgument; break;
    case ErrorCode::kNotFound: code = Code::kNotFound; break;
    case ErrorCode::kAlreadyExists: code = Code::kAlreadyExists; break;
    case ErrorCode::kPermission: code = Code::kPermissionDenied; break;
    case ErrorCode::kUnavailable: code = Code::kUnavailable; break;
    case ErrorCode::kExhausted: code = Code::kResourceExhausted; break;
    case ErrorCode::kTimeout: code = Code::kDeadlineExceeded; break;
    case ErrorCode::kNotImplemented: code = Code::kUnimplemented; break;
    case ErrorCode::kFailedPrecondition: code = Code::kFailedPrecondition; break;
    case ErrorCode::kInternal: code = Code::kInternal; break;
  }
  return RpcStatus{code, error.message};
}

Error ErrorFromRpcStatus(const RpcStatus& status) {
  ErrorCode code = ErrorCode::kInternal;
  switch (status.code) {
    case Code::kInvalidArgument: code = ErrorCode::kInvalidArgument; break;
    case Code::kNotFound: code = ErrorCode::kNotFound; break;
    case Code::kAlreadyExists: code = ErrorCode::kAlreadyExists; break;
    case Code::kPermissionDenied: code = ErrorCode::kPermission; break;
    case Code::kUnavailable: code = ErrorCode::kUnavailable; break;
    case Code::kResourceExhausted: code = ErrorCode::kExhausted; break;
    case Code::kDeadlineExceeded: code = ErrorCode::kTimeout; break;
    case Code::kUnimplemented: code = ErrorCode::kNotImplemented; break;
    case Code::kFailedPrecondition: code = ErrorCode::kFailedPrecondition; break;
    default: break;
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
    return !state_->messages.empty() || state_->remote_closed || state_->connection->closed();
  });
  if (state_->messages.empty()) return false;
  *message = std::move(state_->messages.front());
  state_->messages.pop_front();
  return true;
}

bool ServerStream::Send(std::string_view message) {
  return state_->connection->WriteFrame(state_->stream_id, internal::kData, 0, message);
}

void ServerStream::SetFinalResponse(std::string payload) {
  std::lock_guard lock(state_->mutex);
  state_->final_response = std::move(payload);
}

Server::Server(Options options)
    : options_(options), wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

Server::~Server() { Shutdown(); }

void Server::RegisterUnary(std::string service, std::string method, UnaryHandler handler) {
  methods_[service + "/" + method] = Method{std::move(handler), nullptr};
}

void Server::RegisterStream(std::string service, std::string method, StreamHandler handler) {
  methods_[service + "/" + method] = Method{nullptr, std::move(handler)};
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

}  // namespace

void Server::ServeConnection(UniqueFd fd) {
  auto connection = std::make_shared<Connection>(std::move(fd), options_);
  {
    std::lock_guard lock(mutex_);
    if (shutdown_) return;
    connections_.push_back(connection);
  }
  Frame frame;
  while (true) {
    auto result = connection->ReadFrame(&frame);
    if (result == Connection::ReadResult::kClosed) break;
    if (result == Connection::ReadResult::kOversize) {
      if (frame.type == internal::kRequest) {
        connection->WriteFrame(frame.stream_id, internal::kResponse, 0,
                               EncodeResponse({Code::kResourceExhausted,
                                               "request larger than the maximum message size"},
                                              ""));
      }
      continue;
    }
    if (frame.type == internal::kData) {
      std::shared_ptr<ServerStreamState> stream;
      {
        std::lock_guard lock(connection->mutex);
        auto it = connection->server_streams.find(frame.stream_id);
        if (it != connection->server_streams.end()) stream = it->second;
      }
      if (!stream) continue;  // a stream that already ended: late data is dropped
      std::lock_guard lock(stream->mutex);
      if (!(frame.flags & internal::kNoData)) {
        if (stream->messages.size() >= 1024) continue;  // bounded: a flooding peer loses data
        stream->messages.push_back(std::move(frame.payload));
      }
      if (frame.flags & internal::kRemoteClosed) stream->remote_closed = true;
      stream->changed.notify_all();
      continue;
    }
    if (frame.type != internal::kRequest) continue;  // unknown types are skipped

    wire::Request request;
    if (!request.ParseFromString(frame.payload) || frame.stream_id % 2 == 0) break;  // garbage
    const Method* method = Find(request.service(), request.method());
    if (method == nullptr) {
      connection->WriteFrame(
          frame.stream_id, internal::kResponse, 0,
          EncodeResponse({Code::kUnimplemented,
                          "service " + request.service() + ": method " + request.method() +
                              " not implemented"},
                         ""));
      continue;
    }
    {
      std::lock_guard lock(connection->mutex);
      if (connection->active_handlers >= options_.max_concurrent_handlers) {
        connection->WriteFrame(frame.stream_id, internal::kResponse, 0,
                               EncodeResponse({Code::kResourceExhausted, "too many calls in flight"},
                                              ""));
        continue;
      }
      ++connection->active_handlers;
    }
    auto context = std::make_shared<ServerContext>();
    for (const auto& kv : request.metadata()) context->metadata_.emplace_back(kv.key(), kv.value());
    if (request.timeout_nano() > 0) {
      context->deadline_ =
          std::chrono::steady_clock::now() + std::chrono::nanoseconds(request.timeout_nano());
    }
    context->connection_ = connection;
    uint32_t stream_id = frame.stream_id;

    if (method->unary) {
      std::thread([connection, context, stream_id, handler = method->unary,
                   payload = std::move(*request.mutable_payload())] {
        std::string response;
        RpcStatus status = RunHandler([&] { return handler(*context, payload, &response); });
        connection->WriteFrame(stream_id, internal::kResponse, 0, EncodeResponse(status, response));
        std::lock_guard lock(connection->mutex);
        --connection->active_handlers;
      }).detach();
      continue;
    }

    auto stream = std::make_shared<ServerStreamState>();
    stream->connection = connection;
    stream->stream_id = stream_id;
    if (!request.payload().empty() || !(frame.flags & internal::kRemoteOpen)) {
      stream->messages.push_back(std::move(*request.mutable_payload()));
    }
    stream->remote_closed = !(frame.flags & internal::kRemoteOpen);
    {
      std::lock_guard lock(connection->mutex);
      connection->server_streams[stream_id] = stream;
    }
    std::thread([connection, context, stream, handler = method->stream] {
      ServerStream server_stream(stream);
      RpcStatus status = RunHandler([&] { return handler(*context, server_stream); });
      std::string final_response;
      {
        std::lock_guard lock(stream->mutex);
        final_response = stream->final_response;
      }
      connection->WriteFrame(stream->stream_id, internal::kResponse, 0,
                             EncodeResponse(status, final_response));
      std::lock_guard lock(connection->mutex);
      connection->server_streams.erase(stream->stream_id);
      --connection->active_handlers;
      stream->connection.reset();  // breaks the cycle connection -> stream -> connection
    }).detach();
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
    std::thread([this, fd] { ServeConnection(UniqueFd(fd)); }).detach();
  }
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

void ClientReadLoop(Connection* connection) {
  Frame frame;
  while (true) {
    auto result = connection->ReadFrame(&frame);
    if (result == Connection::ReadResult::kClosed) break;
    std::shared_ptr<ClientStreamState> stream;
    {
      std::lock_guard lock(connection->mutex);
      auto it = connection->client_streams.find(frame.stream_id);
      if (it != connection->client_streams.end()) stream = it->second;
      if (stream && (result == Connection::ReadResult::kOversize ||
                     frame.type == internal::kResponse)) {
        connection->client_streams.erase(it);
      }
    }
    if (!stream) continue;  // a call that timed out or was abandoned
    std::lock_guard lock(stream->mutex);
    if (result == Connection::ReadResult::kOversize) {
      stream->finished = true;
      stream->status = {Code::kResourceExhausted, "response larger than the maximum message size"};
    } else if (frame.type == internal::kResponse) {
      wire::Response response;
      stream->finished = true;
      if (!response.ParseFromString(frame.payload)) {
        stream->status = {Code::kDataLoss, "unparsable ttrpc response"};
      } else {
        stream->status = {static_cast<Code>(response.status().code()), response.status().message()};
        if (stream->status.code < Code::kOk || stream->status.code > Code::kUnauthenticated) {
          stream->status.code = Code::kUnknown;
        }
        stream->final_payload = std::move(*response.mutable_payload());
      }
    } else if (frame.type == internal::kData) {
      if (!(frame.flags & internal::kNoData) && stream->messages.size() < 1024) {
        stream->messages.push_back(std::move(frame.payload));
      }
    }
    stream->changed.notify_all();
  }
  connection->Shutdown();
  connection->FailAll({Code::kUnavailable, "ttrpc: connection closed"});
}

}  // namespace

Client::Client(UniqueFd fd, Options options)
    : connection_(std::make_shared<Connection>(std::move(fd), options)) {
  connection_->reader = std::thread([connection = connection_.get()] { ClientReadLoop(connection); });
}

Client::~Client() { Close(); }

void Client::Close() {
  connection_->Shutdown();
  if (connection_->reader.joinable() &&
      connection_->reader.get_id() != std::this_thread::get_id()) {
    connection_->reader.join();
  }
  connection_->FailAll({Code::kUnavailable, "ttrpc: client closed"});
  connection_->CloseFd();
}

bool Client::closed() const { return connection_->closed(); }

namespace {

// Registers a new stream and sends its request frame.
Result<std::shared_ptr<ClientStreamState>> StartCall(const std::shared_ptr<Connection>& connection,
                                                     std::string_view service,
                                                     std::string_view method,
                                                     std::string_view payload, uint8_t flags,
                                                     const CallOptions& options) {
  wire::Request request;
  request.set_service(std::string(service));
  request.set_method(std::string(method));
  request.set_payload(std::string(payload));
  if (options.timeout.count() > 0) {
    request.set_timeout_nano(
        std::chrono::duration_cast<std::chrono::nanoseconds>(options.timeout).count());
  }
  for (const auto& [key, value] : options.metadata) {
    auto* kv = request.add_metadata();
    kv->set_key(key);
    kv->set_value(value);
  }
  std::string bytes = request.SerializeAsString();
  if (bytes.size() > connection->options().max_message_size) {
    return MakeError(ErrorCode::kExhausted, "request larger than the maximum message size");
  }
  auto stream = std::make_shared<ClientStreamState>();
  stream->connection = connection;
  {
    std::lock_guard lock(connection->mutex);
    if (connection->closed()) {
      return MakeError(ErrorCode::kUnavailable, "ttrpc: connection closed");
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

void Abandon(const std::shared_ptr<ClientStreamState>& stream) {
  std::lock_guard lock(stream->connection->mutex);
  stream->connection->client_streams.erase(stream->stream_id);
}

}  // namespace

RpcStatus Client::Call(std::string_view service, std::string_view method, std::string_view request,
                       std::string* response, const CallOptions& options) {
  auto started = StartCall(connection_, service, method, request, 0, options);
  if (!started.ok()) return RpcStatusFromError(started.error());
  auto stream = *started;
  std::unique_lock lock(stream->mutex);
  auto done = [&] { return stream->finished; };
  if (options.timeout.count() > 0) {
    if (!stream->changed.wait_for(lock, options.timeout, done)) {
      lock.unlock();
      Abandon(stream);
      return RpcStatus{Code::kDeadlineExceeded, std::string(method) + ": deadline exceeded"};
    }
  } else {
    stream->changed.wait(lock, done);
  }
  if (stream->status.ok() && response != nullptr) *response = std::move(stream->final_payload);
  return stream->status;
}

Result<std::unique_ptr<ClientStream>> Client::OpenStream(std::string_view service,
                                                         std::string_view method,
                                                         std::string_view request,
                                                         bool client_streaming,
                                                         const CallOptions& options) {
  uint8_t flags = client_streaming ? internal::kRemoteOpen : internal::kRemoteClosed;
  BBX_ASSIGN_OR_RETURN(auto stream,
                       StartCall(connection_, service, method, request, flags, options));
  return std::make_unique<ClientStream>(std::move(stream));
}

ClientStream::ClientStream(std::shared_ptr<ClientStreamState> state) : state_(std::move(state)) {}

ClientStream::~ClientStream() { Abandon(state_); }

bool ClientStream::Send(std::string_view message) {
  return state_->connection->WriteFrame(state_->stream_id, internal::kData, 0, message);
}

Status ClientStream::CloseSend() {
  if (!state_->connection->WriteFrame(state_->stream_id, internal::kData,
                                      internal::kRemoteClosed | internal::kNoData, "")) {
    return MakeError(ErrorCode::kUnavailable, "ttrpc: connection closed");
  }
  return Status::Ok();
}

bool ClientStream::Recv(std::string* message) {
  std::unique_lock lock(state_->mutex);
  state_->changed.wait(lock, [this] { return !state_->messages.empty() || state_->finished; });
  if (!state_->messages.empty()) {
    *message = std::move(state_->messages.front());
    state_->messages.pop_front();
    return true;
  }
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
  state_->changed.wait(lock, [this] { return state_->finished; });
  return state_->status;
}

}  // namespace beaconbox::ttrpc
