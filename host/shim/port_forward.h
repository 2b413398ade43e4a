// CRI port-forward into a pod's VM. containerd serves `crictl port-forward` by
// entering the pod's network namespace on the host and dialing localhost:PORT there
// (tcp4, then tcp6). With runc the container is in that namespace; with beaconbox
// it is in the VM, whose loopback is its own. The relay bridges the two:
//
// - in the pod's namespace (never the host's), an nftables table `beaconbox_portfwd`
//   redirects TCP to 127.0.0.1 and ::1 to the relay's own listeners there (NAT output
//   hook: only connections made inside that namespace, i.e. containerd's);
// - each accepted connection asks the guest to connect to its own loopback at the
//   port that was dialed (SO_ORIGINAL_DST), then its bytes move by pull calls
//   (guest.proto PortRead/PortWrite), bounded per call as stdio's are.
//
// A port nobody listens on in the guest: containerd's dial has already succeeded,
// so the relay resets the connection (RST) and containerd's copy ends with it; runc
// instead fails the dial, naming the port (README, CRI section).
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "host/shim/guest_client.h"

namespace beaconbox::shim {

// The nftables table in the pod's namespace: TCP to 127.0.0.1 and ::1, except to the
// relay's own ports, goes to them (`port6` 0: no IPv6 rule).
std::string PortForwardRuleset(uint16_t port4, uint16_t port6);

// The port a redirected connection was dialed to (SO_ORIGINAL_DST /
// IP6T_SO_ORIGINAL_DST of the accepted socket `fd`); 0 when the kernel does not say.
uint16_t OriginalPortOf(int fd);

class PortForwardRelay {
 public:
  // At most this many forwarded connections at once; more are reset.
  static constexpr size_t kMaxConnections = 32;

  // Listens in the namespace at `netns_path` and installs the redirect there.
  static Result<std::unique_ptr<PortForwardRelay>> Start(const std::string& netns_path,
                                                         std::shared_ptr<GuestClient> guest,
                                                         std::string pod_id);
  ~PortForwardRelay();
  PortForwardRelay(const PortForwardRelay&) = delete;
  PortForwardRelay& operator=(const PortForwardRelay&) = delete;

  // Stops accepting, ends every forwarded connection, removes the table (the
  // namespace may be gone already: then there is nothing to remove). Idempotent.
  void Stop();

 private:
  PortForwardRelay(std::string netns_path, std::shared_ptr<GuestClient> guest, std::string pod_id);
  void AcceptLoop();
  void Forward(UniqueFd connection);
  ttrpc::RpcStatus CallGuest(std::string_view method, const google::protobuf::MessageLite& request,
                             google::protobuf::MessageLite* response);

  const std::string netns_path_;
  const std::shared_ptr<GuestClient> guest_;
  const std::string pod_id_;
  const std::shared_ptr<ttrpc::Canceller> canceller_;
  UniqueFd listener4_, listener6_;
  UniqueFd stop_fd_;  // eventfd, readable once Stop was called
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  // Guarded by mutex_: one per connection whose (detached) thread runs; shut down by
  // Stop, which waits on `idle_` until it is empty.
  std::vector<int> open_connections_;
  std::condition_variable idle_;
  std::thread acceptor_;
  bool table_installed_ = false;
};

}  // namespace beaconbox::shim
