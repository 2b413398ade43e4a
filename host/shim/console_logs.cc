#include "host/shim/console_logs.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/base/unique_fd.h"

namespace beaconbox::shim {
namespace {

namespace fs = std::filesystem;

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// True when `path` is a regular file last modified before `cutoff`.
bool OlderThan(const std::string& path, time_t cutoff) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_mtime < cutoff;
}

}  // namespace

void MarkConsoleLogDeleted(const std::string& log_path) {
  if (log_path.empty()) return;
  for (const std::string& path : {log_path, log_path + ".1"}) {
    (void)::utimensat(AT_FDCWD, path.c_str(), nullptr, AT_SYMLINK_NOFOLLOW);
  }
}

size_t SweepConsoleLogs(const std::string& log_dir, std::chrono::seconds retention) {
  // Retention 0: whatever is not live goes, also a log modified this very second.
  const time_t cutoff =
      ::time(nullptr) - static_cast<time_t>(retention.count()) + (retention.count() == 0 ? 1 : 0);
  size_t removed = 0;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(log_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("vm-", 0) != 0) continue;
    const std::string path = entry.path().string();
    if (EndsWith(name, ".log")) {
      if (!OlderThan(path, cutoff)) continue;
      UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
      if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;  // a live VM's
      if (::unlink(path.c_str()) == 0) ++removed;
      if (OlderThan(path + ".1", cutoff) && ::unlink((path + ".1").c_str()) == 0) ++removed;
    } else if (EndsWith(name, ".log.1")) {
      // A rotated log whose current one is gone already.
      const std::string current = path.substr(0, path.size() - 2);
      if (::access(current.c_str(), F_OK) != 0 && OlderThan(path, cutoff) &&
          ::unlink(path.c_str()) == 0) {
        ++removed;
      }
    }
  }
  return removed;
}

}  // namespace beaconbox::shim
