// Serves vminitd's two ttrpc services (beaconbox.guest.v1.Guest and
// containerd.task.v2.Task) on one connection to the shim.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "common/base/unique_fd.h"
#include "common/ttrpc/ttrpc.h"
#include "guest/vminitd/kept_agent_token.h"
#include "guest/vminitd/port_streams.h"
#include "guest/vminitd/runtime.h"

namespace beaconbox::guest {

// The VM's agent token (common/base/agent_token.h), which the VMM delivers through
// QEMU's fw_cfg (/sys/firmware/qemu_fw_cfg/by_name/opt/io.beaconbox/agent-token/raw).
// Waits up to `timeout` for the entry (the qemu_fw_cfg module may still probe). Empty
// when there is none or it is malformed: then every call is refused.
std::string ReadAgentToken(std::chrono::milliseconds timeout);
// The token in fw_cfg now, without waiting or logging; empty when absent or malformed.
std::string ReadAgentTokenNow();

// One connection to the shim: vminitd's services behind a ttrpc server that refuses,
// with kUnauthenticated, every call not carrying the VM's token as `agent_token`
// checks it (shared by all sessions; outlives them); a VM without a token refuses
// everything.
class AgentSession {
 public:
  AgentSession(Runtime& runtime, KeptAgentToken& agent_token);
  // Blocks until the peer goes away, the connection fails or End is called.
  void Serve(UniqueFd connection);
  // Ends Serve from any thread.
  void End() { server_.Shutdown(); }
  // True once a call carried the token.
  bool authenticated() const { return authenticated_.load(); }

 private:
  ttrpc::RpcStatus Authorize(const ttrpc::Metadata& metadata);

  KeptAgentToken& agent_token_;
  std::atomic<bool> authenticated_{false};
  // Port-forward connections opened for this session's shim; closed with it. Declared
  // before server_, whose handlers use it, so it outlives them.
  PortStreams port_streams_;
  ttrpc::Server server_;
};

// When vminitd began serving (CLOCK_BOOTTIME, ms), reported by Hello.
void SetReadyTime();

}  // namespace beaconbox::guest
