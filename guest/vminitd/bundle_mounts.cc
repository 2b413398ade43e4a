#include "guest/vminitd/bundle_mounts.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <string_view>
#include <thread>

#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/unique_fd.h"
#include "guest/vminitd/validation.h"

namespace beaconbox::guest {
namespace {

Result<std::string> InBundle(const std::string& bundle, std::string_view path,
                             std::string_view what) {
  if (path.starts_with("/")) return std::string(path);
  BBX_RETURN_IF_ERROR(ValidateRelativePath(path, what));
  return bundle + "/" + std::string(path);
}

}  // namespace

Result<OverlayMount> ResolveOverlayOptions(const std::string& bundle,
                                           const std::vector<std::string>& options) {
  OverlayMount out;
  for (const std::string& option : options) {
    const size_t equals = option.find('=');
    const std::string key = option.substr(0, equals);
    if (equals == std::string::npos ||
        (key != "lowerdir" && key != "upperdir" && key != "workdir")) {
      out.options.push_back(option);
      continue;
    }
    const std::string_view value = std::string_view(option).substr(equals + 1);
    std::string resolved;
    if (key == "lowerdir") {
      size_t start = 0;
      while (start <= value.size()) {
        size_t colon = value.find(':', start);
        if (colon == std::string_view::npos) colon = value.size();
        BBX_ASSIGN_OR_RETURN(std::string layer, InBundle(bundle, value.substr(start, colon - start),
                                                         "overlay lowerdir"));
        if (!resolved.empty()) resolved += ':';
        resolved += layer;
        start = colon + 1;
      }
    } else {
      BBX_ASSIGN_OR_RETURN(resolved, InBundle(bundle, value, "overlay " + key));
      out.directories.push_back(resolved);
    }
    out.options.push_back(key + "=" + resolved);
  }
  return out;
}

Result<std::string> ResolveDiskSource(const std::string& source, std::chrono::milliseconds wait,
                                      const std::string& sys_block_dir,
                                      const std::string& dev_dir) {
  if (!source.starts_with(kVirtioDiskById)) return source;
  const std::string serial = source.substr(sizeof(kVirtioDiskById) - 1);
  BBX_RETURN_IF_ERROR(ValidateRelativePath(serial, "disk serial"));
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (true) {
    if (DIR* dir = ::opendir(sys_block_dir.c_str())) {
      std::string found;
      while (const struct dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        if (name.empty() || name[0] == '.') continue;
        auto text = ReadSmallFile(sys_block_dir + "/" + name + "/serial", 256);
        if (!text.ok()) continue;
        std::string value = *text;
        while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
        if (value == serial) {
          found = name;
          break;
        }
      }
      ::closedir(dir);
      if (!found.empty()) return dev_dir + "/" + found;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return MakeError(ErrorCode::kNotFound,
                       "no disk with serial " + serial + " in " + sys_block_dir +
                           " (virtio_blk not loaded, or the VMM did not attach it)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool TakeLoopOption(std::vector<std::string>& options) {
  const auto end = std::remove(options.begin(), options.end(), std::string("loop"));
  const bool had = end != options.end();
  options.erase(end, options.end());
  return had;
}

Result<LoopDevice> AttachLoopDevice(const std::string& file) {
  UniqueFd image(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!image) return ErrnoError("loop: open", file);
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) return ErrnoError("loop: open", "/dev/loop-control (module loop loaded?)");
  // Another bundle may take the free device first: LOOP_CONFIGURE then says EBUSY.
  for (int attempt = 0; attempt < 64; ++attempt) {
    const int number = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (number < 0) return ErrnoError("loop: LOOP_CTL_GET_FREE for", file);
    const std::string device = "/dev/loop" + std::to_string(number);
    UniqueFd loop;
    for (int wait = 0; wait < 100 && !loop; ++wait) {
      loop = UniqueFd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
      if (!loop) ::usleep(10000);  // devtmpfs makes the node shortly after
    }
    if (!loop) return ErrnoError("loop: open", device);
    struct loop_config config {};
    config.fd = static_cast<uint32_t>(image.get());
    config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    if (::ioctl(loop.get(), LOOP_CONFIGURE, &config) == 0)
      return LoopDevice{device, std::move(loop)};
    if (errno != EBUSY) return ErrnoError("loop: LOOP_CONFIGURE " + device + " with", file);
  }
  return MakeError(ErrorCode::kUnavailable, "loop: no free loop device for " + file);
}

}  // namespace beaconbox::guest
