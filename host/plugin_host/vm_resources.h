// What the host decides for every VM, whatever its VMM plugin: how the host reaches
// the guest agent (vsock with a guest CID unique on this host, or a virtio-serial port
// behind a unix socket), the kernel arguments the guest reads, and where each shared
// directory's vhost-user socket lives. A second VMM plugin gets all of it in its
// VmSpec instead of deciding it again.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "beaconbox/plugin/v1/plugin.pb.h"
#include "beaconbox/plugin/v1/vmm.pb.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox::plugin_host {

namespace pluginapi = ::beaconbox::plugin::v1;

// The vsock port the guest agent listens on, and the virtio-serial port name it opens.
inline constexpr uint32_t kAgentVsockPort = 1024;
inline constexpr char kAgentSerialPortName[] = "beaconbox.agent";

// A guest CID held for one VM: an exclusive flock on <lock_dir>/vsock-cid-<cid>.lock,
// released when `lock` closes (also when the shim dies).
struct GuestCid {
  uint32_t cid = 0;
  UniqueFd lock;
};

// Reserves the first free CID at or after a start derived from `hint` (any number that
// spreads concurrent shims, e.g. the pid; it never decides the CID alone).
Result<GuestCid> ReserveGuestCid(const std::string& lock_dir, uint32_t hint);

// True when this host can run vsock guests (/dev/vhost-vsock is usable).
bool HostHasVsock();

struct AgentChannelPlan {
  pluginapi::AgentChannel channel;
  GuestCid guest_cid;  // set for vsock; hold it until the VM is destroyed
  // Seals the channel (common/base/agent_token.h): goes to the plugin in
  // VmSpec.agent_token and with every call of the shim's guest client.
  std::string token;
};

// Picks the agent channel: vsock when the plugin lists it and `host_has_vsock`, else
// virtio-serial when the plugin lists it (socket <vm_run_dir>/agent.sock). A plugin
// listing no channel kinds is taken to support virtio-serial only. Fails when the
// plugin supports no kind this host can use, or cannot deliver the agent token
// (Capabilities.agent_token): an unsealed agent is never started.
Result<AgentChannelPlan> PlanAgentChannel(const pluginapi::Capabilities& capabilities,
                                          bool host_has_vsock, const std::string& cid_lock_dir,
                                          const std::string& vm_run_dir);

// The kernel arguments the guest needs: its agent channel (read by vminitd as
// beaconbox.channel=...), panic=-1 (a guest panic ends the VM at once), and
// memhp_default_state=online when memory can be hotplugged.
std::vector<std::string> GuestKernelArgs(const pluginapi::AgentChannel& channel,
                                         uint64_t memory_mib, uint64_t max_memory_mib);

// Gives every Share device in `spec` its vhost-user socket, <vm_run_dir>/fs<N>.sock,
// and fails when a socket path would exceed the unix socket limit.
Status AssignShareSockets(pluginapi::VmSpec& spec, const std::string& vm_run_dir);

}  // namespace beaconbox::plugin_host
