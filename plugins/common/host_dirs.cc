#include "plugins/common/host_dirs.h"

namespace beaconbox::plugins {

HostDirs HostDirsOf(const bbx_host_services* host) {
  HostDirs dirs;
  if (host == nullptr) return dirs;
  if (BBX_STRUCT_HAS(host, bbx_host_services, state_dir) && host->state_dir != nullptr) {
    dirs.state_dir = host->state_dir;
  }
  if (BBX_STRUCT_HAS(host, bbx_host_services, run_dir) && host->run_dir != nullptr) {
    dirs.run_dir = host->run_dir;
  }
  return dirs;
}

Status DefaultPathUnder(std::string& value, std::string_view key, const std::string& base,
                        std::string_view base_name, std::string_view leaf) {
  const std::string prefix = "config key " + std::string(key) + ": ";
  if (value.empty()) {
    if (base.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       prefix + "no " + std::string(base_name) + " directory given: set it");
    }
    value = base + "/" + std::string(leaf);
  }
  if (value.front() != '/') {
    return MakeError(ErrorCode::kInvalidArgument, prefix + "must be an absolute path");
  }
  return Status::Ok();
}

}  // namespace beaconbox::plugins
