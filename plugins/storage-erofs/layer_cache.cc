#include "plugins/storage-erofs/layer_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/unique_fd.h"
#include "plugins/common/child_process.h"
#include "plugins/common/path_search.h"
#include "plugins/storage-erofs/cache_gc.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;

int64_t Nanoseconds(const struct timespec& time) {
  return static_cast<int64_t>(time.tv_sec) * 1000000000 + time.tv_nsec;
}

std::string Hex(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%llx", static_cast<unsigned long long>(value));
  return text;
}

uint64_t Fnv1a64(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

bool IsAbsoluteClean(const std::string& path) {
  if (path.empty() || path[0] != '/') return false;
  for (const auto& part : fs::path(path)) {
    if (part == ".." || part == ".") return false;
  }
  return true;
}

uint32_t Le32(const unsigned char* bytes) {
  return uint32_t(bytes[0]) | uint32_t(bytes[1]) << 8 | uint32_t(bytes[2]) << 16 |
         uint32_t(bytes[3]) << 24;
}

void FsyncDirectory(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd) (void)::fsync(fd.get());
}

// Runs argv, waits up to `timeout`; the exit status, or an error when it did not end.
Result<int> RunAndWait(const std::vector<std::string>& argv, const std::string& log_path,
                       std::chrono::seconds timeout) {
  plugins::SpawnOptions options;
  options.log_path = log_path;
  options.truncate_log = true;
  BBX_ASSIGN_OR_RETURN(pid_t pid, plugins::ForkExec(argv, options));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    int status = 0;
    const pid_t reaped = ::waitpid(pid, &status, WNOHANG);
    if (reaped == pid) return status;
    if (reaped < 0 && errno != EINTR) return ErrnoError("waitpid for", argv[0]);
    if (std::chrono::steady_clock::now() >= deadline) {
      plugins::EndChild(pid, std::chrono::milliseconds(2000));
      return MakeError(ErrorCode::kTimeout, argv[0] + " did not finish within " +
                                                std::to_string(timeout.count()) + " s");
    }
    std::this_thread::sleep_for(pause);
    if (pause < std::chrono::milliseconds(50)) pause *= 2;
  }
}

// The image at `image` held (LOCK_SH) and complete, or nothing (missing, removed by gc
// meanwhile, or incomplete: never used).
std::optional<UniqueFd> HoldCompleteImage(const std::string& image) {
  auto held = HoldImage(image);
  if (!held.ok() || !ValidateErofsImage(image).ok()) return std::nullopt;
  return std::move(held).value();
}

}  // namespace

void RemoveConversionLeftovers(const std::string& dir, const std::string& key) {
  const std::string temp_prefix = key + ".erofs.tmp.";
  const std::string log_prefix = key + ".log.";
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(dir, ignored)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(temp_prefix) || name.starts_with(log_prefix)) {
      ::unlink(entry.path().c_str());
    }
  }
}

Result<UniqueFd> LockCacheKey(const std::string& lock_path, bool wait) {
  while (true) {
    UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!lock) return ErrnoError("open", lock_path);
#ifdef BEACONBOX_EROFS_TEST_NO_KEY_LOCK
    // TEST BUILD ONLY (storage_erofs_nolock_test): no lock, to show the race it prevents.
    return lock;
#endif
    while (::flock(lock.get(), wait ? LOCK_EX : LOCK_EX | LOCK_NB) != 0) {
      if (!wait && errno == EWOULDBLOCK) return UniqueFd();
      if (errno != EINTR) return ErrnoError("flock", lock_path);
    }
    struct stat held {
    }, named{};
    if (::fstat(lock.get(), &held) == 0 && ::stat(lock_path.c_str(), &named) == 0 &&
        held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
      return lock;
    }
  }
}

Result<LayerIdentity> IdentifyLayer(const std::string& layer_dir) {
  if (!IsAbsoluteClean(layer_dir) || layer_dir == "/") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "layer '" + layer_dir + "' is not a clean absolute path");
  }
  std::string path = layer_dir;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  struct stat dir_stat {};
  if (::lstat(path.c_str(), &dir_stat) != 0) return ErrnoError("layer: lstat", path);
  if (!S_ISDIR(dir_stat.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, "layer " + path + " is not a directory");
  }
  const std::string parent = fs::path(path).parent_path().string();
  struct stat parent_stat {};
  if (::lstat(parent.c_str(), &parent_stat) != 0) return ErrnoError("layer: lstat", parent);
  LayerIdentity identity;
  identity.path = path;
  identity.device = dir_stat.st_dev;
  identity.inode = dir_stat.st_ino;
  identity.ctime_ns = Nanoseconds(dir_stat.st_ctim);
  identity.mtime_ns = Nanoseconds(dir_stat.st_mtim);
  identity.parent_ctime_ns = Nanoseconds(parent_stat.st_ctim);
  return identity;
}

std::string CacheKey(const LayerIdentity& identity) {
  return Hex(Fnv1a64(identity.path)) + "-" + Hex(identity.device) + "-" + Hex(identity.inode) +
         "-" + Hex(static_cast<uint64_t>(identity.ctime_ns)) + "-" +
         Hex(static_cast<uint64_t>(identity.mtime_ns)) + "-" +
         Hex(static_cast<uint64_t>(identity.parent_ctime_ns));
}

Status ValidateErofsImage(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoError("EROFS image: open", path);
  struct stat file_stat {};
  if (::fstat(fd.get(), &file_stat) != 0) return ErrnoError("EROFS image: fstat", path);
  if (!S_ISREG(file_stat.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "EROFS image " + path + " is not a regular file: remove it");
  }
  unsigned char superblock[64];
  const ssize_t got = ::pread(fd.get(), superblock, sizeof(superblock), kErofsSuperblockOffset);
  if (got != static_cast<ssize_t>(sizeof(superblock)) || Le32(superblock) != kErofsMagic) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "EROFS image " + path + " is truncated or not EROFS (no superblock magic)");
  }
  const unsigned block_bits = superblock[12];
  const uint64_t blocks = Le32(superblock + 36);
  if (block_bits < 9 || block_bits > 16 || blocks == 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "EROFS image " + path + " has a bad superblock (block size or count)");
  }
  if (static_cast<uint64_t>(file_stat.st_size) < (blocks << block_bits)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "EROFS image " + path + " is truncated: " + std::to_string(file_stat.st_size) +
                         " bytes of " + std::to_string(blocks << block_bits));
  }
  return Status::Ok();
}

Result<std::string> MkfsErofsVersion(const std::string& mkfs) {
  char pattern[] = "/tmp/bbx-erofs-check-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) return ErrnoError("mkdtemp", pattern);
  const std::string dir = pattern;
  const std::string empty = dir + "/empty";
  ::mkdir(empty.c_str(), 0755);
  auto status = RunAndWait({mkfs, dir + "/image", empty}, dir + "/log", std::chrono::seconds(30));
  auto read = ReadSmallFile(dir + "/log", 1 << 16);
  std::string output = read.ok() ? *read : std::string();
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  if (!status.ok()) return status.error();
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     mkfs + " cannot make an image of an empty directory: " +
                         PrintableOneLine(output.substr(0, 200)));
  }
  const size_t start = output.find("mkfs.erofs ");
  if (start == std::string::npos) return std::string("version not shown");
  const size_t end = output.find_first_of("\r\n\x1b", start);
  return PrintableOneLine(output.substr(start, std::min<size_t>(end - start, 80)));
}

std::string LayerCache::MkfsPath() const { return plugins::FindInPath(config_.mkfs_erofs); }

Result<CachedLayer> LayerCache::Get(const std::string& layer_dir) const {
  BBX_ASSIGN_OR_RETURN(LayerIdentity identity, IdentifyLayer(layer_dir));
  const std::string key = CacheKey(identity);
  const std::string image = config_.cache_dir + "/" + key + ".erofs";
  // The hit needs no key lock: K.erofs only appears complete (rename after fsync).
  if (auto held = HoldCompleteImage(image)) {
    TouchLastUse(config_.cache_dir, key);
    return CachedLayer{image, false, std::move(*held), ""};
  }
  auto converted = Convert(identity.path, key);
  if (!converted.ok()) {
    return converted.error().Wrap("EROFS layer " + identity.path);
  }
  if (converted->converted && config_.max_bytes > 0) {
    converted->note = EnforceLimit();
  }
  return converted;
}

std::string LayerCache::EnforceLimit() const {
  auto mib = [](uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
    return std::string(text);
  };
  const std::string limit = "cache_max_mib " + std::to_string(config_.max_bytes >> 20);
  auto evicted = EvictToLimit(config_.cache_dir, config_.max_bytes);
  if (!evicted.ok()) return "size limit not enforced: " + evicted.error().message;
  std::string note;
  if (!evicted->removed.empty()) {
    uint64_t freed = 0;
    for (const auto& item : evicted->removed) freed += item.bytes;
    note = "evicted " + std::to_string(evicted->removed.size()) +
           " least recently used image(s) (" + mib(freed) + ") for " + limit;
  }
  if (evicted->bytes_after > config_.max_bytes) {
    if (!note.empty()) note += "; ";
    note += "the cache holds " + mib(evicted->bytes_after) + ", over " + limit +
            ": the other images are in use by running containers (or being converted); "
            "raise cache_max_mib or stop containers";
  }
  return note;
}

Result<CachedLayer> LayerCache::Convert(const std::string& layer_dir,
                                        const std::string& key) const {
  std::error_code error;
  fs::create_directories(config_.cache_dir, error);
  if (error) {
    return MakeError(ErrorCode::kPermission, "creating the cache directory " + config_.cache_dir +
                                                 ": " + error.message() +
                                                 " (config key cache_dir)");
  }
  const std::string image = config_.cache_dir + "/" + key + ".erofs";
  const std::string lock_path = config_.cache_dir + "/" + key + ".lock";
  // The lock file is removed after a failed conversion (nothing is left behind) and by
  // gc: LockCacheKey takes the lock again when the file it locked is no longer named so.
  BBX_ASSIGN_OR_RETURN(UniqueFd lock, LockCacheKey(lock_path, /*wait=*/true));
  // Another process may have made it while this one waited for the lock.
  if (auto held = HoldCompleteImage(image)) {
    TouchLastUse(config_.cache_dir, key);
    return CachedLayer{image, false, std::move(*held), ""};
  }
  // What is there is not a complete image (a truncated or foreign file): never used.
  ::unlink(image.c_str());
  RemoveConversionLeftovers(config_.cache_dir, key);

  const std::string mkfs = MkfsPath();
  if (::access(mkfs.c_str(), X_OK) != 0) {
    ::unlink(lock_path.c_str());
    return MakeError(ErrorCode::kFailedPrecondition,
                     "mkfs.erofs not found (" + mkfs +
                         ", config key mkfs_erofs): install erofs-utils or use [storage] driver "
                         "= \"virtiofs\"");
  }
  static std::atomic<unsigned> conversions{0};
  const std::string suffix = std::to_string(::getpid()) + "." +
                             std::to_string(conversions.fetch_add(1, std::memory_order_relaxed));
  const std::string temp = image + ".tmp." + suffix;
  const std::string log = config_.cache_dir + "/" + key + ".log." + suffix;
  auto cleanup = [&] {
    ::unlink(temp.c_str());
    ::unlink(log.c_str());
    ::unlink(lock_path.c_str());  // still held: see the loop above
  };
  // Per-file mtimes as in the layer; owners, modes, xattrs (overlay whiteouts' opaque
  // markers among them) and character devices 0/0 (whiteouts) are kept by default.
  auto status = RunAndWait({mkfs, "--quiet", "--preserve-mtime", temp, layer_dir}, log,
                           config_.convert_timeout);
  if (!status.ok()) {
    cleanup();
    return status.error();
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    std::string reason = ReadFileTail(log, 300);
    while (!reason.empty() && (reason.back() == '|' || reason.back() == ' ')) reason.pop_back();
    cleanup();
    return MakeError(ErrorCode::kInvalidArgument,
                     "mkfs.erofs cannot convert it (" +
                         (WIFEXITED(*status) ? "exit " + std::to_string(WEXITSTATUS(*status))
                                             : "signal " + std::to_string(WTERMSIG(*status))) +
                         (reason.empty() ? "" : ": " + reason) +
                         "): check the layer's files and free disk, or use [storage] driver = "
                         "\"virtiofs\"");
  }
  {
    UniqueFd temp_fd(::open(temp.c_str(), O_RDONLY | O_CLOEXEC));
    if (!temp_fd || ::fsync(temp_fd.get()) != 0) {
      Error fsync_error = ErrnoError("fsync", temp);
      cleanup();
      return fsync_error;
    }
  }
  if (Status valid = ValidateErofsImage(temp); !valid.ok()) {
    cleanup();
    return valid.error().Wrap("mkfs.erofs made a bad image (full disk?)");
  }
  ::chmod(temp.c_str(), 0644);
  (void)WriteFileAtomic(config_.cache_dir + "/" + key + ".source", layer_dir + "\n");
  if (::rename(temp.c_str(), image.c_str()) != 0) {
    Error rename_error = ErrnoError("rename to", image);
    cleanup();
    return rename_error;
  }
  ::unlink(log.c_str());
  FsyncDirectory(config_.cache_dir);
  // Held before the key's lock goes: gc and the size limit never take a fresh image.
  BBX_ASSIGN_OR_RETURN(UniqueFd hold, HoldImage(image));
  return CachedLayer{image, true, std::move(hold), ""};
}

}  // namespace beaconbox::storage
