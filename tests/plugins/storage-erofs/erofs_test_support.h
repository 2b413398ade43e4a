// What the storage-erofs unit tests share: whether the real mkfs.erofs can run, a
// sorted directory listing, the overlay mount containerd's overlayfs snapshotter
// hands a container, a hard-link check and a release request.
#ifndef BEACONBOX_TESTS_PLUGINS_STORAGE_EROFS_EROFS_TEST_SUPPORT_H_
#define BEACONBOX_TESTS_PLUGINS_STORAGE_EROFS_EROFS_TEST_SUPPORT_H_

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "beaconbox/plugin/v1/storage.pb.h"

namespace beaconbox::storage::testing {

inline bool HaveMkfsErofs() { return ::access("/usr/bin/mkfs.erofs", X_OK) == 0; }

// The names in `dir`, sorted; none when it cannot be read.
inline std::vector<std::string> Listing(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ignored;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ignored)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The rootfs mount containerd's overlayfs snapshotter gives a container whose
// writable snapshot is 9, over `lowerdir`.
inline beaconbox::plugin::v1::HostMount OverlayMount(const std::string& lowerdir) {
  beaconbox::plugin::v1::HostMount mount;
  mount.set_type("overlay");
  mount.set_source("overlay");
  mount.add_options("index=off");
  mount.add_options("workdir=/snapshots/9/work");
  mount.add_options("upperdir=/snapshots/9/fs");
  mount.add_options("lowerdir=" + lowerdir);
  return mount;
}

// Whether `a` and `b` are the same file (a hard link of it); false when either is missing.
inline bool SameFile(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

inline beaconbox::plugin::v1::StorageReleaseRequest ReleaseRequest(
    const std::string& namespace_name, const std::string& id, const std::string& bundle) {
  beaconbox::plugin::v1::StorageReleaseRequest release;
  release.set_namespace_(namespace_name);
  release.set_container_id(id);
  release.set_bundle(bundle);
  return release;
}

}  // namespace beaconbox::storage::testing

#endif  // BEACONBOX_TESTS_PLUGINS_STORAGE_EROFS_EROFS_TEST_SUPPORT_H_
