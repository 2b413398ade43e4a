#include "host/shim/shim_record.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/base/bounded_json.h"
#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/process_start_time.h"
#include "common/base/unique_fd.h"
#include "host/shim/pod_grouping.h"

namespace beaconbox::shim {
namespace {

using nlohmann::json;

constexpr int kShimRecordVersion = 1;
constexpr std::string_view kRecordSuffix = ".json";
constexpr std::string_view kStateSuffix = ".state.json";

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The checks every record passes before it is read: written by root for root, so a
// file of another owner, a symlink, a FIFO or a huge file is not one of ours.
Status CheckRecordFile(int fd, const std::string& path, struct stat* st) {
  if (::fstat(fd, st) != 0) return ErrnoError("stat", path);
  if (!S_ISREG(st->st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, path + " is not a regular file");
  }
  if (st->st_uid != ::geteuid()) {
    return MakeError(ErrorCode::kPermission, path + " is owned by uid " +
                                                 std::to_string(st->st_uid) + ", not by " +
                                                 std::to_string(::geteuid()));
  }
  if (st->st_size > static_cast<off_t>(kMaxShimRecordBytes)) {
    return MakeError(ErrorCode::kExhausted,
                     path + " is larger than " + std::to_string(kMaxShimRecordBytes) + " bytes");
  }
  return Status::Ok();
}

// Parses the open record `fd` and checks that it names the key its file name says, so
// a record cannot make a sweep release another sandbox's things.
Result<ShimRecord> ReadRecordFd(int fd, const std::string& path) {
  BBX_ASSIGN_OR_RETURN(std::string text, ReadSmallFd(fd, path, kMaxShimRecordBytes));
  auto record = ParseShimRecord(text);
  if (!record.ok()) return record.error().Wrap(path);
  if (BaseName(path) != KeyFileName(record->key) + std::string(kRecordSuffix)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     path + " names the sandbox " + record->key.ToString() + ", not its own");
  }
  return record;
}

// The socket of a dead shim goes only when it is a socket in the layout's socket dir
// and nothing answers on it (the pod's next shim may have bound the same name).
void RemoveDeadShimSocket(const std::string& socket_path, const std::string& socket_dir) {
  if (socket_path.empty() || socket_dir.empty()) return;
  const size_t slash = socket_path.rfind('/');
  if (slash == std::string::npos || socket_path.substr(0, slash) != socket_dir) {
    spdlog::warn("shim record names socket {} outside {}: left alone", socket_path, socket_dir);
    return;
  }
  const std::string name = socket_path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") return;
  struct stat st {};
  if (::lstat(socket_path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return;
  if (!ShimSocketAnswers(socket_path)) ::unlink(socket_path.c_str());
}

// An exclusive flock on `fd`, waiting up to `wait_ms` for another holder.
bool LockRecord(int fd, int wait_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

std::string SerializeShimRecord(const ShimRecord& record) {
  json document = {{"version", kShimRecordVersion},
                   {"namespace", record.key.namespace_name},
                   {"id", record.key.id},
                   {"shim_pid", record.shim_pid},
                   {"shim_start_time", record.shim_start_time},
                   {"config_path", record.config_path},
                   {"socket", record.socket_path},
                   {"bundle", record.bundle}};
  return document.dump(2) + "\n";
}

Result<ShimRecord> ParseShimRecord(std::string_view text) {
  BBX_ASSIGN_OR_RETURN(json document,
                       ParseBoundedJson(text, "the shim record", {8, kMaxShimRecordBytes}));
  if (!document.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "the shim record is not a JSON object");
  }
  auto version = document.find("version");
  if (version == document.end() || !version->is_number_integer() ||
      version->get<int64_t>() != kShimRecordVersion) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the shim record has an unknown version (this shim reads " +
                         std::to_string(kShimRecordVersion) + ")");
  }
  auto string_of = [&](const char* key) -> Result<std::string> {
    auto it = document.find(key);
    if (it == document.end() || !it->is_string()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       std::string("the shim record has no string \"") + key + "\"");
    }
    return it->get<std::string>();
  };
  ShimRecord record;
  BBX_ASSIGN_OR_RETURN(record.key.namespace_name, string_of("namespace"));
  BBX_ASSIGN_OR_RETURN(record.key.id, string_of("id"));
  BBX_ASSIGN_OR_RETURN(record.config_path, string_of("config_path"));
  BBX_ASSIGN_OR_RETURN(record.socket_path, string_of("socket"));
  BBX_ASSIGN_OR_RETURN(record.bundle, string_of("bundle"));
  if (record.key.namespace_name.empty() || record.key.id.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "the shim record names no namespace or id");
  }
  auto pid = document.find("shim_pid");
  auto start_time = document.find("shim_start_time");
  if (pid == document.end() || !pid->is_number_integer() || pid->get<int64_t>() <= 0 ||
      start_time == document.end() || !start_time->is_number_unsigned()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the shim record has no shim_pid and shim_start_time");
  }
  record.shim_pid = pid->get<int64_t>();
  record.shim_start_time = start_time->get<uint64_t>();
  return record;
}

Status SaveShimRecord(const std::string& path, const ShimRecord& record) {
  const std::string directory = path.substr(0, path.rfind('/'));
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error) {
    return MakeError(ErrorCode::kPermission, "creating " + directory + ": " + error.message() +
                                                 " (config key paths.state_dir)");
  }
  ::chmod(directory.c_str(), 0700);
  return WriteFileAtomic(path, SerializeShimRecord(record), 0600);
}

Result<ShimRecord> LoadShimRecord(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return MakeError(ErrorCode::kNotFound, path + " does not exist");
    return ErrnoError("open", path);
  }
  struct stat st {};
  BBX_RETURN_IF_ERROR(CheckRecordFile(fd.get(), path, &st));
  return ReadRecordFd(fd.get(), path);
}

bool ShimRecordAlive(const ShimRecord& record) {
  return ProcessRuns(record.shim_pid, record.shim_start_time);
}

RecordOutcome ReleaseIfDead(const std::string& path, const DeadShimRelease& release,
                            std::string* why) {
  auto skipped = [why](std::string reason) {
    if (why != nullptr) *why = std::move(reason);
    return RecordOutcome::kSkipped;
  };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return RecordOutcome::kGone;
    return skipped(ErrnoError("open", path).message);
  }
  struct stat st {};
  if (Status checked = CheckRecordFile(fd.get(), path, &st); !checked.ok()) {
    return skipped(checked.error().message);
  }
  // Another start's sweep or a `delete` holds it: that one releases it.
  if (!LockRecord(fd.get(), release.lock_wait_ms)) {
    return skipped(path + " is being released by another shim action");
  }
  // Whoever held the lock may have released it and removed the file; a new shim may
  // have written a new record under the name since (a new file, another inode).
  struct stat now {};
  if (::stat(path.c_str(), &now) != 0 || now.st_ino != st.st_ino || now.st_dev != st.st_dev) {
    return RecordOutcome::kGone;
  }
  auto record = ReadRecordFd(fd.get(), path);
  if (!record.ok()) return skipped(record.error().message);
  const auto exit_deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(release.exit_wait_ms);
  while (ShimRecordAlive(*record)) {
    if (std::chrono::steady_clock::now() >= exit_deadline) return RecordOutcome::kLive;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (release.teardown) {
    if (Status released = release.teardown(*record); !released.ok()) {
      return skipped(path + ": " + released.error().message);
    }
  }
  RemoveDeadShimSocket(record->socket_path, release.socket_dir);
  ::unlink(path.c_str());
  return RecordOutcome::kReleased;
}

SweepReport SweepDeadShims(const DeadShimRelease& release, const ContainerKey& exclude,
                           size_t max_records, size_t max_releases) {
  SweepReport report;
  if (release.record_dir.empty()) return report;
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(release.record_dir.c_str()), ::closedir);
  if (!dir) return report;  // no record was ever written
  const std::string own_name = KeyFileName(exclude) + std::string(kRecordSuffix);
  size_t looked_at = 0;
  while (const dirent* entry = ::readdir(dir.get())) {
    const std::string name = entry->d_name;
    if (name.size() <= kRecordSuffix.size() || !name.ends_with(kRecordSuffix) ||
        name.ends_with(kStateSuffix) || name == own_name) {
      continue;
    }
    if (looked_at == max_records || report.released == max_releases) {
      report.capped = true;
      break;
    }
    ++looked_at;
    std::string why;
    switch (ReleaseIfDead(release.record_dir + "/" + name, release, &why)) {
      case RecordOutcome::kReleased:
        ++report.released;
        break;
      case RecordOutcome::kLive:
        ++report.live;
        break;
      case RecordOutcome::kSkipped:
        ++report.skipped;
        spdlog::warn("shim record skipped: {}", why);
        break;
      case RecordOutcome::kGone:
        break;
    }
  }
  if (report.released + report.skipped > 0 || report.capped) {
    spdlog::info("swept {}: {} dead shim(s) released, {} live, {} skipped{}", release.record_dir,
                 report.released, report.live, report.skipped,
                 report.capped ? " (capped: the next sweep goes on)" : "");
  }
  return report;
}

}  // namespace beaconbox::shim
