#include "plugins/common/vm_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/errno_error.h"
#include "common/base/unique_fd.h"

namespace beaconbox::plugins {

Status CheckReadable(const std::string& path, const std::string& what, const std::string& key) {
  if (path.empty() || ::access(path.c_str(), R_OK) != 0) {
    return MakeError(ErrorCode::kNotFound, what + " " + (path.empty() ? "(unset)" : path) +
                                               " is missing or unreadable (config key " + key +
                                               "): run `make` or fix the path");
  }
  return Status::Ok();
}

std::string VmlinuxNextTo(const std::string& kernel_path) {
  const size_t slash = kernel_path.rfind('/');
  if (slash == std::string::npos) return "";
  for (const char* name : kVmlinuxNames) {
    std::string vmlinux = kernel_path.substr(0, slash + 1) + name;
    if (::access(vmlinux.c_str(), R_OK) == 0) return vmlinux;
  }
  return "";
}

Status WriteAgentTokenFile(const std::string& path, const std::string& token) {
  ::unlink(path.c_str());
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return ErrnoError("creating the agent token file", path);
  if (::fchmod(fd.get(), 0600) != 0) return ErrnoError("chmod", path);
  if (::write(fd.get(), token.data(), token.size()) != static_cast<ssize_t>(token.size())) {
    return ErrnoError("writing the agent token file", path);
  }
  return Status::Ok();
}

}  // namespace beaconbox::plugins
