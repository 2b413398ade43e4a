#include "plugins/vmm-qemu/accelerator.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/base/bounded_json.h"
#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/unique_fd.h"
#include "plugins/common/child_process.h"

namespace beaconbox::qemu {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr size_t kMaxVerdictFile = 64 * 1024;
constexpr size_t kMaxReason = 480;
// The console is scanned for the marker up to this much; a guest printing more
// without reaching init is treated as not reaching it.
constexpr size_t kMaxConsoleScan = 4 * 1024 * 1024;
constexpr char kTcgAdvice[] =
    "containers use TCG (slow): use a host with hardware KVM (on a cloud VM, nested "
    "virtualization with a full KVM), or set accelerator = \"tcg\" in "
    "[plugins.vmm.qemu.config] to skip the check";

std::string ReadBootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return SanitizeLine(id, 64);
}

Result<std::string> StatLine(const std::string& what, const std::string& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) {
    return ErrnoError("stat " + what, path.empty() ? std::string("(unset)") : path);
  }
  return what + "=" + path + " size=" + std::to_string(st.st_size) +
         " mtime_ns=" + std::to_string(st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec) +
         "\n";
}

// The first `max_bytes` of a file (QEMU's first error line comes first).
std::string FileHead(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  std::string head(max_bytes, '\0');
  in.read(head.data(), static_cast<std::streamsize>(max_bytes));
  head.resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  return head;
}

// Watches the console file for the marker without reading it twice or without bound.
class ConsoleScanner {
 public:
  explicit ConsoleScanner(std::string path) : path_(std::move(path)) {}
  // Whether the marker has appeared; reads only what is new.
  bool Poll() {
    if (found_ || scanned_ >= kMaxConsoleScan) return found_;
    if (!fd_) fd_.Reset(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd_) return false;
    char buffer[16384];
    while (scanned_ < kMaxConsoleScan) {
      ssize_t n = ::read(fd_.get(), buffer, sizeof(buffer));
      if (n <= 0) break;
      scanned_ += static_cast<size_t>(n);
      window_.append(buffer, static_cast<size_t>(n));
      if (window_.find(kProbeInitMarker) != std::string::npos) return found_ = true;
      size_t keep = sizeof(kProbeInitMarker);
      if (window_.size() > keep) window_.erase(0, window_.size() - keep);
    }
    return false;
  }
  size_t bytes() const { return scanned_; }

 private:
  std::string path_;
  UniqueFd fd_;
  std::string window_;
  size_t scanned_ = 0;
  bool found_ = false;
};

std::string ExitText(int status) {
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "exit status " + std::to_string(WEXITSTATUS(status));
}

bool OpensReadWrite(const std::string& device, std::string* why_not) {
  UniqueFd fd(::open(device.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) *why_not = std::strerror(errno);
  return fd.valid();
}

}  // namespace

std::string SanitizeLine(std::string_view text, size_t max_bytes) {
  std::string line;
  line.reserve(std::min(text.size(), max_bytes));
  bool pending_break = false;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '\n' || c == '\r') {
      pending_break = !line.empty();
      continue;
    }
    if (pending_break) {
      line += " | ";
      pending_break = false;
    }
    line += (byte < 0x20 || byte > 0x7e) ? '?' : c;
    if (line.size() >= max_bytes) {
      line.resize(max_bytes);
      if (max_bytes > 3) line.replace(max_bytes - 3, 3, "...");
      break;
    }
  }
  return line;
}

Result<std::string> VerdictKeyText(const ProbeTarget& target, const std::string& kvm_device) {
  std::string text = "beaconbox kvm verdict v1\nboot_id=" + ReadBootId() + "\n";
  struct stat st {};
  if (::stat(kvm_device.c_str(), &st) != 0) return ErrnoError("stat KVM device", kvm_device);
  text += "kvm_device=" + kvm_device + " rdev=" + std::to_string(major(st.st_rdev)) + ":" +
          std::to_string(minor(st.st_rdev)) + "\n";
  BBX_ASSIGN_OR_RETURN(std::string binary, StatLine("binary", target.binary));
  BBX_ASSIGN_OR_RETURN(std::string kernel, StatLine("kernel", target.kernel));
  BBX_ASSIGN_OR_RETURN(std::string initrd, StatLine("initrd", target.initrd));
  return text + binary + kernel + initrd + "machine=" + target.machine + " cpu=host\n";
}

std::string FileIdentity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return path + " missing";
  return path + " size=" + std::to_string(st.st_size) +
         " mtime=" + std::to_string(int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec) +
         " ino=" + std::to_string(st.st_ino) + " dev=" + std::to_string(st.st_dev);
}

std::string VerdictKey(std::string_view key_text) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : key_text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(hash));
  return hex;
}

std::string VerdictPath(const std::string& cache_dir, const std::string& key) {
  return cache_dir + "/kvm-verdict-" + key + ".json";
}

std::string SerializeVerdict(const KvmVerdict& verdict) {
  nlohmann::json json = {
      {"version", 1},
      {"usable", verdict.usable},
      {"reason", verdict.reason},
      {"probe_ms", verdict.probe_ms},
      {"probed_at", verdict.probed_at},
      {"boot_id", verdict.boot_id},
      {"kvm_device", verdict.kvm_device},
      {"binary", verdict.binary},
      {"kernel", verdict.kernel},
      {"initrd", verdict.initrd},
  };
  // Replacement of invalid UTF-8 keeps dump() from throwing; the reason is ASCII anyway.
  return json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Result<KvmVerdict> ParseVerdict(std::string_view text) {
  BBX_ASSIGN_OR_RETURN(nlohmann::json json, ParseBoundedJson(text, "KVM verdict"));
  if (!json.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "KVM verdict is not a JSON object");
  }
  auto version = json.find("version");
  if (version == json.end() || !version->is_number_integer() || *version != 1) {
    return MakeError(ErrorCode::kInvalidArgument, "KVM verdict has no version 1");
  }
  auto usable = json.find("usable");
  if (usable == json.end() || !usable->is_boolean()) {
    return MakeError(ErrorCode::kInvalidArgument, "KVM verdict has no boolean 'usable'");
  }
  KvmVerdict verdict;
  verdict.usable = usable->get<bool>();
  auto text_field = [&](const char* name) {
    auto it = json.find(name);
    return it != json.end() && it->is_string() ? SanitizeLine(it->get<std::string>(), 4096)
                                               : std::string();
  };
  auto int_field = [&](const char* name) -> int64_t {
    auto it = json.find(name);
    return it != json.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  verdict.reason = SanitizeLine(text_field("reason"), kMaxReason);
  verdict.probe_ms = int_field("probe_ms");
  verdict.probed_at = int_field("probed_at");
  verdict.boot_id = text_field("boot_id");
  verdict.kvm_device = text_field("kvm_device");
  verdict.binary = text_field("binary");
  verdict.kernel = text_field("kernel");
  verdict.initrd = text_field("initrd");
  return verdict;
}

Result<std::optional<KvmVerdict>> ReadVerdict(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::optional<KvmVerdict>();
    return ErrnoError("opening KVM verdict", path);
  }
  std::string text(kMaxVerdictFile + 1, '\0');
  size_t length = 0;
  while (length < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + length, text.size() - length);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("reading KVM verdict", path);
    if (n == 0) break;
    length += static_cast<size_t>(n);
  }
  if (length > kMaxVerdictFile) {
    return MakeError(ErrorCode::kInvalidArgument, "KVM verdict " + path + " is too large");
  }
  text.resize(length);
  auto verdict = ParseVerdict(text);
  if (!verdict.ok()) return verdict.error().Wrap(path);
  return std::optional<KvmVerdict>(std::move(verdict).value());
}

Status WriteVerdict(const std::string& path, const KvmVerdict& verdict) {
  return WriteFileAtomic(path, SerializeVerdict(verdict));
}

void InvalidateVerdict(const std::string& path) {
  if (!path.empty()) ::unlink(path.c_str());
}

std::vector<std::string> BuildProbeCommand(const ProbeTarget& target,
                                           const std::string& console_path) {
  // loglevel=7 prints the KERN_INFO "Run /init as init process"; panic=-1 with
  // -no-reboot turns a guest panic into QEMU's exit.
  return {target.binary,
          "-nodefaults",
          "-no-user-config",
          "-display",
          "none",
          "-no-reboot",
          "-accel",
          "kvm",
          "-M",
          target.machine,
          "-cpu",
          "host",
          "-smp",
          "1",
          "-m",
          std::to_string(target.memory_mib == 0 ? 512 : target.memory_mib) + "M",
          "-kernel",
          target.kernel,
          "-initrd",
          target.initrd,
          "-append",
          "console=ttyS0 loglevel=7 panic=-1 reboot=t",
          "-serial",
          "file:" + console_path};
}

KvmVerdict ProbeKvm(const ProbeTarget& target, std::chrono::milliseconds timeout,
                    const std::string& scratch_dir) {
  KvmVerdict verdict;
  verdict.binary = target.binary;
  verdict.kernel = target.kernel;
  verdict.initrd = target.initrd;
  verdict.boot_id = ReadBootId();
  verdict.probed_at = static_cast<int64_t>(std::time(nullptr));
  const std::string base = scratch_dir + "/kvm-probe-" + std::to_string(::getpid());
  const std::string console_path = base + ".console";
  const std::string log_path = base + ".log";
  std::error_code ignored;
  fs::create_directories(scratch_dir, ignored);
  fs::remove(console_path, ignored);
  const auto started = std::chrono::steady_clock::now();
  auto elapsed_ms = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 started)
        .count();
  };
  // Forked from this thread, which waits for it: PR_SET_PDEATHSIG (sent when the
  // forking thread ends) only fires when the whole shim is gone.
  plugins::SpawnOptions probe_output;
  probe_output.log_path = log_path;
  probe_output.truncate_log = true;
  auto pid = plugins::ForkExec(BuildProbeCommand(target, console_path), probe_output);
  if (!pid.ok()) {
    verdict.reason =
        SanitizeLine("the KVM probe could not start: " + pid.error().message, kMaxReason);
    return verdict;
  }
  ConsoleScanner console(console_path);
  int status = 0;
  bool exited = false;
  while (true) {
    if (console.Poll()) {
      verdict.usable = true;
      break;
    }
    pid_t reaped = ::waitpid(*pid, &status, WNOHANG);
    if (reaped == *pid || (reaped < 0 && errno == ECHILD)) {
      exited = true;
      // The marker may have been written just before QEMU exited.
      verdict.usable = console.Poll();
      break;
    }
    if (std::chrono::steady_clock::now() - started >= timeout) break;
    std::this_thread::sleep_for(5ms);
  }
  verdict.probe_ms = elapsed_ms();
  if (!exited) {
    ::kill(*pid, SIGKILL);
    ::waitpid(*pid, nullptr, 0);
  }
  if (verdict.usable) {
    verdict.reason = "the guest kernel reached init under KVM with -cpu host in " +
                     std::to_string(verdict.probe_ms) + " ms";
  } else if (exited) {
    std::string said = SanitizeLine(FileHead(log_path, 2048), kMaxReason - 80);
    verdict.reason = (said.empty() ? std::string("QEMU printed nothing") : said) + " (QEMU " +
                     ExitText(status) + " after " + std::to_string(verdict.probe_ms) +
                     " ms under -accel kvm -cpu host)";
  } else if (console.bytes() == 0) {
    verdict.reason = "guest kernel printed nothing in " + std::to_string(timeout.count()) +
                     " ms under -accel kvm -cpu host (config key kvm_probe_timeout_ms)";
  } else {
    auto tail = ReadFileTailBytes(console_path, 160);
    verdict.reason = SanitizeLine(
        "guest kernel did not reach init in " + std::to_string(timeout.count()) +
            " ms under -accel kvm -cpu host; console tail: " + (tail.ok() ? *tail : std::string()),
        kMaxReason);
  }
  fs::remove(console_path, ignored);
  fs::remove(log_path, ignored);
  return verdict;
}

Result<AcceleratorChoice> ChooseAccelerator(const AcceleratorSettings& settings,
                                            const ProbeTarget& target,
                                            const std::string& scratch_dir) {
  AcceleratorChoice choice;
  if (settings.mode == "tcg") {
    choice.accelerator = "tcg";
    choice.why = "accelerator = \"tcg\" in the config";
    return choice;
  }
  std::string open_error;
  if (!OpensReadWrite(settings.kvm_device, &open_error)) {
    if (settings.mode == "kvm") {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "accelerator = \"kvm\" but " + settings.kvm_device + " does not open (" +
                           open_error +
                           "): enable hardware virtualization and load kvm_intel or kvm_amd, "
                           "or set accelerator = \"auto\" or \"tcg\"");
    }
    choice.accelerator = "tcg";
    choice.source = AcceleratorSource::kNoDevice;
    choice.why = "no usable " + settings.kvm_device + " (" + open_error + ")";
    return choice;
  }

  std::optional<KvmVerdict> verdict;
  auto key_text = VerdictKeyText(target, settings.kvm_device);
  if (!key_text.ok()) return key_text.error().Wrap("choosing the accelerator");
  if (!settings.cache_dir.empty()) {
    std::error_code error;
    fs::create_directories(settings.cache_dir, error);
    choice.verdict_path = VerdictPath(settings.cache_dir, VerdictKey(*key_text));
    auto cached = ReadVerdict(choice.verdict_path);
    if (cached.ok() && cached->has_value()) {
      verdict = std::move(cached).value();
      choice.source = AcceleratorSource::kCachedVerdict;
    } else {
      // One probe for concurrent shims: the loser of the lock finds the winner's file.
      UniqueFd lock(
          ::open((choice.verdict_path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
      while (lock && ::flock(lock.get(), LOCK_EX) != 0 && errno == EINTR) {
      }
      cached = ReadVerdict(choice.verdict_path);
      if (cached.ok() && cached->has_value()) {
        verdict = std::move(cached).value();
        choice.source = AcceleratorSource::kCachedVerdict;
      } else {
        verdict = ProbeKvm(target, settings.probe_timeout, scratch_dir);
        verdict->kvm_device = settings.kvm_device;
        choice.source = AcceleratorSource::kProbe;
        (void)WriteVerdict(choice.verdict_path, *verdict);  // uncached: the next VM probes
      }
    }
  } else {
    verdict = ProbeKvm(target, settings.probe_timeout, scratch_dir);
    verdict->kvm_device = settings.kvm_device;
    choice.source = AcceleratorSource::kProbe;
  }

  const std::string how = choice.source == AcceleratorSource::kProbe
                              ? "probed in " + std::to_string(verdict->probe_ms) + " ms"
                              : "cached verdict " + choice.verdict_path;
  if (verdict->usable) {
    choice.accelerator = "kvm";
    choice.why = "KVM usable (" + how + ")";
    return choice;
  }
  if (settings.mode == "kvm") {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "accelerator = \"kvm\" but KVM cannot boot the guest: " + verdict->reason +
                         ": set accelerator = \"auto\" or \"tcg\"");
  }
  choice.accelerator = "tcg";
  choice.kvm_broken = true;
  choice.why = "KVM present but cannot boot the guest: " + verdict->reason + " (" + how + ")";
  return choice;
}

CheckLine CheckLineFor(const AcceleratorSettings& settings,
                       const Result<AcceleratorChoice>& choice) {
  if (!choice.ok()) return {CheckLine::Level::kFail, choice.error().message};
  if (choice->accelerator == "kvm") return {CheckLine::Level::kOk, choice->why};
  switch (choice->source) {
    case AcceleratorSource::kConfig:
      return {CheckLine::Level::kOk, "accelerator = \"tcg\": KVM is not used (containers use TCG)"};
    case AcceleratorSource::kNoDevice:
      return {CheckLine::Level::kWarn,
              choice->why +
                  ": containers use TCG (slow): enable hardware virtualization and "
                  "load kvm_intel or kvm_amd"};
    default:
      return {CheckLine::Level::kWarn, choice->why + "; " + kTcgAdvice};
  }
}

CheckLine CachedAcceleratorCheck(const AcceleratorSettings& settings, const std::string& binary) {
  if (settings.mode == "tcg") {
    return {CheckLine::Level::kOk, "accelerator = \"tcg\": KVM is not used (containers use TCG)"};
  }
  const CheckLine::Level broken =
      settings.mode == "kvm" ? CheckLine::Level::kFail : CheckLine::Level::kWarn;
  UniqueFd device(::open(settings.kvm_device.c_str(), O_RDWR | O_CLOEXEC));
  if (!device) {
    return {broken, "no usable " + settings.kvm_device + " (" + std::strerror(errno) +
                        "): containers use TCG (slow): enable hardware virtualization and load "
                        "kvm_intel or kvm_amd" +
                        (settings.mode == "kvm" ? ", or set accelerator = \"auto\" or \"tcg\""
                                                : "")};
  }
  // The verdict files are this plugin's own, but bounded all the same.
  constexpr size_t kMaxFiles = 256;
  constexpr std::uintmax_t kMaxSize = 64 * 1024;
  const std::string boot_id = ReadBootId();
  std::optional<KvmVerdict> newest;
  std::error_code error;
  size_t seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(settings.cache_dir, error)) {
    if (++seen > kMaxFiles) break;
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("kvm-verdict-") || !name.ends_with(".json")) continue;
    if (!entry.is_regular_file(error) || entry.file_size(error) > kMaxSize) continue;
    auto verdict = ReadVerdict(entry.path().string());
    if (!verdict.ok() || !verdict->has_value()) continue;
    const KvmVerdict& candidate = **verdict;
    if (candidate.boot_id != boot_id || candidate.kvm_device != settings.kvm_device ||
        (binary.find('/') != std::string::npos && candidate.binary != binary)) {
      continue;
    }
    if (!newest || candidate.probed_at > newest->probed_at) newest = candidate;
  }
  if (!newest) {
    return {CheckLine::Level::kOk,
            settings.kvm_device +
                " opens; whether KVM boots the guest is not verified yet: the probe has not run "
                "(the first container start probes it, once per host boot)"};
  }
  if (newest->usable) return {CheckLine::Level::kOk, "KVM usable: " + newest->reason};
  return {broken, "KVM present but cannot boot the guest: " + newest->reason + "; " +
                      (settings.mode == "kvm" ? std::string("set accelerator = \"auto\" or \"tcg\"")
                                              : std::string(kTcgAdvice))};
}

CheckLine AcceleratorCheck(const AcceleratorSettings& settings, const ProbeTarget& target,
                           const std::string& scratch_dir) {
  return CheckLineFor(settings, ChooseAccelerator(settings, target, scratch_dir));
}

}  // namespace beaconbox::qemu
