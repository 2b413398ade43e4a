// Who uses a cached EROFS image, and removing the ones nobody uses: `beaconbox-ctl gc`
// (CollectGarbage) and the cache's size limit (EvictToLimit, run after a conversion).
//
// An image K.erofs is in use while
//   - its layer directory still exists with the identity it was keyed by: K.source
//     names the directory, and IdentifyLayer + CacheKey of it give K again (a deleted
//     snapshot, or one whose id was reused, gives another key); or
//   - a process holds flock(LOCK_SH) on it: each container's storage plugin takes one
//     per image in Prepare (HoldImage) and keeps it until Release, in the shim, which
//     lives as long as the VM. A dead shim's locks go with its file descriptors, so a
//     crash never pins an image.
// Removing takes the key's lock (K.lock, without waiting: a conversion of K in
// progress makes K busy and it is kept) and then flock(LOCK_EX | LOCK_NB) on K.erofs:
// when that fails a container holds the image. A Get that opens the image while gc
// holds LOCK_EX waits for it, then sees the path is gone or another file and converts.
//
// Last use (the LRU order of the size limit): K.source's mtime, set on each Get (the
// image's atime is no record: noatime mounts, and every read sets it under relatime).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox::storage {

// flock(LOCK_SH) on the image at `path`, checked to be the file still named so (gc may
// have removed it while this waited): the fd keeps the image in use until closed.
// kNotFound when the path is gone or names another file than the one locked.
Result<UniqueFd> HoldImage(const std::string& path);

// Sets K.source's mtime to now: the image of key K was used (LRU order).
void TouchLastUse(const std::string& cache_dir, const std::string& key);

struct GcItem {
  std::string image_path;
  std::string layer;   // from K.source, "" when unknown
  uint64_t bytes = 0;  // allocated on disk
  std::string reason;  // removed: why unused; kept: why in use
};

struct GcResult {
  std::vector<GcItem> removed;
  std::vector<GcItem> kept;
  uint64_t bytes_after = 0;  // the images left in the cache, allocated bytes
};

// Removes each image that no layer directory and no process uses (see above), with
// its K.source and K.lock, and what crashed conversions left of idle keys
// (K.erofs.tmp.*, K.log.*, a K.source without image). A missing cache dir is empty.
Result<GcResult> CollectGarbage(const std::string& cache_dir);

// While the images in `cache_dir` take more than `max_bytes`, removes the least
// recently used one no process holds (its layer may still exist: the next container
// of it converts again). `removed` lists the evicted; bytes_after > max_bytes means the
// rest is in use (or busy converting).
Result<GcResult> EvictToLimit(const std::string& cache_dir, uint64_t max_bytes);

}  // namespace beaconbox::storage
