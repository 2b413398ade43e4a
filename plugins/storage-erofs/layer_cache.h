// The EROFS image cache: one image per read-only image layer (an overlay lowerdir
// containerd hands over), made with mkfs.erofs and kept under <cache_dir>. The key and
// why a stale image cannot be used: plugins/storage-erofs/README.md.
//
// Files in <cache_dir>, for a key K (CacheKey):
//   K.erofs          the complete image; it only ever appears by rename(2) after fsync
//   K.lock           flock(2)ed while K.erofs is being made (one converter per key)
//   K.erofs.tmp.*    an image being made; a leftover of a crash is removed by the next
//                    converter of K (it holds the lock, so nobody else writes it)
//   K.source         the layer's directory, for gc and for people; its mtime is the
//                    image's last use (the size limit's LRU order, cache_gc.h)
// Each Get holds flock(LOCK_SH) on the image it returns (CachedLayer::hold) so that gc
// and the size limit leave it alone while the caller keeps the fd (cache_gc.h).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox::storage {

inline constexpr uint32_t kErofsMagic = 0xE0F5E1E2;
inline constexpr off_t kErofsSuperblockOffset = 1024;

struct LayerCacheConfig {
  std::string cache_dir;                  // absolute; created on first use
  std::string mkfs_erofs = "mkfs.erofs";  // a name (searched in PATH) or a path
  std::chrono::seconds convert_timeout{600};
  // After a conversion, unused images are evicted, least recently used first, while
  // the cache's images take more than this (allocated bytes); 0: no limit.
  uint64_t max_bytes = 0;
};

// What identifies one layer directory's content for the cache.
struct LayerIdentity {
  std::string path;  // absolute, as containerd named it
  dev_t device = 0;
  ino_t inode = 0;
  int64_t ctime_ns = 0;         // of the directory
  int64_t mtime_ns = 0;         // of the directory
  int64_t parent_ctime_ns = 0;  // of its parent (the snapshot's directory)
};

// Reads the identity of `layer_dir` (lstat of it and of its parent): it must be an
// absolute, clean path of a directory.
Result<LayerIdentity> IdentifyLayer(const std::string& layer_dir);

// The cache key: every field of the identity in hex, the path as its FNV-1a hash
// ("<path hash>-<dev>-<ino>-<ctime>-<mtime>-<parent ctime>"). Correctness does not
// rest on the hash: two paths with equal device, inode and times are one directory.
std::string CacheKey(const LayerIdentity& identity);

// Checks that `path` is a complete EROFS image: a regular file, the superblock magic
// at 1024, a block size of 512..64 KiB and a size covering the superblock's block
// count. The error names the file.
Status ValidateErofsImage(const std::string& path);

// mkfs.erofs's version ("mkfs.erofs 1.5"), read from the banner it prints when it
// makes an image (erofs-utils 1.5 has no --version): it converts an empty directory.
Result<std::string> MkfsErofsVersion(const std::string& mkfs);

struct CachedLayer {
  std::string image_path;
  bool converted = false;  // false: a cache hit
  UniqueFd hold;           // flock(LOCK_SH) on the image: in use while open
  std::string note;        // what the size limit did (evictions, over the limit), or ""
};

// flock(LOCK_EX) on a key's lock file `lock_path`, made if missing. With `wait` false
// an empty fd when another process holds it. The file may be removed by its holder (a
// failed conversion, gc): a lock on a file no longer named `lock_path` is taken again.
Result<UniqueFd> LockCacheKey(const std::string& lock_path, bool wait);

// Removes what a crashed converter of `key` left: K.erofs.tmp.* and K.log.*. Call with
// the key's lock held, so no live converter owns them.
void RemoveConversionLeftovers(const std::string& cache_dir, const std::string& key);

class LayerCache {
 public:
  explicit LayerCache(LayerCacheConfig config) : config_(std::move(config)) {}

  // The image of `layer_dir`: the cached one when it is complete, else made now under
  // the key's lock (a second process asking meanwhile waits and then reuses it). On
  // failure nothing of this conversion is left in the cache and the error is one line
  // naming the layer.
  Result<CachedLayer> Get(const std::string& layer_dir) const;

  // The path of the mkfs.erofs that Get runs.
  std::string MkfsPath() const;

  const LayerCacheConfig& config() const { return config_; }

 private:
  Result<CachedLayer> Convert(const std::string& layer_dir, const std::string& key) const;
  // EvictToLimit after a conversion: the note for the log, "" when under the limit.
  std::string EnforceLimit() const;
  LayerCacheConfig config_;
};

}  // namespace beaconbox::storage
