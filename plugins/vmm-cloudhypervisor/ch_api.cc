#include "plugins/vmm-cloudhypervisor/ch_api.h"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <sstream>

#include "common/base/fd_passing.h"
#include "common/base/file_util.h"

namespace beaconbox::cloudhv {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

constexpr size_t kMaxErrorBodyInMessage = 400;

}  // namespace

Error ApiCallError(std::string_view call, const ApiResponse& response) {
  std::string body = response.body.substr(0, kMaxErrorBodyInMessage);
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r' || body.back() == ' ')) {
    body.pop_back();
  }
  std::string line = "cloud-hypervisor API " + std::string(call) + ": HTTP " +
                     std::to_string(response.status) +
                     (response.reason.empty() ? "" : " " + PrintableOneLine(response.reason));
  if (!body.empty()) line += ": " + PrintableOneLine(body);
  ErrorCode code = ErrorCode::kInternal;
  if (response.status == 404 && body.empty()) {
    line += " (this cloud-hypervisor does not know the call, or has no VM: upgrade it)";
    code = ErrorCode::kNotFound;
  } else if (response.status == 405) {
    line += " (this cloud-hypervisor does not serve the call that way: upgrade it)";
    code = ErrorCode::kNotImplemented;
  } else if (response.status >= 400 && response.status < 500) {
    code = response.status == 404   ? ErrorCode::kNotFound
           : response.status == 409 ? ErrorCode::kAlreadyExists
           : response.status == 429 ? ErrorCode::kUnavailable
                                    : ErrorCode::kInvalidArgument;
  } else if (response.status >= 500) {
    code = ErrorCode::kUnavailable;
  }
  return MakeError(code, line);
}

Result<ApiResponse> ApiClient::Send(std::string_view method, std::string_view call,
                                    const std::optional<std::string>& json_body,
                                    std::chrono::milliseconds timeout,
                                    const std::vector<int>& fds) {
  const auto started = std::chrono::steady_clock::now();
  if (fds.size() > kMaxApiFds ||
      std::any_of(fds.begin(), fds.end(), [](int fd) { return fd < 0; })) {
    return MakeError(ErrorCode::kInvalidArgument, "cloud-hypervisor API " + std::string(call) +
                                                      ": " + std::to_string(fds.size()) +
                                                      " descriptors (want at most " +
                                                      std::to_string(kMaxApiFds) + ", all open)");
  }
  http::verb verb = http::string_to_verb(beast::string_view(method.data(), method.size()));
  if (verb == http::verb::unknown) {
    return MakeError(ErrorCode::kInternal, "unknown HTTP method " + std::string(method));
  }
  http::request<http::string_body> request{verb, "/api/v1/" + std::string(call), 11};
  request.set(http::field::host, "localhost");
  request.set(http::field::accept, "application/json");
  if (json_body) {
    request.set(http::field::content_type, "application/json");
    request.body() = *json_body;
  }
  request.prepare_payload();

  asio::io_context context;
  asio::local::stream_protocol::socket socket(context);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxApiBodyBytes);
  parser.header_limit(64 * 1024);
  beast::error_code failure;
  std::string failed_step;
  std::optional<Error> send_failure;  // sending with descriptors failed
  bool done = false;
  socket.async_connect(
      asio::local::stream_protocol::endpoint(socket_path_), [&](beast::error_code connected) {
        if (connected) {
          failure = connected;
          failed_step = "connect";
          done = true;
          return;
        }
        auto read_answer = [&](beast::error_code written, size_t) {
          if (written) {
            failure = written;
            failed_step = "send";
            done = true;
            return;
          }
          http::async_read(socket, buffer, parser, [&](beast::error_code read, size_t) {
            failure = read;
            failed_step = "read the answer";
            done = true;
          });
        };
        if (fds.empty()) {
          http::async_write(socket, request, read_answer);
          return;
        }
        // Beast's writer has no ancillary data: the request goes out whole with one
        // sendmsg carrying the descriptors (the rest, if the socket took less, after).
        std::ostringstream text;
        text << request;
        Status sent = SendWithFds(socket.native_handle(), text.str(), fds, started + timeout);
        if (!sent.ok()) {
          send_failure = sent.error();
          done = true;
          return;
        }
        read_answer({}, 0);
      });
  context.run_for(timeout);
  const std::string what = "cloud-hypervisor API " + std::string(call) + " on " + socket_path_;
  if (!done) {
    return MakeError(ErrorCode::kTimeout, what + ": no answer within " +
                                              std::to_string(timeout.count()) +
                                              " ms: the VMM hangs or is gone");
  }
  if (send_failure) return send_failure->Wrap(what + ": cannot send");
  if (failure) {
    return MakeError(failed_step == "connect" ? ErrorCode::kUnavailable : ErrorCode::kInternal,
                     what + ": cannot " + failed_step + ": " + failure.message());
  }
  ApiResponse response;
  const auto& message = parser.get();
  response.status = message.result_int();
  response.reason = std::string(message.reason());
  response.body = message.body();
  {
    std::lock_guard<std::mutex> lock(timings_mutex_);
    ApiTiming& timing = timings_[std::string(call)];
    ++timing.calls;
    timing.total += std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now() - started);
  }
  return response;
}

Result<std::string> ApiClient::Call(std::string_view method, std::string_view call,
                                    const std::optional<std::string>& json_body,
                                    std::chrono::milliseconds timeout,
                                    const std::vector<int>& fds) {
  BBX_ASSIGN_OR_RETURN(ApiResponse response, Send(method, call, json_body, timeout, fds));
  if (response.status >= 200 && response.status < 300) return std::move(response.body);
  return ApiCallError(call, response);
}

std::map<std::string, ApiTiming> ApiClient::timings() const {
  std::lock_guard<std::mutex> lock(timings_mutex_);
  return timings_;
}

}  // namespace beaconbox::cloudhv
