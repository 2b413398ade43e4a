#include "host/shim/runtime_layout.h"

#include <cstdio>

#include "common/base/containerd_name.h"

namespace beaconbox::shim {
namespace {

constexpr char kStateFile[] = "beaconbox-state.json";

}  // namespace

bool IsContainerdIdentifier(std::string_view text) { return IsContainerdName(text); }

namespace {

std::string HashedName(const ContainerKey& key) {
  return "h-" + HashHex(key.namespace_name + "/" + key.id);
}

}  // namespace

std::string HashHex(std::string_view text, uint64_t seed) {
  uint64_t hash = seed;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(hash));
  return hex;
}

std::string KeyFileName(const ContainerKey& key) {
  if (IsContainerdIdentifier(key.namespace_name) && IsContainerdIdentifier(key.id)) {
    return ContainerKeyName(key.namespace_name, key.id);
  }
  return HashedName(key);
}

RuntimeLayout::RuntimeLayout(std::string run_dir, std::string log_dir,
                             std::chrono::seconds console_log_retention, std::string state_dir)
    : run_dir_(std::move(run_dir)),
      log_dir_(std::move(log_dir)),
      console_log_retention_(console_log_retention),
      state_dir_(std::move(state_dir)) {
  while (run_dir_.size() > 1 && run_dir_.back() == '/') run_dir_.pop_back();
  while (log_dir_.size() > 1 && log_dir_.back() == '/') log_dir_.pop_back();
  while (state_dir_.size() > 1 && state_dir_.back() == '/') state_dir_.pop_back();
}

std::string RuntimeLayout::ShimRecordDir() const {
  return state_dir_.empty() ? std::string() : state_dir_ + "/shim";
}

std::string RuntimeLayout::ShimRecordPath(const ContainerKey& key) const {
  return state_dir_.empty() ? std::string() : ShimRecordDir() + "/" + KeyFileName(key) + ".json";
}

std::string RuntimeLayout::SandboxStatePath(const ContainerKey& key) const {
  return state_dir_.empty() ? std::string()
                            : ShimRecordDir() + "/" + KeyFileName(key) + ".state.json";
}

Result<std::string> RuntimeLayout::ShimSocketPath(std::string_view containerd_address,
                                                  const ContainerKey& key) const {
  // 128 bits: the same container always maps to the same socket, and a collision
  // between two live containers is out of reach.
  const std::string text =
      std::string(containerd_address) + "/" + key.namespace_name + "/" + key.id;
  std::string path = run_dir_ + "/s/" + HashHex(text) + HashHex(text, 0x84222325cbf29ce4ull);
  if (path.size() > kMaxSocketPath) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "shim socket path " + path + " is longer than " +
                         std::to_string(kMaxSocketPath) +
                         " bytes: set a shorter paths.run_dir in the beaconbox config");
  }
  return path;
}

Result<std::string> RuntimeLayout::VmDir(const ContainerKey& key) const {
  const size_t budget = kMaxSocketPath - kVmSocketNameRoom;
  std::string readable = VmRoot() + KeyFileName(key);
  if (readable.size() <= budget) return readable;
  std::string hashed = VmRoot() + HashedName(key);
  if (hashed.size() <= budget) return hashed;
  return MakeError(ErrorCode::kInvalidArgument,
                   "VM directory " + hashed + " leaves no room for socket names within " +
                       std::to_string(kMaxSocketPath) +
                       " bytes: set a shorter paths.run_dir in the beaconbox config");
}

bool RuntimeLayout::IsVmDir(std::string_view path) const {
  const std::string root = VmRoot();
  if (!path.starts_with(root)) return false;
  std::string_view name = path.substr(root.size());
  return !name.empty() && name.find('/') == std::string_view::npos && name != "." && name != "..";
}

std::string RuntimeLayout::ConsoleLogPath(const ContainerKey& key) const {
  return log_dir_ + "/vm-" + KeyFileName(key) + ".log";
}

std::string RuntimeLayout::StateFilePath(const std::string& bundle) {
  return bundle + "/" + kStateFile;
}

std::string RuntimeLayout::AddressFilePath(const std::string& bundle) {
  return bundle + "/address";
}

std::string RuntimeLayout::ShimPidFilePath(const std::string& bundle) {
  return bundle + "/shim.pid";
}

}  // namespace beaconbox::shim
