// Mounts the shim asks for in a container's guest bundle, whose paths are relative to
// the bundle (the host does not know where the guest keeps it).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox::guest {

struct OverlayMount {
  std::vector<std::string> options;      // to mount with, every path absolute
  std::vector<std::string> directories;  // upperdir and workdir: created before mounting
};

// An overlay mount's options with each relative lowerdir (':'-separated), upperdir
// and workdir resolved against `bundle`; absolute ones are kept. A relative path
// with an empty, "." or ".." component is refused. Other options are kept as given.
Result<OverlayMount> ResolveOverlayOptions(const std::string& bundle,
                                           const std::vector<std::string>& options);

// A mount source "/dev/disk/by-id/virtio-<serial>" (a virtio-blk disk the host
// attached with that serial, as the storage plugin names it; the guest has no udev to
// make the link) resolved to "<dev_dir>/<name>" by the disk whose
// <sys_block_dir>/<name>/serial is <serial>, waiting up to `wait` for it to appear.
// Any other source is returned as it is.
inline constexpr char kVirtioDiskById[] = "/dev/disk/by-id/virtio-";
Result<std::string> ResolveDiskSource(const std::string& source, std::chrono::milliseconds wait,
                                      const std::string& sys_block_dir = "/sys/block",
                                      const std::string& dev_dir = "/dev");

// Attaches `file` read-only to a free loop device (LOOP_CONFIGURE, autoclear: the
// device is released when its last user goes) and returns the device's path, e.g.
// "/dev/loop3", with an open fd of it: keep that open until the file system is mounted
// from it, or autoclear releases the device at once. For EROFS images shared over
// virtio-fs.
struct LoopDevice {
  std::string path;
  UniqueFd fd;
};
Result<LoopDevice> AttachLoopDevice(const std::string& file);

// A mount's options without "loop", and whether it was there.
bool TakeLoopOption(std::vector<std::string>& options);

}  // namespace beaconbox::guest
