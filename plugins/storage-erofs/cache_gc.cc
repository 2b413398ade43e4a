#include "plugins/storage-erofs/cache_gc.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "plugins/storage-erofs/layer_cache.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;

constexpr char kImageSuffix[] = ".erofs";

int64_t Nanoseconds(const struct timespec& time) {
  return static_cast<int64_t>(time.tv_sec) * 1000000000 + time.tv_nsec;
}

struct Entry {
  std::string key;
  std::string image_path;
  std::string layer;
  uint64_t bytes = 0;
  int64_t last_use_ns = 0;
};

// The keys with an image in `dir`, their sizes and last use.
std::vector<Entry> ListImages(const std::string& dir) {
  std::vector<Entry> entries;
  std::error_code ignored;
  for (const auto& file : fs::directory_iterator(dir, ignored)) {
    const std::string name = file.path().filename().string();
    if (!name.ends_with(kImageSuffix) || name.size() == sizeof(kImageSuffix) - 1) continue;
    struct stat image_stat {};
    if (::lstat(file.path().c_str(), &image_stat) != 0 || !S_ISREG(image_stat.st_mode)) continue;
    Entry entry;
    entry.key = name.substr(0, name.size() - (sizeof(kImageSuffix) - 1));
    entry.image_path = file.path().string();
    entry.bytes = static_cast<uint64_t>(image_stat.st_blocks) * 512;
    entry.last_use_ns = Nanoseconds(image_stat.st_mtim);
    const std::string source = dir + "/" + entry.key + ".source";
    if (struct stat source_stat{}; ::stat(source.c_str(), &source_stat) == 0) {
      entry.last_use_ns = Nanoseconds(source_stat.st_mtim);
      auto text = ReadSmallFile(source, 8192);
      if (text.ok()) {
        entry.layer = *text;
        while (!entry.layer.empty() && entry.layer.back() == '\n') entry.layer.pop_back();
      }
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

// Whether the layer directory K.source names still is the one K was made from.
bool LayerStillThere(const Entry& entry) {
  if (entry.layer.empty()) return false;
  auto identity = IdentifyLayer(entry.layer);
  return identity.ok() && CacheKey(*identity) == entry.key;
}

enum class Outcome { kRemoved, kBusy, kHeld, kGone, kFailed };

// Removes K.erofs, K.source and K.lock when no conversion of K runs and no process
// holds the image; `keep_if` may keep it (called with the key's lock and the image's
// exclusive lock held).
template <typename KeepIf>
Outcome RemoveIfUnused(const std::string& dir, const Entry& entry, KeepIf keep_if,
                       std::string* why) {
  const std::string lock_path = dir + "/" + entry.key + ".lock";
  auto key_lock = LockCacheKey(lock_path, /*wait=*/false);
  if (!key_lock.ok()) {
    *why = key_lock.error().message;
    return Outcome::kFailed;
  }
  if (!*key_lock) {
    *why = "being converted";
    return Outcome::kBusy;
  }
  UniqueFd image(::open(entry.image_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!image) {
    if (errno == ENOENT) return Outcome::kGone;  // another gc was quicker
    *why = ErrnoError("open", entry.image_path).message;
    return Outcome::kFailed;
  }
  if (::flock(image.get(), LOCK_EX | LOCK_NB) != 0) {
    *why = "held by a running container";
    return Outcome::kHeld;
  }
  if (keep_if(why)) return Outcome::kHeld;  // a Get of it waits meanwhile
  if (::unlink(entry.image_path.c_str()) != 0) {
    *why = ErrnoError("unlink", entry.image_path).message;
    return Outcome::kFailed;
  }
  ::unlink((dir + "/" + entry.key + ".source").c_str());
  RemoveConversionLeftovers(dir, entry.key);
  ::unlink(lock_path.c_str());  // still held: LockCacheKey's users take a new one
  return Outcome::kRemoved;
}

GcItem ItemOf(const Entry& entry, std::string reason) {
  return GcItem{entry.image_path, entry.layer, entry.bytes, std::move(reason)};
}

// K.source (or K.lock) without K.erofs, of a key nobody converts: a crashed conversion's.
void RemoveOrphans(const std::string& dir) {
  std::error_code ignored;
  std::vector<std::string> keys;
  for (const auto& file : fs::directory_iterator(dir, ignored)) {
    const std::string name = file.path().filename().string();
    for (const char* suffix : {".source", ".lock"}) {
      if (name.ends_with(suffix) && name.size() > std::strlen(suffix)) {
        keys.push_back(name.substr(0, name.size() - std::strlen(suffix)));
      }
    }
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  for (const std::string& key : keys) {
    const std::string image = dir + "/" + key + kImageSuffix;
    if (::access(image.c_str(), F_OK) == 0) continue;
    const std::string lock_path = dir + "/" + key + ".lock";
    auto lock = LockCacheKey(lock_path, /*wait=*/false);
    if (!lock.ok() || !*lock) continue;
    if (::access(image.c_str(), F_OK) == 0) continue;  // made meanwhile
    ::unlink((dir + "/" + key + ".source").c_str());
    RemoveConversionLeftovers(dir, key);
    ::unlink(lock_path.c_str());
  }
}

}  // namespace

Result<UniqueFd> HoldImage(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoError("EROFS image: open", path);
  while (::flock(fd.get(), LOCK_SH) != 0) {
    if (errno != EINTR) return ErrnoError("EROFS image: flock", path);
  }
  struct stat held {
  }, named{};
  if (::fstat(fd.get(), &held) != 0 || ::stat(path.c_str(), &named) != 0 ||
      held.st_dev != named.st_dev || held.st_ino != named.st_ino) {
    return MakeError(ErrorCode::kNotFound, "EROFS image " + path + " was removed meanwhile");
  }
  return fd;
}

void TouchLastUse(const std::string& cache_dir, const std::string& key) {
  const struct timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  (void)::utimensat(AT_FDCWD, (cache_dir + "/" + key + ".source").c_str(), times,
                    AT_SYMLINK_NOFOLLOW);
}

Result<GcResult> CollectGarbage(const std::string& cache_dir) {
  GcResult result;
  if (::access(cache_dir.c_str(), F_OK) != 0) {
    if (errno == ENOENT) return result;
    return ErrnoError("EROFS cache", cache_dir);
  }
  std::vector<Entry> entries = ListImages(cache_dir);
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.image_path < b.image_path; });
  for (const Entry& entry : entries) {
    std::string why;
    const Outcome outcome = RemoveIfUnused(
        cache_dir, entry,
        [&](std::string* reason) {
          if (!LayerStillThere(entry)) return false;
          *reason = "its layer is present";
          return true;
        },
        &why);
    if (outcome == Outcome::kRemoved) {
      result.removed.push_back(ItemOf(
          entry, entry.layer.empty() ? "no layer recorded" : "layer " + entry.layer + " is gone"));
    } else if (outcome != Outcome::kGone) {
      result.kept.push_back(ItemOf(entry, why));
      result.bytes_after += entry.bytes;
    }
  }
  RemoveOrphans(cache_dir);
  return result;
}

Result<GcResult> EvictToLimit(const std::string& cache_dir, uint64_t max_bytes) {
  GcResult result;
  std::vector<Entry> entries = ListImages(cache_dir);
  for (const Entry& entry : entries) result.bytes_after += entry.bytes;
  // Least recently used first; equal times by name, for a stable order.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.last_use_ns != b.last_use_ns ? a.last_use_ns < b.last_use_ns
                                          : a.image_path < b.image_path;
  });
  for (const Entry& entry : entries) {
    if (result.bytes_after <= max_bytes) break;
    std::string why;
    const Outcome outcome = RemoveIfUnused(
        cache_dir, entry, [](std::string*) { return false; }, &why);
    if (outcome == Outcome::kRemoved) {
      result.removed.push_back(ItemOf(entry, "least recently used"));
      result.bytes_after -= entry.bytes;
    } else if (outcome == Outcome::kGone) {
      result.bytes_after -= entry.bytes;
    } else {
      result.kept.push_back(ItemOf(entry, why));
    }
  }
  return result;
}

}  // namespace beaconbox::storage
