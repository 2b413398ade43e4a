#include "plugins/common/virtiofsd.h"

#include <algorithm>
#include <filesystem>

#include "common/base/file_util.h"

namespace beaconbox::plugins {
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
  std::vector<std::string> argv = {binary, "--socket-path=" + socket_path,
                                   "-o",   "source=" + share.host_path(),
                                   "-o",   "cache=auto",
                                   "-o",   "sandbox=chroot"};
  if (share.overlay_upper()) {
    // The guest's overlayfs keeps whiteout and opaque markers in trusted.overlay.*
    // xattrs, as the host's overlay would: setting trusted.* needs CAP_SYS_ADMIN,
    // which this daemon drops by default.
    argv.insert(argv.end(), {"-o", "xattr", "-o", "modcaps=+sys_admin"});
  }
  return argv;
}

Result<pid_t> StartVirtiofsd(Spawner& spawner, const std::string& binary,
                             const beaconbox::plugin::v1::Share& share,
                             const std::string& socket_path, const std::string& log_path,
                             std::chrono::milliseconds timeout) {
  std::error_code error;
  if (share.host_path().empty() || share.host_path()[0] != '/' ||
      !fs::is_directory(share.host_path(), error)) {
    return MakeError(ErrorCode::kNotFound, "virtio-fs share '" + share.tag() +
                                               "': " + share.host_path() + " is not a directory");
  }
  SpawnOptions options;
  options.log_path = log_path;
  if (share.read_only()) options.read_only_dir = share.host_path();
  BBX_ASSIGN_OR_RETURN(pid_t pid,
                       spawner.Spawn(BuildVirtiofsdCommand(binary, share, socket_path), options));
  if (!WaitForPath(socket_path, pid, timeout)) {
    StopVirtiofsd(pid, socket_path, std::chrono::milliseconds(0));
    return MakeError(ErrorCode::kUnavailable, "virtiofsd " + binary + " for " + share.host_path() +
                                                  " did not start: " + ReadFileTail(log_path, 512));
  }
  return pid;
}

void StopVirtiofsd(pid_t pid, const std::string& socket_path, std::chrono::milliseconds grace) {
  EndChild(pid, grace);
  RemoveVirtiofsdLockFile(socket_path);
}

std::string VirtiofsdLockFilePath(const std::string& socket_path) {
  return kLockDir + LockFileName(socket_path) + ".pid";
}

void RemoveVirtiofsdLockFile(const std::string& socket_path) {
  std::error_code error;
  fs::remove(VirtiofsdLockFilePath(socket_path), error);
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

}  // namespace beaconbox::plugins
