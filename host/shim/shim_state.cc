#include "host/shim/shim_state.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace beaconbox::shim {

Result<std::unique_ptr<plugin_host::PluginHost>> LoadPlugins() {
  return plugin_host::LoadFromDefaultConfig();
}

Status SaveVmState(const std::string& bundle, const beaconbox::plugin::v1::VmInfo& info) {
  const std::string path = bundle + "/" + kVmStateFile;
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << info.SerializeAsString();
    if (!out) return MakeError(ErrorCode::kInternal, "writing " + temp + " failed");
  }
  std::error_code error;
  std::filesystem::rename(temp, path, error);
  if (error) return MakeError(ErrorCode::kInternal, "renaming " + temp + ": " + error.message());
  return Status::Ok();
}

void CleanupAfterDeadShim(plugin_host::PluginHost& plugins, const std::string& container_namespace,
                          const std::string& container_id, const std::string& bundle) {
  const std::string state_path = bundle + "/" + kVmStateFile;
  std::ifstream in(state_path, std::ios::binary);
  if (in) {
    std::stringstream bytes;
    bytes << in.rdbuf();
    beaconbox::plugin::v1::VmInfo info;
    if (info.ParseFromString(bytes.str())) {
      if (Status status = plugins.vmm().CleanupStale(info); !status.ok()) {
        spdlog::warn("cleaning up the VM of {}: {}", container_id, status.error().message);
      }
      std::error_code error;
      // Only ever remove a directory under our own run_dir, whatever the file says.
      const std::string vm_root = plugins.config().paths.run_dir + "/vm/";
      if (info.run_dir().starts_with(vm_root) &&
          info.run_dir().find("..") == std::string::npos) {
        std::filesystem::remove_all(info.run_dir(), error);
      }
    }
    std::filesystem::remove(state_path);
  }
  if (Status status = plugins.storage().Release(container_namespace, container_id, bundle);
      !status.ok()) {
    spdlog::warn("releasing storage of {}: {}", container_id, status.error().message);
  }
  if (plugins.network() != nullptr) {
    if (Status status = plugins.network()->Detach(container_namespace, container_id);
        !status.ok()) {
      spdlog::warn("releasing the network of {}: {}", container_id, status.error().message);
    }
  }
}

}  // namespace beaconbox::shim
