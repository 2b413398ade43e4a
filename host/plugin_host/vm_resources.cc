#include "host/plugin_host/vm_resources.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "common/base/agent_token.h"
#include "common/base/errno_error.h"

namespace beaconbox::plugin_host {
namespace {

constexpr uint32_t kFirstGuestCid = 3;  // 0-2 are reserved by vsock
constexpr uint32_t kGuestCidRange = 1 << 16;
constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;

bool Lists(const pluginapi::Capabilities& capabilities, pluginapi::AgentChannelKind kind) {
  const auto& kinds = capabilities.agent_channels();
  return std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
}

Status CheckSocketPath(const std::string& path) {
  if (path.size() > kMaxSocketPath) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "socket path " + path + " is longer than " + std::to_string(kMaxSocketPath) +
                         " bytes (the unix socket limit): use a shorter paths.run_dir");
  }
  return Status::Ok();
}

}  // namespace

Result<GuestCid> ReserveGuestCid(const std::string& lock_dir, uint32_t hint) {
  std::error_code error;
  std::filesystem::create_directories(lock_dir, error);
  uint32_t start = hint % kGuestCidRange;
  for (uint32_t i = 0; i < kGuestCidRange; ++i) {
    uint32_t cid = kFirstGuestCid + (start + i) % kGuestCidRange;
    std::string path = lock_dir + "/vsock-cid-" + std::to_string(cid) + ".lock";
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) return ErrnoError("creating vsock CID lock", path);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return GuestCid{cid, std::move(fd)};
  }
  return MakeError(ErrorCode::kExhausted,
                   "no free vsock guest CID in " + lock_dir + ": too many VMs on this host");
}

bool HostHasVsock() { return ::access("/dev/vhost-vsock", R_OK | W_OK) == 0; }

Result<AgentChannelPlan> PlanAgentChannel(const pluginapi::Capabilities& capabilities,
                                          bool host_has_vsock, const std::string& cid_lock_dir,
                                          const std::string& vm_run_dir) {
  AgentChannelPlan plan;
  if (!capabilities.agent_token()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the vmm plugin cannot deliver the guest agent token "
                     "(Capabilities.agent_token is false), so any local process could drive the "
                     "guest agent: refusing to start the VM; use a vmm plugin that seals the agent "
                     "channel (plugin-abi/README.md, rule 11)");
  }
  BBX_ASSIGN_OR_RETURN(plan.token, GenerateAgentToken());
  if (Lists(capabilities, pluginapi::AGENT_CHANNEL_HYBRID_VSOCK)) {
    // The VMM relays vsock in user space (Cloud Hypervisor): no /dev/vhost-vsock and
    // no host-wide CID; the guest always gets the first guest CID.
    std::string socket = vm_run_dir + "/vsock.sock";
    BBX_RETURN_IF_ERROR(CheckSocketPath(socket));
    plan.channel.set_kind(pluginapi::AGENT_CHANNEL_HYBRID_VSOCK);
    plan.channel.set_port(kAgentVsockPort);
    plan.channel.set_guest_cid(3);
    plan.channel.set_unix_socket_path(socket);
    return plan;
  }
  bool plugin_vsock = Lists(capabilities, pluginapi::AGENT_CHANNEL_VSOCK);
  bool plugin_serial = capabilities.agent_channels().empty() ||
                       Lists(capabilities, pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
  if (plugin_vsock && host_has_vsock) {
    BBX_ASSIGN_OR_RETURN(plan.guest_cid,
                         ReserveGuestCid(cid_lock_dir, static_cast<uint32_t>(::getpid())));
    plan.channel.set_kind(pluginapi::AGENT_CHANNEL_VSOCK);
    plan.channel.set_port(kAgentVsockPort);
    plan.channel.set_guest_cid(plan.guest_cid.cid);
    return plan;
  }
  if (plugin_serial) {
    std::string socket = vm_run_dir + "/agent.sock";
    BBX_RETURN_IF_ERROR(CheckSocketPath(socket));
    plan.channel.set_kind(pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
    plan.channel.set_serial_port_name(kAgentSerialPortName);
    plan.channel.set_unix_socket_path(socket);
    return plan;
  }
  return MakeError(ErrorCode::kUnavailable,
                   std::string("the vmm plugin supports only vsock guest channels and ") +
                       "/dev/vhost-vsock is not usable here: modprobe vhost_vsock, or use a vmm "
                       "plugin with virtio-serial");
}

std::vector<std::string> GuestKernelArgs(const pluginapi::AgentChannel& channel,
                                         uint64_t memory_mib, uint64_t max_memory_mib) {
  std::vector<std::string> args = {"panic=-1"};
  if (channel.kind() == pluginapi::AGENT_CHANNEL_VSOCK ||
      channel.kind() == pluginapi::AGENT_CHANNEL_HYBRID_VSOCK) {
    args.push_back("beaconbox.channel=vsock:" + std::to_string(channel.port()));
  } else {
    args.push_back("beaconbox.channel=virtio-serial:" + channel.serial_port_name());
  }
  if (max_memory_mib > memory_mib) args.push_back("memhp_default_state=online");
  return args;
}

Status AssignShareSockets(pluginapi::VmSpec& spec, const std::string& vm_run_dir) {
  size_t index = 0;
  for (auto& device : *spec.mutable_devices()) {
    if (!device.has_share()) continue;
    std::string socket = vm_run_dir + "/fs" + std::to_string(index++) + ".sock";
    BBX_RETURN_IF_ERROR(CheckSocketPath(socket));
    device.mutable_share()->set_vhost_user_socket(socket);
  }
  return Status::Ok();
}

}  // namespace beaconbox::plugin_host
