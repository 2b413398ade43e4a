// Typed calls to the guest agent (vminitd) over one ttrpc connection: its
// beaconbox.guest.v1.Guest service and containerd's Task service, which vminitd
// serves for the processes inside the VM. Everything the guest answers is untrusted:
// sizes are bounded by the ttrpc client and values are checked by the caller.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "beaconbox/guest/v1/guest.pb.h"
#include "common/ttrpc/ttrpc.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"

namespace beaconbox::shim {

namespace task = ::containerd::task::v2;
namespace guestapi = ::beaconbox::guest::v1;

class GuestClient {
 public:
  // `agent_token` (VmHandle::AgentToken) goes with every call and stream; the guest
  // agent refuses calls without it. Empty: none is sent (fakes).
  // `first_stream_id`: above every id the guest agent has seen (a VM restored from a
  // checkpoint keeps the saved agent session, which refuses ids it has seen).
  explicit GuestClient(UniqueFd channel, const std::string& agent_token = "",
                       uint32_t first_stream_id = 1);

  // Calls `method` of `service` with `request`, parsing the answer into `response`.
  Status Call(std::string_view service, std::string_view method,
              const google::protobuf::MessageLite& request, google::protobuf::MessageLite* response,
              std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  Status CallGuest(std::string_view method, const google::protobuf::MessageLite& request,
                   google::protobuf::MessageLite* response,
                   std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    return Call("beaconbox.guest.v1.Guest", method, request, response, timeout);
  }
  Status CallTask(std::string_view method, const google::protobuf::MessageLite& request,
                  google::protobuf::MessageLite* response,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    return Call("containerd.task.v2.Task", method, request, response, timeout);
  }

  ttrpc::Client& connection() { return *client_; }
  // Thread-safe and idempotent: fails every call in flight (Sandbox teardown).
  void Close() { client_->Close(); }

 private:
  std::unique_ptr<ttrpc::Client> client_;
};

// Maps a ttrpc status from the guest to the shim's error type.
Error ErrorFromRpc(const ttrpc::RpcStatus& status, std::string_view what);

// The guest's boot timeline from its Hello answer, for the log line bench/boot reads:
// "initramfs-unpacked 812.4 ms, init-started 1500.0 ms, ...". Only steps with a name
// of at most 32 of [a-z0-9-] and a time under an hour are kept, at most 16, so a
// hostile guest can put nothing else into the host's log; "none" when none is left.
std::string DescribeGuestBoot(const guestapi::HelloResponse& hello);

// Checks the guest's answer to Refresh (hostile input): it added exactly the `sent`
// bytes and its clock now reads between `host_before_ns` minus 1 s and
// `host_after_ns` plus 5 s (the host's CLOCK_REALTIME around the call).
Status CheckRefreshReply(const guestapi::RefreshResponse& reply, size_t sent,
                         int64_t host_before_ns, int64_t host_after_ns);

// Refreshes the guest's random pool and clock (Guest.Refresh: fresh bytes from the
// host's CSPRNG and its time), which a VM restored from a template
// (plugins/vmm-qemu/template.h) shares with the template until then. A guest older
// than the call (UNIMPLEMENTED) is left as it is: `*refreshed` says which. When
// `refreshed_at_us` is given it gets the guest's boot step "refreshed" (BootStep.at_us;
// 0 when the guest did not say).
Status RefreshGuest(GuestClient& guest, std::chrono::milliseconds timeout, bool* refreshed,
                    uint64_t* refreshed_at_us = nullptr);

}  // namespace beaconbox::shim
