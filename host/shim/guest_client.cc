#include "host/shim/guest_client.h"

#include <sys/random.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "common/base/agent_token.h"
#include "common/base/file_util.h"

namespace beaconbox::shim {

Error ErrorFromRpc(const ttrpc::RpcStatus& status, std::string_view what) {
  // The guest's text is passed on, but bounded and as one printable line: it is
  // untrusted and ends up in logs and in containerd (whose protobuf refuses strings
  // that are not UTF-8).
  Error error = ttrpc::ErrorFromRpcStatus(status);
  error.message = std::string(what) + ": " + PrintableOneLine(error.message.substr(0, 1024));
  return error;
}

namespace {

ttrpc::Options GuestOptions(const std::string& agent_token, uint32_t first_stream_id) {
  ttrpc::Options options;
  options.first_stream_id = first_stream_id;
  if (!agent_token.empty()) options.default_metadata = {{kAgentTokenMetadataKey, agent_token}};
  return options;
}

}  // namespace

GuestClient::GuestClient(UniqueFd channel, const std::string& agent_token, uint32_t first_stream_id)
    : client_(std::make_unique<ttrpc::Client>(std::move(channel),
                                              GuestOptions(agent_token, first_stream_id))) {}

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

std::string DescribeGuestBoot(const guestapi::HelloResponse& hello) {
  constexpr int kMaxSteps = 16;
  constexpr size_t kMaxNameLength = 32;
  constexpr uint64_t kMaxAtUs = uint64_t{3600} * 1000 * 1000;
  std::string line;
  int kept = 0;
  for (const guestapi::BootStep& step : hello.boot_steps()) {
    if (kept == kMaxSteps) break;
    const std::string& name = step.name();
    bool valid = !name.empty() && name.size() <= kMaxNameLength && step.at_us() < kMaxAtUs &&
                 std::all_of(name.begin(), name.end(), [](char c) {
                   return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
                 });
    if (!valid) continue;
    char figure[64];
    std::snprintf(figure, sizeof(figure), " %.1f ms", static_cast<double>(step.at_us()) / 1000.0);
    if (!line.empty()) line += ", ";
    line += name + figure;
    ++kept;
  }
  return line.empty() ? "none" : line;
}

namespace {

int64_t RealtimeNs() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

}  // namespace

Status CheckRefreshReply(const guestapi::RefreshResponse& reply, size_t sent,
                         int64_t host_before_ns, int64_t host_after_ns) {
  if (reply.entropy_bytes_added() != sent) {
    return MakeError(ErrorCode::kInternal, "guest Refresh: the guest says it added " +
                                               std::to_string(reply.entropy_bytes_added()) +
                                               " random bytes, " + std::to_string(sent) +
                                               " were sent");
  }
  constexpr int64_t kSecond = 1000000000;
  const int64_t guest = reply.unix_time_ns();
  if (guest < host_before_ns - kSecond || guest > host_after_ns + 5 * kSecond) {
    return MakeError(ErrorCode::kInternal, "guest Refresh: the guest's clock reads " +
                                               std::to_string(guest) +
                                               " ns after setting it to the host's " +
                                               std::to_string(host_before_ns) + " ns");
  }
  return Status::Ok();
}

Status RefreshGuest(GuestClient& guest, std::chrono::milliseconds timeout, bool* refreshed,
                    uint64_t* refreshed_at_us) {
  *refreshed = false;
  if (refreshed_at_us != nullptr) *refreshed_at_us = 0;
  constexpr size_t kEntropyBytes = 64;
  std::string entropy(kEntropyBytes, '\0');
  size_t have = 0;
  while (have < entropy.size()) {
    ssize_t n = ::getrandom(entropy.data() + have, entropy.size() - have, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return MakeError(
          ErrorCode::kInternal,
          "getrandom failed making the guest's fresh random bytes: errno " + std::to_string(errno));
    }
    have += static_cast<size_t>(n);
  }
  guestapi::RefreshRequest request;
  request.set_entropy(entropy);
  const int64_t before = RealtimeNs();
  request.set_unix_time_ns(before);
  guestapi::RefreshResponse reply;
  Status status = guest.CallGuest("Refresh", request, &reply, timeout);
  if (!status.ok()) {
    if (status.error().code == ErrorCode::kNotImplemented) return Status::Ok();
    return status;
  }
  BBX_RETURN_IF_ERROR(CheckRefreshReply(reply, entropy.size(), before, RealtimeNs()));
  *refreshed = true;
  if (refreshed_at_us != nullptr) *refreshed_at_us = reply.refreshed_at_us();
  return Status::Ok();
}

}  // namespace beaconbox::shim
