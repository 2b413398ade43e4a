// What the plugin tells Cloud Hypervisor, from a beaconbox.plugin.v1.VmSpec: the
// VmConfig of vm.create and the device configs of vm.add-*. Pure, unit-tested.
//
// Rules:
//  - payload: kernel (an uncompressed vmlinux with a PVH entry), initramfs, and the
//    command line "console=ttyS0 quiet loglevel=4", then VmSpec.guest_kernel_args,
//    then VmSpec.kernel_cmdline.
//  - cpus: boot_vcpus = max(vcpus, 1), max_vcpus = max(max_vcpus, boot_vcpus).
//  - memory: size in bytes; hotplug_size = max_memory - memory when larger; shared,
//    because virtiofsd (vhost-user) maps guest memory.
//  - disks (read-only when the device says so; serial = BlockDevice.id, so the guest
//    finds /dev/disk/by-id/virtio-<id>), net (tap, mac, mtu), fs (socket, tag), in the
//    spec's order, with ids blk-<id>, net<N>, fs<N> (N counts the spec's nets).
//  - a net whose TAP lives in another network namespace (NetDevice.netns_path, a CNI
//    sandbox) is not in vm.create's body: CH takes a TAP descriptor only as SCM_RIGHTS
//    with vm.add-net (vm.create ignores descriptors), so the plugin opens the TAP in
//    that namespace (the VMM never joins it) and sends NetFdConfigOf with it after
//    vm.create and before vm.boot, a cold-plug the guest sees at boot.
//  - vsock: the hybrid vsock (cid, unix socket) of VmSpec.agent_channel.
//  - serial to a FIFO the plugin drains into the capped console log; virtio-console off.
//  - the agent token through fw_cfg (payload.fw_cfg_config, CH's `fw_cfg` build
//    feature, v48+): item opt/io.beaconbox/agent-token from a 0600 file, none of the
//    firmware items (kernel, initramfs, cmdline, e820, ACPI), which direct boot does
//    not need.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "beaconbox/plugin/v1/vmm.pb.h"
#include "common/base/result.h"

namespace beaconbox::cloudhv {

// fw_cfg items with files arrived in v48.0.
inline constexpr int kMinVersionMajor = 48;

// Runtime files under VmSpec.run_dir and the host's channel choices.
struct LaunchPlan {
  std::string api_socket;    // --api-socket
  std::string vsock_socket;  // the hybrid vsock's unix socket (the host chose it)
  uint32_t guest_cid = 0;
  uint32_t agent_port = 0;
  std::string agent_token_file;  // 0600, removed once vm.boot returned
  std::string console_fifo;      // CH's serial; ConsolePump writes the log
  std::string vmm_log;           // CH's stdout and stderr
  std::string virtiofsd_log;
  std::vector<std::string> virtiofsd_sockets;  // one per Share, in spec order
};

// Checks the spec (run_dir, channel, token, socket lengths) and names the files.
Result<LaunchPlan> PlanLaunch(const beaconbox::plugin::v1::VmSpec& spec);

// The guest kernel command line (rules above).
std::string KernelCmdline(const beaconbox::plugin::v1::VmSpec& spec);

// The body of vm.create.
Result<nlohmann::json> BuildVmConfig(const beaconbox::plugin::v1::VmSpec& spec,
                                     const LaunchPlan& plan);

// Bodies of vm.add-disk, vm.add-net and vm.add-fs (and the entries of VmConfig).
Result<nlohmann::json> DiskConfigOf(const beaconbox::plugin::v1::BlockDevice& block);
Result<nlohmann::json> NetConfigOf(const beaconbox::plugin::v1::NetDevice& net, size_t index);
Result<nlohmann::json> FsConfigOf(const beaconbox::plugin::v1::Share& share, size_t index);

// The body of vm.add-net for a TAP handed over as a descriptor: no `tap` name (it is
// in another namespace), num_queues 2, so CH wants exactly one descriptor (one per
// queue pair).
Result<nlohmann::json> NetFdConfigOf(const beaconbox::plugin::v1::NetDevice& net, size_t index);

// The body of vm.resize: vCPUs and memory (MiB, sent as bytes); 0 leaves one out.
nlohmann::json ResizeBody(uint32_t vcpus, uint64_t memory_mib);

// The major version of vmm.ping's "version" ("v48.0", "v49.0-12-gabcdef", "48.0").
Result<int> VersionMajor(std::string_view version);

}  // namespace beaconbox::cloudhv
