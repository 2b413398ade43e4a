#include "plugins/vmm-qemu/qemu_version.h"

#include <cctype>
#include <filesystem>

#include "common/base/file_util.h"
#include "plugins/common/child_process.h"
#include "plugins/vmm-qemu/accelerator.h"

namespace beaconbox::qemu {
namespace {

constexpr std::string_view kVersionPrefix = "QEMU emulator version ";
constexpr size_t kMaxVersionOutput = 4096;
constexpr size_t kMaxCacheFile = 4096;

// "7.2.22": one to four dot-separated numbers, nothing else.
bool IsVersionNumber(std::string_view text) {
  if (text.empty() || text.size() > 32 || text.front() == '.' || text.back() == '.') return false;
  size_t dots = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '.') {
      if (text[i - 1] == '.') return false;
      ++dots;
    } else if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
      return false;
    }
  }
  return dots <= 3;
}

bool IsVersionText(std::string_view text) {
  return text.starts_with(kVersionPrefix) && IsVersionNumber(text.substr(kVersionPrefix.size()));
}

std::string CachePath(const std::string& cache_dir, const std::string& identity) {
  return cache_dir + "/qemu-version-" + VerdictKey(identity);
}

}  // namespace

std::string VmmVersionText(uint64_t major, uint64_t minor, uint64_t micro) {
  return std::string(kVersionPrefix) + std::to_string(major) + "." + std::to_string(minor) + "." +
         std::to_string(micro);
}

Result<std::string> ParseQemuVersionOutput(std::string_view output) {
  const std::string_view line = output.substr(0, output.find('\n'));
  if (line.starts_with(kVersionPrefix)) {
    std::string_view number = line.substr(kVersionPrefix.size());
    number = number.substr(0, number.find(' '));
    if (IsVersionNumber(number)) return std::string(kVersionPrefix) + std::string(number);
  }
  return MakeError(ErrorCode::kInvalidArgument, "'--version' printed '" + SanitizeLine(line, 120) +
                                                    "', not '" + std::string(kVersionPrefix) +
                                                    "X.Y.Z': is config key binary a QEMU?");
}

Result<std::string> QemuBinaryVersion(const std::string& binary, const std::string& cache_dir) {
  const std::string identity = FileIdentity(binary);
  const std::string cache = cache_dir.empty() ? "" : CachePath(cache_dir, identity);
  if (!cache.empty()) {
    // "<identity>\n<version>\n", written by an earlier call (maybe another shim's).
    auto cached = ReadSmallFile(cache, kMaxCacheFile);
    if (cached.ok()) {
      const size_t end_of_key = cached->find('\n');
      if (end_of_key != std::string::npos && cached->compare(0, end_of_key, identity) == 0 &&
          cached->back() == '\n') {
        std::string version = cached->substr(end_of_key + 1);
        version.pop_back();
        if (IsVersionText(version)) return version;
      }
    }
  }
  plugins::CapturedRunOptions options;
  options.max_stdout = kMaxVersionOutput;
  options.max_stderr = 512;
  options.timeout = std::chrono::seconds(10);
  auto run = plugins::RunCaptured({binary, "--version"}, options);
  if (!run.ok()) return run.error().Wrap("running " + binary + " --version (config key binary)");
  if (run->exit_code != 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     binary + " --version (config key binary) exited with status " +
                         std::to_string(run->exit_code) + ": " +
                         SanitizeLine(run->stderr_text, 200));
  }
  auto version = ParseQemuVersionOutput(run->stdout_text);
  if (!version.ok()) return version.error().Wrap(binary);
  if (!cache.empty()) {
    // Best effort: without the cache the next restore runs --version again.
    std::error_code ignored;
    std::filesystem::create_directories(cache_dir, ignored);
    (void)WriteFileAtomic(cache, identity + "\n" + *version + "\n", 0600);
  }
  return version;
}

Status CheckRestoreVmmVersion(const beaconbox::plugin::v1::VmSpec& spec, const std::string& binary,
                              const std::string& binary_version) {
  if (spec.restore_dir().empty() || spec.restore_vmm_version() == binary_version) {
    return Status::Ok();
  }
  // restore_vmm_version comes from a checkpoint: input from outside, one bounded line.
  const std::string saved_by = SanitizeLine(spec.restore_vmm_version(), 120);
  return MakeError(ErrorCode::kInvalidArgument,
                   "checkpoint refused: its VM was saved by " + saved_by + ", this host's QEMU " +
                       binary + " (config key binary) is " + binary_version +
                       "; restore it on a host with " + saved_by +
                       " (a saved VM loads into the QEMU that saved it), or take a new "
                       "checkpoint");
}

}  // namespace beaconbox::qemu
