#include "host/shim/event_publisher.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>

#include "common/base/errno_error.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"

namespace beaconbox::shim {
namespace {

Result<UniqueFd> DialUnix(std::string_view address) {
  if (address.starts_with("unix://")) address.remove_prefix(7);
  sockaddr_un addr{};
  if (address.empty() || address.size() >= sizeof(addr.sun_path)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "bad ttrpc address '" + std::string(address) + "'");
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError("socket", "");
  addr.sun_family = AF_UNIX;
  address.copy(addr.sun_path, address.size());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError("connect", address);
  }
  return fd;
}

}  // namespace

EventPublisher::EventPublisher(std::string ttrpc_address, std::string namespace_name)
    : address_(std::move(ttrpc_address)), namespace_(std::move(namespace_name)) {}

void EventPublisher::Publish(const std::string& topic, const google::protobuf::MessageLite& event) {
  if (address_.empty()) {
    spdlog::debug("no TTRPC_ADDRESS: event {} not published", topic);
    return;
  }
  containerd::services::events::ttrpc::v1::ForwardRequest request;
  auto* envelope = request.mutable_envelope();
  auto now = std::chrono::system_clock::now().time_since_epoch();
  envelope->mutable_timestamp()->set_seconds(
      std::chrono::duration_cast<std::chrono::seconds>(now).count());
  envelope->mutable_timestamp()->set_nanos(static_cast<int32_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now).count() % 1000000000));
  envelope->set_namespace_(namespace_);
  envelope->set_topic(topic);
  // containerd resolves events by their protobuf full name, without a URL prefix.
  envelope->mutable_event()->set_type_url(event.GetTypeName());
  envelope->mutable_event()->set_value(event.SerializeAsString());

  std::lock_guard lock(mutex_);
  Status status = Forward(request.SerializeAsString());
  if (!status.ok() && status.error().code == ErrorCode::kUnavailable) {
    client_.reset();  // containerd restarted or closed us: one fresh connection
    status = Forward(request.SerializeAsString());
  }
  if (!status.ok()) {
    spdlog::warn("publishing {} to containerd failed: {}", topic, status.error().message);
  }
}

Status EventPublisher::Forward(const std::string& request) {
  if (!client_ || client_->closed()) {
    BBX_ASSIGN_OR_RETURN(UniqueFd fd, DialUnix(address_));
    client_ = std::make_unique<ttrpc::Client>(std::move(fd));
  }
  ttrpc::CallOptions options;
  options.timeout = std::chrono::seconds(5);
  options.metadata.emplace_back("containerd-namespace-ttrpc", namespace_);
  std::string response;
  ttrpc::RpcStatus status = client_->Call("containerd.services.events.ttrpc.v1.Events", "Forward",
                                          request, &response, options);
  if (!status.ok()) {
    return MakeError(
        status.code == ttrpc::Code::kUnavailable ? ErrorCode::kUnavailable : ErrorCode::kInternal,
        status.message);
  }
  return Status::Ok();
}

}  // namespace beaconbox::shim
