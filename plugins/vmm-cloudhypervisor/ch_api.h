// Cloud Hypervisor's REST API (HTTP/1.1 on the unix socket of --api-socket), spoken
// with Boost.Beast; bodies are JSON (nlohmann). One connection per call: the API
// server is local and a call is rare next to the guest's work.
//
// CH answers a failed call with a 4xx/5xx status and a plain-text body (the Rust
// error chain); ApiCallError turns that into one line naming the call.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::cloudhv {

// A body larger than this is refused (CH's answers are a few KiB; vm.info with a
// device tree stays well under it).
inline constexpr size_t kMaxApiBodyBytes = 1 << 20;

// Descriptors one request may carry (vm.add-net takes one per queue pair; the plugin
// sends one). The kernel's own limit per message is 253.
inline constexpr size_t kMaxApiFds = 16;

struct ApiResponse {
  unsigned status = 0;
  std::string reason;  // "Bad Request"
  std::string body;
};

// "cloud-hypervisor API <call>: HTTP <status> <reason>: <body as one printable line>".
// 404 and 405 say the VMM does not know the call (too old); 5xx and 4xx carry CH's text.
Error ApiCallError(std::string_view call, const ApiResponse& response);

// Time spent per call name, for the plugin's own measurements (bench/).
struct ApiTiming {
  uint64_t calls = 0;
  std::chrono::nanoseconds total{0};
};

class ApiClient {
 public:
  explicit ApiClient(std::string socket_path) : socket_path_(std::move(socket_path)) {}

  // Sends `method` ("GET" or "PUT") to /api/v1/<call> with `json_body` (none: no
  // body) and returns the answer whatever its status. Errors: the socket cannot be
  // reached, the exchange exceeds `timeout`, the answer is not HTTP or too large.
  // `fds` (at most kMaxApiFds) ride as SCM_RIGHTS with the request's first bytes, the
  // one way CH takes descriptors (vm.add-net's TAPs); the caller still owns them.
  Result<ApiResponse> Send(std::string_view method, std::string_view call,
                           const std::optional<std::string>& json_body,
                           std::chrono::milliseconds timeout, const std::vector<int>& fds = {});

  // Send, then a 2xx status is success (the body is returned, "" for 204) and any
  // other status the one-line ApiCallError.
  Result<std::string> Call(std::string_view method, std::string_view call,
                           const std::optional<std::string>& json_body,
                           std::chrono::milliseconds timeout, const std::vector<int>& fds = {});

  const std::string& socket_path() const { return socket_path_; }
  std::map<std::string, ApiTiming> timings() const;

 private:
  std::string socket_path_;
  mutable std::mutex timings_mutex_;
  std::map<std::string, ApiTiming> timings_;
};

}  // namespace beaconbox::cloudhv
