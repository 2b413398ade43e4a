// FAKE cloud-hypervisor: a VmConfig (already checked against the schema) as a QEMU
// command line. What QEMU cannot do the way CH does it is refused with one line.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::fakech {

// The double's own files next to the API socket.
struct QemuPaths {
  std::string qmp_socket;
  std::string agent_socket;  // the virtio-serial port standing in for the guest's vsock
};

// The virtio-serial port the guest agent uses instead of vsock (QEMU here has no
// vhost-vsock), and the kernel argument that tells it so (vminitd takes the last
// beaconbox.channel= on the command line).
inline constexpr char kAgentPortName[] = "beaconbox.agent";

Result<std::vector<std::string>> QemuArgvOf(const nlohmann::json& vm_config,
                                            const std::string& qemu_binary, const QemuPaths& paths);

// The vsock port the guest agent listens on: "beaconbox.channel=vsock:<port>" in
// payload.cmdline (0 when absent).
unsigned AgentVsockPortOf(const nlohmann::json& vm_config);

}  // namespace beaconbox::fakech
