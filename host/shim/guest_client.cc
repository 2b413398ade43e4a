#include "host/shim/guest_client.h"

namespace beaconbox::shim {

Error ErrorFromRpc(const ttrpc::RpcStatus& status, std::string_view what) {
  ErrorCode code = ErrorCode::kInternal;
  switch (status.code) {
    case ttrpc::Code::kInvalidArgument: code = ErrorCode::kInvalidArgument; break;
    case ttrpc::Code::kNotFound: code = ErrorCode::kNotFound; break;
    case ttrpc::Code::kAlreadyExists: code = ErrorCode::kAlreadyExists; break;
    case ttrpc::Code::kPermissionDenied: code = ErrorCode::kPermission; break;
    case ttrpc::Code::kDeadlineExceeded: code = ErrorCode::kTimeout; break;
    case ttrpc::Code::kUnimplemented: code = ErrorCode::kNotImplemented; break;
    case ttrpc::Code::kUnavailable: code = ErrorCode::kUnavailable; break;
    case ttrpc::Code::kFailedPrecondition: code = ErrorCode::kFailedPrecondition; break;
    case ttrpc::Code::kResourceExhausted: code = ErrorCode::kExhausted; break;
    default: break;
  }
  // The guest's text is passed on, but bounded: it is untrusted and ends up in logs.
  std::string message = status.message.substr(0, 1024);
  return Error{code, std::string(what) + ": " + message};
}

GuestClient::GuestClient(UniqueFd channel)
    : client_(std::make_unique<ttrpc::Client>(std::move(channel))) {}

Status GuestClient::Call(std::string_view service, std::string_view method,
                         const google::protobuf::MessageLite& request,
                         google::protobuf::MessageLite* response,
                         std::chrono::milliseconds timeout) {
  ttrpc::CallOptions options;
  options.timeout = timeout;
  std::string response_bytes;
  ttrpc::RpcStatus status =
      client_->Call(service, method, request.SerializeAsString(), &response_bytes, options);
  std::string what = "guest " + std::string(method);
  if (!status.ok()) return ErrorFromRpc(status, what);
  if (response != nullptr && !response->ParseFromString(response_bytes)) {
    return MakeError(ErrorCode::kInternal, what + ": unparsable answer from the guest");
  }
  return Status::Ok();
}

}  // namespace beaconbox::shim
