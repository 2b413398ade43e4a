#include "plugins/vmm-qemu/virtiofsd.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

namespace beaconbox::qemu {
namespace {

namespace fs = std::filesystem;
constexpr char kLockDir[] = "/run/virtiofsd/";

std::string LockFileName(std::string path) {
  std::replace(path.begin(), path.end(), '/', '.');
  return path;
}

}  // namespace

std::vector<std::string> BuildVirtiofsdCommand(const std::string& binary,
                                               const beaconbox::plugin::v1::Share& share,
                                               const std::string& socket_path) {
  // sandbox=chroot: the namespace sandbox needs user-namespace support that
  // containers running the shim often lack; the daemon still chroots into the share.
  return {binary,          "--socket-path=" + socket_path,
          "-o",            "source=" + share.host_path(),
          "-o",            "cache=auto",
          "-o",            "sandbox=chroot"};
}

Result<pid_t> StartVirtiofsd(Spawner& spawner, const std::string& binary,
                             const beaconbox::plugin::v1::Share& share,
                             const std::string& socket_path, const std::string& log_path,
                             std::chrono::milliseconds timeout) {
  std::error_code error;
  if (share.host_path().empty() || share.host_path()[0] != '/' ||
      !fs::is_directory(share.host_path(), error)) {
    return MakeError(ErrorCode::kNotFound, "virtio-fs share '" + share.tag() + "': " +
                                               share.host_path() + " is not a directory");
  }
  SpawnOptions options{.log_path = log_path,
                       .read_only_dir = share.read_only() ? share.host_path() : ""};
  BBX_ASSIGN_OR_RETURN(pid_t pid,
                       spawner.Spawn(BuildVirtiofsdCommand(binary, share, socket_path), options));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (::access(socket_path.c_str(), F_OK) != 0) {
    if (!ChildRunning(pid) || std::chrono::steady_clock::now() >= deadline) {
      EndChild(pid, std::chrono::milliseconds(0));
      RemoveVirtiofsdLockFile(socket_path);
      return MakeError(ErrorCode::kUnavailable,
                       "virtiofsd (config key virtiofsd: " + binary + ") for " + share.host_path() +
                           " did not start: " + FileTail(log_path, 512));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pid;
}

void RemoveVirtiofsdLockFile(const std::string& socket_path) {
  std::error_code error;
  fs::remove(kLockDir + LockFileName(socket_path) + ".pid", error);
}

void RemoveVirtiofsdLockFilesUnder(const std::string& dir) {
  if (dir.size() < 2 || dir[0] != '/') return;
  std::string prefix = LockFileName(dir + "/");
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(kLockDir, error)) {
    std::string name = entry.path().filename().string();
    if (name.starts_with(prefix) && name.ends_with(".sock.pid")) fs::remove(entry.path(), error);
  }
}

}  // namespace beaconbox::qemu
