#include "plugins/vmm-cloudhypervisor/vm_config.h"

#include <sys/un.h>

#include <algorithm>
#include <charconv>

#include "common/base/agent_token.h"

namespace beaconbox::cloudhv {
namespace {

namespace pluginapi = ::beaconbox::plugin::v1;
using nlohmann::json;

constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;
constexpr uint64_t kDefaultMemoryMib = 512;

bool IsAbsolute(const std::string& path) { return !path.empty() && path[0] == '/'; }

// Names CH keeps as device ids: no separators, nothing to inject.
bool IsSafeName(const std::string& value) {
  return !value.empty() && value.size() <= 64 &&
         std::all_of(value.begin(), value.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
         });
}

bool IsMac(const std::string& mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    if (i % 3 == 2 ? mac[i] != ':' : !std::isxdigit(static_cast<unsigned char>(mac[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<LaunchPlan> PlanLaunch(const pluginapi::VmSpec& spec) {
  const std::string& dir = spec.run_dir();
  if (!IsAbsolute(dir)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "VmSpec.run_dir '" + dir + "' must be an absolute path");
  }
  const pluginapi::AgentChannel& channel = spec.agent_channel();
  if (channel.kind() != pluginapi::AGENT_CHANNEL_HYBRID_VSOCK) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "VmSpec.agent_channel.kind " + std::to_string(channel.kind()) +
                         " is not one the cloud-hypervisor plugin supports (hybrid vsock)");
  }
  if (channel.guest_cid() < 3 || channel.port() == 0 || !IsAbsolute(channel.unix_socket_path())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "VmSpec.agent_channel: hybrid vsock needs a guest_cid >= 3, a port and an "
                     "absolute unix_socket_path");
  }
  if (!IsWellFormedAgentToken(spec.agent_token())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "VmSpec.agent_token is missing or malformed (want 64 hex characters): the "
                     "host must seal the guest agent channel; refusing to start the VM");
  }
  LaunchPlan plan;
  plan.api_socket = dir + "/ch-api.sock";
  plan.vsock_socket = channel.unix_socket_path();
  plan.guest_cid = channel.guest_cid();
  plan.agent_port = channel.port();
  plan.agent_token_file = dir + "/agent-token";
  plan.console_fifo = dir + "/console.fifo";
  plan.vmm_log = dir + "/cloud-hypervisor.log";
  plan.virtiofsd_log = dir + "/virtiofsd.log";
  for (const auto& device : spec.devices()) {
    if (!device.has_share()) continue;
    const std::string& socket = device.share().vhost_user_socket();
    if (!IsAbsolute(socket)) {
      return MakeError(ErrorCode::kInvalidArgument, "share '" + device.share().tag() +
                                                        "' has no absolute vhost_user_socket ('" +
                                                        socket + "'): the host assigns one");
    }
    plan.virtiofsd_sockets.push_back(socket);
  }
  std::vector<std::string> sockets = {plan.api_socket, plan.vsock_socket};
  sockets.insert(sockets.end(), plan.virtiofsd_sockets.begin(), plan.virtiofsd_sockets.end());
  for (const auto& path : sockets) {
    if (path.size() > kMaxSocketPath) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "socket path " + path + " is longer than " + std::to_string(kMaxSocketPath) +
                           " bytes (the unix socket limit): use a shorter run_dir");
    }
  }
  return plan;
}

std::string KernelCmdline(const pluginapi::VmSpec& spec) {
  std::string cmdline = "console=ttyS0 quiet loglevel=4";
  for (const auto& arg : spec.guest_kernel_args()) cmdline += " " + arg;
  if (!spec.kernel_cmdline().empty()) cmdline += " " + spec.kernel_cmdline();
  return cmdline;
}

Result<json> DiskConfigOf(const pluginapi::BlockDevice& block) {
  if (!IsSafeName(block.id()) || !IsAbsolute(block.host_path())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "block device '" + block.id() +
                         "': want an id of letters, digits, '-', '_' or '.' and an absolute "
                         "host_path");
  }
  return json{{"path", block.host_path()},
              {"readonly", block.read_only()},
              {"id", "blk-" + block.id()},
              {"serial", block.id()}};
}

Result<json> NetConfigOf(const pluginapi::NetDevice& net, size_t index) {
  if (!IsSafeName(net.tap_name()) || !IsMac(net.mac())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "network device '" + net.tap_name() + "' (mac '" + net.mac() +
                         "'): want a TAP name and a MAC aa:bb:cc:dd:ee:ff");
  }
  json config = {
      {"tap", net.tap_name()}, {"mac", net.mac()}, {"id", "net" + std::to_string(index)}};
  if (net.mtu() != 0) config["mtu"] = net.mtu();
  return config;
}

Result<json> NetFdConfigOf(const pluginapi::NetDevice& net, size_t index) {
  BBX_ASSIGN_OR_RETURN(json config, NetConfigOf(net, index));
  if (net.netns_path().empty() || net.netns_path()[0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument,
                     "network device '" + net.tap_name() +
                         "': a TAP handed over as a descriptor needs an absolute netns_path");
  }
  config.erase("tap");
  config["num_queues"] = 2;
  return config;
}

Result<json> FsConfigOf(const pluginapi::Share& share, size_t index) {
  if (!IsSafeName(share.tag()) || !IsAbsolute(share.vhost_user_socket())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "share '" + share.tag() +
                         "': want a tag of letters, digits, '-', '_' or '.' and an absolute "
                         "vhost_user_socket");
  }
  return json{{"tag", share.tag()},
              {"socket", share.vhost_user_socket()},
              {"num_queues", 1},
              {"queue_size", 1024},
              {"id", "fs" + std::to_string(index)}};
}

Result<json> BuildVmConfig(const pluginapi::VmSpec& spec, const LaunchPlan& plan) {
  if (!IsAbsolute(spec.kernel_path()) || !IsAbsolute(spec.initrd_path())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "VmSpec.kernel_path and initrd_path must be absolute paths");
  }
  const uint32_t vcpus = std::max<uint32_t>(spec.vcpus(), 1);
  const uint32_t max_vcpus = std::max(spec.max_vcpus(), vcpus);
  const uint64_t memory_mib = spec.memory_mib() == 0 ? kDefaultMemoryMib : spec.memory_mib();
  const uint64_t max_memory_mib = std::max(spec.max_memory_mib(), memory_mib);

  json item = {{"name", kAgentTokenFwCfgName}, {"file", plan.agent_token_file}};
  json payload = {{"kernel", spec.kernel_path()},
                  {"initramfs", spec.initrd_path()},
                  {"cmdline", KernelCmdline(spec)},
                  {"fw_cfg_config",
                   {{"e820", false},
                    {"kernel", false},
                    {"cmdline", false},
                    {"initramfs", false},
                    {"acpi_tables", false},
                    {"items", {{"item_list", json::array({item})}}}}}};
  json memory = {{"size", memory_mib << 20}, {"shared", true}};
  if (max_memory_mib > memory_mib) memory["hotplug_size"] = (max_memory_mib - memory_mib) << 20;

  json config = {
      {"payload", payload},
      {"cpus", {{"boot_vcpus", vcpus}, {"max_vcpus", max_vcpus}}},
      {"memory", memory},
      {"serial", {{"mode", "File"}, {"file", plan.console_fifo}}},
      {"console", {{"mode", "Off"}}},
      {"vsock", {{"cid", plan.guest_cid}, {"socket", plan.vsock_socket}, {"id", "vsock0"}}},
  };
  json disks = json::array();
  json nets = json::array();
  json shares = json::array();
  size_t net_index = 0;
  for (const auto& device : spec.devices()) {
    if (device.has_block()) {
      BBX_ASSIGN_OR_RETURN(json disk, DiskConfigOf(device.block()));
      disks.push_back(std::move(disk));
    } else if (device.has_net()) {
      const size_t index = net_index++;
      if (!device.net().netns_path().empty()) {
        // Added with its TAP descriptor by vm.add-net before vm.boot (rules above).
        BBX_RETURN_IF_ERROR(NetFdConfigOf(device.net(), index));
        continue;
      }
      BBX_ASSIGN_OR_RETURN(json net, NetConfigOf(device.net(), index));
      nets.push_back(std::move(net));
    } else if (device.has_share()) {
      BBX_ASSIGN_OR_RETURN(json fs, FsConfigOf(device.share(), shares.size()));
      shares.push_back(std::move(fs));
    }
  }
  if (!disks.empty()) config["disks"] = std::move(disks);
  if (!nets.empty()) config["net"] = std::move(nets);
  if (!shares.empty()) config["fs"] = std::move(shares);
  return config;
}

json ResizeBody(uint32_t vcpus, uint64_t memory_mib) {
  json body = json::object();
  if (vcpus != 0) body["desired_vcpus"] = vcpus;
  if (memory_mib != 0) body["desired_ram"] = memory_mib << 20;
  return body;
}

Result<int> VersionMajor(std::string_view version) {
  std::string_view digits = version;
  if (!digits.empty() && digits[0] == 'v') digits.remove_prefix(1);
  int major = 0;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), major);
  if (error != std::errc() || end == digits.data() ||
      (end != digits.data() + digits.size() && *end != '.' && *end != '-')) {
    return MakeError(ErrorCode::kInvalidArgument, "cloud-hypervisor reports version '" +
                                                      std::string(version.substr(0, 64)) +
                                                      "', not one this plugin can read");
  }
  return major;
}

}  // namespace beaconbox::cloudhv
