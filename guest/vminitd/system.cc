#include "guest/vminitd/system.h"

#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/base/errno_error.h"
#include "common/base/mount_options.h"
#include "common/base/unique_fd.h"
#include "guest/vminitd/kernel_cmdline.h"
#include "guest/vminitd/kernel_modules.h"
#include "guest/vminitd/log.h"

namespace beaconbox::guest {

void Log(std::string_view message) {
  std::string line = "vminitd: ";
  line += message;
  line += '\n';
  // One write per line so that lines from threads do not interleave.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

namespace {

void MountOrLog(const char* source, const char* target, const char* type, unsigned long flags,
                const char* data) {
  ::mkdir(target, 0755);
  if (::mount(source, target, type, flags, data) != 0 && errno != EBUSY) {
    Log(ErrnoError(std::string("mount ") + type + " on", target).message);
  }
}

void EnableCgroupControllers() {
  auto controllers = ReadSmallFile("/sys/fs/cgroup/cgroup.controllers", 4096);
  if (!controllers.ok()) {
    Log(controllers.error().message);
    return;
  }
  std::string request;
  for (auto word : ParseCmdline(*controllers)) request += "+" + word.first + " ";
  if (request.empty()) return;
  UniqueFd fd(::open("/sys/fs/cgroup/cgroup.subtree_control", O_WRONLY | O_CLOEXEC));
  if (!fd || ::write(fd.get(), request.data(), request.size()) < 0) {
    Log(ErrnoError("enabling cgroup controllers", request).message);
  }
}

}  // namespace

void MountBaseFilesystems() {
  constexpr unsigned long kSafe = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  MountOrLog("proc", "/proc", "proc", kSafe, nullptr);
  MountOrLog("sysfs", "/sys", "sysfs", kSafe, nullptr);
  MountOrLog("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  MountOrLog("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
  MountOrLog("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  MountOrLog("cgroup2", "/sys/fs/cgroup", "cgroup2", kSafe, nullptr);
  MountOrLog("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
  MountOrLog("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  ::symlink("/proc/self/fd", "/dev/fd");
  ::symlink("/proc/self/fd/0", "/dev/stdin");
  ::symlink("/proc/self/fd/1", "/dev/stdout");
  ::symlink("/proc/self/fd/2", "/dev/stderr");
  EnableCgroupControllers();
}

void OpenConsole() {
  if (::fcntl(STDERR_FILENO, F_GETFD) >= 0) return;
  int fd = ::open("/dev/console", O_RDWR | O_NOCTTY);
  if (fd < 0) return;
  for (int target = 0; target <= 2; ++target) {
    if (::fcntl(target, F_GETFD) < 0) ::dup2(fd, target);
  }
  if (fd > 2) ::close(fd);
}

// Loads one module file; false when the module was loaded already.
static Result<bool> LoadModuleFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError("open module", path);
  if (::syscall(SYS_finit_module, fd.get(), "", 0) != 0) {
    if (errno == EEXIST) return false;
    return ErrnoError("load module", path);
  }
  return true;
}

void LoadModules(const std::string& order_file) {
  auto list = ReadSmallFile(order_file);
  if (!list.ok()) {
    Log(list.error().Wrap("no kernel modules loaded").message);
    return;
  }
  size_t start = 0;
  int loaded = 0;
  while (start < list->size()) {
    size_t end = list->find('\n', start);
    if (end == std::string::npos) end = list->size();
    std::string path = list->substr(start, end - start);
    start = end + 1;
    if (path.empty()) continue;
    auto fresh = LoadModuleFile(path);
    if (!fresh.ok()) Log(fresh.error().message);
    if (fresh.ok() && *fresh) ++loaded;
  }
  Log("loaded " + std::to_string(loaded) + " kernel modules");
}

int ModprobeMain(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto name = ParseModprobeArgs(args);
  if (!name.ok()) {
    Log(name.error().message);
    return 1;
  }
  auto list = ReadSmallFile(kOnDemandModulesFile);
  if (!list.ok()) {
    Log(list.error().Wrap("modprobe " + *name).message);
    return 1;
  }
  auto files = OnDemandModuleFiles(*name, *list);
  if (!files.ok()) {
    Log("modprobe: " + files.error().message);
    return 1;
  }
  for (const std::string& path : *files) {
    if (auto loaded = LoadModuleFile(path); !loaded.ok()) {
      Log(loaded.error().Wrap("modprobe " + *name).message);
      return 1;
    }
  }
  Log("modprobe: loaded " + *name);
  return 0;
}

void SetModprobeHelper() {
  UniqueFd fd(::open("/proc/sys/kernel/modprobe", O_WRONLY | O_CLOEXEC));
  const std::string value = std::string(kModprobeHelper) + "\n";
  if (!fd || ::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    Log(ErrnoError("set the module loader helper", "/proc/sys/kernel/modprobe").message);
  }
}

void SetPageReportingOrder(int order) {
  constexpr char kPath[] = "/sys/module/page_reporting/parameters/page_reporting_order";
  UniqueFd fd(::open(kPath, O_WRONLY | O_CLOEXEC));
  const std::string value = std::to_string(order);
  if (!fd || ::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    Log(ErrnoError("setting the free page reporting order in", kPath).message);
  }
}

void SetHostname(const std::string& hostname) {
  if (::sethostname(hostname.data(), hostname.size()) != 0) {
    Log(ErrnoError("sethostname", hostname).message);
  }
}

void BringUpLoopback() {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return;
  struct ifreq ifr {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP;
    if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) != 0) Log(ErrnoError("bringing up", "lo").message);
  }
}

Status MountOne(const std::string& type, const std::string& source, const std::string& target,
                const std::vector<std::string>& options) {
  MountOptions parsed = ParseMountOptions(options);
  BBX_RETURN_IF_ERROR(MakeDirs(target));
  const char* fstype = parsed.bind ? nullptr : type.c_str();
  if (::mount(source.c_str(), target.c_str(), fstype, parsed.flags,
              parsed.data.empty() ? nullptr : parsed.data.c_str()) != 0) {
    return ErrnoError("mount " + type + " " + source + " on", target);
  }
  if (parsed.remount_readonly &&
      ::mount(nullptr, target.c_str(), nullptr,
              MS_REMOUNT | MS_BIND | MS_RDONLY | (parsed.flags & ~MS_REC), nullptr) != 0) {
    Error error = ErrnoError("remount read-only", target);
    ::umount2(target.c_str(), MNT_DETACH);
    return error;
  }
  if (parsed.propagation != 0 &&
      ::mount(nullptr, target.c_str(), nullptr, parsed.propagation, nullptr) != 0) {
    Error error = ErrnoError("set mount propagation of", target);
    ::umount2(target.c_str(), MNT_DETACH);
    return error;
  }
  return Status::Ok();
}

Status MakeDirs(const std::string& path, unsigned mode) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) return ErrnoError("mkdir", prefix);
  }
  return Status::Ok();
}

Status RemoveTree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return ErrnoError("stat", path);
  }
  if (S_ISDIR(st.st_mode)) {
    struct stat parent {};
    std::string parent_path = path + "/..";
    // A mount point (other device than its parent): unmount it, never descend into it.
    if (::stat(parent_path.c_str(), &parent) == 0 && parent.st_dev != st.st_dev) {
      if (::umount2(path.c_str(), MNT_DETACH) != 0) return ErrnoError("unmount", path);
    } else {
      DIR* dir = ::opendir(path.c_str());
      if (!dir) return ErrnoError("opendir", path);
      std::vector<std::string> names;
      while (struct dirent* entry = ::readdir(dir)) {
        std::string name = entry->d_name;
        if (name != "." && name != "..") names.push_back(name);
      }
      ::closedir(dir);
      for (const std::string& name : names) BBX_RETURN_IF_ERROR(RemoveTree(path + "/" + name));
    }
    if (::rmdir(path.c_str()) != 0) return ErrnoError("rmdir", path);
    return Status::Ok();
  }
  if (::unlink(path.c_str()) != 0) return ErrnoError("unlink", path);
  return Status::Ok();
}

}  // namespace beaconbox::guest
