#include "plugins/storage-erofs/containerd_layer.h"

#include <sys/stat.h>

#include <filesystem>

#include "common/base/errno_error.h"
#include "plugins/storage-erofs/layer_cache.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;

bool IsAbsoluteClean(const std::string& path) {
  if (path.size() < 2 || path[0] != '/') return false;
  for (const auto& part : fs::path(path)) {
    if (part == ".." || part == ".") return false;
  }
  return true;
}

// A complete EROFS image, or one line naming the file and what to do.
Result<std::string> CheckedLayerFile(const std::string& file) {
  if (Status valid = ValidateErofsImage(file); !valid.ok()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "containerd's erofs snapshotter layer: " + valid.error().message +
                         ": the layer is damaged; remove the image (ctr image rm) and pull it "
                         "again");
  }
  return file;
}

}  // namespace

Result<std::string> ContainerdErofsLayer(const std::string& lowerdir) {
  std::string dir = lowerdir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (!IsAbsoluteClean(dir) || fs::path(dir).filename() != "fs") return std::string();
  const std::string snapshot = fs::path(dir).parent_path().string();
  struct stat marker {};
  if (::lstat((snapshot + "/" + kContainerdErofsMarker).c_str(), &marker) != 0 ||
      !S_ISREG(marker.st_mode)) {
    return std::string();  // the overlayfs snapshotter's (or anyone's) directory
  }
  return CheckedLayerFile(snapshot + "/" + kContainerdErofsLayerFile);
}

Result<std::string> ContainerdErofsMountImage(const beaconbox::plugin::v1::HostMount& mount) {
  if (!IsAbsoluteClean(mount.source())) {
    return MakeError(ErrorCode::kInvalidArgument, "erofs rootfs mount: source '" + mount.source() +
                                                      "' is not a clean absolute path");
  }
  return CheckedLayerFile(mount.source());
}

}  // namespace beaconbox::storage
