// What the shim keeps on disk in the bundle so that `delete` can clean up after a
// shim that died (kill -9): the VM's processes, and the fact that storage and
// network were set up. The bundle is containerd's per-container directory.
#pragma once

#include <memory>
#include <string>

#include "beaconbox/plugin/v1/vmm.pb.h"
#include "host/plugin_host/plugin_host.h"

namespace beaconbox::shim {

// Loads the configuration (BEACONBOX_CONFIG, /etc/beaconbox/config.toml, or the one
// next to the shim) and the plugins it declares.
Result<std::unique_ptr<plugin_host::PluginHost>> LoadPlugins();

constexpr char kVmStateFile[] = "beaconbox-vm.pb";

Status SaveVmState(const std::string& bundle, const beaconbox::plugin::v1::VmInfo& info);

// Best effort, idempotent: stops recorded VM processes, releases storage and network.
void CleanupAfterDeadShim(plugin_host::PluginHost& plugins, const std::string& container_namespace,
                          const std::string& container_id, const std::string& bundle);

}  // namespace beaconbox::shim
