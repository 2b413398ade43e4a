// `beaconbox-ctl check`: what a host needs before it can run a container, one line
// each: OK, WARN (works, but slower or degraded) or FAIL, with what to do.
#include <fcntl.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "common/base/unique_fd.h"
#include "host/ctl/ctl.h"
#include "host/plugin_host/plugin_loader.h"

namespace beaconbox::ctl {
namespace {

enum class Verdict { kOk, kWarn, kFail };

struct Report {
  bool failed = false;
  void Line(Verdict verdict, const std::string& what, const std::string& detail) {
    const char* tag = verdict == Verdict::kOk     ? "OK  "
                      : verdict == Verdict::kWarn ? "WARN"
                                                  : "FAIL";
    if (verdict == Verdict::kFail) failed = true;
    std::printf("%s %-10s %s\n", tag, what.c_str(), detail.c_str());
  }
};

bool Executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }
bool Readable(const std::string& path) { return ::access(path.c_str(), R_OK) == 0; }

// The first executable `name` on $PATH, or "".
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && Executable(dir + "/" + name)) return dir + "/" + name;
  }
  return "";
}

void CheckKvmDevice(Report& report) {
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (kvm.get() >= 0) {
    report.Line(Verdict::kOk, "kvm", "/dev/kvm opens: VMs use hardware virtualization");
  } else {
    report.Line(Verdict::kWarn, "kvm",
                std::string("/dev/kvm not usable (") + std::strerror(errno) +
                    "): TCG fallback (slow); enable virtualization and load kvm_intel/kvm_amd "
                    "for speed");
  }
}

std::string ReadBootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

// The newest KVM verdict the qemu plugin cached (plugins/vmm-qemu/accelerator.h) for
// this boot, device, kernel and initrd (and binary when the config names a path).
std::optional<nlohmann::json> FindKvmVerdict(const config::Config& config,
                                             const std::string& kvm_device,
                                             const std::string& binary) {
  constexpr size_t kMaxFiles = 256;
  constexpr std::uintmax_t kMaxSize = 64 * 1024;
  const std::string boot_id = ReadBootId();
  std::optional<nlohmann::json> newest;
  std::error_code error;
  size_t seen = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(config.paths.state_dir + "/vmm-qemu", error)) {
    if (++seen > kMaxFiles) break;
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("kvm-verdict-") || !name.ends_with(".json")) continue;
    if (!entry.is_regular_file(error) || entry.file_size(error) > kMaxSize) continue;
    std::ifstream in(entry.path());
    auto json = nlohmann::json::parse(in, nullptr, false);
    if (json.is_discarded() || !json.is_object()) continue;
    auto text = [&](const char* key) {
      return json.contains(key) && json[key].is_string() ? json[key].get<std::string>() : "";
    };
    if (text("boot_id") != boot_id || text("kvm_device") != kvm_device ||
        text("kernel") != config.vm.kernel_path || text("initrd") != config.vm.initrd_path ||
        (binary.find('/') != std::string::npos && text("binary") != binary) ||
        !json.contains("usable") || !json["usable"].is_boolean()) {
      continue;
    }
    auto probed_at = [](const nlohmann::json& j) {
      return j.contains("probed_at") && j["probed_at"].is_number_integer()
                 ? j["probed_at"].get<int64_t>()
                 : 0;
    };
    if (!newest || probed_at(json) > probed_at(*newest)) newest = std::move(json);
  }
  return newest;
}

// The qemu plugin's accelerator, as it decides: config key accelerator, then whether
// the KVM device opens, then the verdict its probe cached. This reads that verdict;
// it does not probe (the first VM does).
void CheckKvm(Report& report, const config::Config& config) {
  const config::PluginDecl* qemu = nullptr;
  for (const auto& decl : config.plugins) {
    if (decl.kind == "vmm" && decl.name == "qemu") qemu = &decl;
  }
  if (config.vm.vmm != "qemu" || qemu == nullptr) {
    CheckKvmDevice(report);
    return;
  }
  std::string accelerator = "auto", kvm_device = "/dev/kvm", binary;
  try {
    toml::table table = toml::parse(qemu->config_toml);
    accelerator = table["accelerator"].value_or(accelerator);
    kvm_device = table["kvm_device"].value_or(kvm_device);
    binary = table["binary"].value_or(binary);
  } catch (const toml::parse_error&) {
    // CheckPlugins reports the broken config.
  }
  const Verdict broken = accelerator == "kvm" ? Verdict::kFail : Verdict::kWarn;
  if (accelerator == "tcg") {
    report.Line(Verdict::kOk, "kvm", "accelerator = \"tcg\": KVM is not used (containers use TCG)");
    return;
  }
  UniqueFd device(::open(kvm_device.c_str(), O_RDWR | O_CLOEXEC));
  if (!device) {
    report.Line(broken, "kvm",
                "no " + kvm_device + " (" + std::strerror(errno) +
                    "): containers use TCG (slow): enable hardware virtualization and load "
                    "kvm_intel or kvm_amd" +
                    (accelerator == "kvm" ? ", or set accelerator = \"auto\" or \"tcg\"" : ""));
    return;
  }
  auto verdict = FindKvmVerdict(config, kvm_device, binary);
  if (!verdict) {
    report.Line(Verdict::kOk, "kvm",
                kvm_device +
                    " opens; whether KVM boots the guest is not verified yet: the "
                    "probe has not run (the first VM runs it and caches its verdict in " +
                    config.paths.state_dir + "/vmm-qemu)");
    return;
  }
  std::string reason =
      (*verdict)["reason"].is_string() ? (*verdict)["reason"].get<std::string>() : "";
  if (reason.size() > 480) reason.resize(480);
  for (char& c : reason) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  if ((*verdict)["usable"].get<bool>()) {
    report.Line(Verdict::kOk, "kvm", "KVM usable: " + reason);
  } else {
    report.Line(broken, "kvm",
                "KVM present but cannot boot the guest: " + reason +
                    (accelerator == "kvm"
                         ? "; accelerator = \"kvm\" refuses to start containers: set "
                           "accelerator = \"auto\" or \"tcg\""
                         : "; containers use TCG (slow): use a host with hardware KVM (on a "
                           "cloud VM, nested virtualization with a full KVM), or set "
                           "accelerator = \"tcg\" to skip the check") +
                    "; remove " + config.paths.state_dir +
                    "/vmm-qemu/kvm-verdict-*.json to probe again");
  }
}

void CheckVmmBinary(Report& report, const config::Config& config) {
  const std::string& vmm = config.vm.vmm;
  if (vmm == "qemu") {
    std::string shared = config.paths.share_dir + "/bin/qemu-system-x86_64";
    std::string found = Executable(shared) ? shared : FindOnPath("qemu-system-x86_64");
    if (!found.empty()) {
      report.Line(Verdict::kOk, "vmm", "qemu: " + found);
    } else {
      report.Line(Verdict::kFail, "vmm",
                  "qemu-system-x86_64 neither in " + shared +
                      " nor on PATH: apt-get install qemu-system-x86 (or set BEACON_SHARE_DIR)");
    }
  } else if (vmm == "cloud-hypervisor") {
    const char* env = std::getenv("CLOUD_HYPERVISOR_PATH");
    std::string found =
        env && env[0] ? (Executable(env) ? env : "") : FindOnPath("cloud-hypervisor");
    if (!found.empty()) {
      report.Line(Verdict::kOk, "vmm", "cloud-hypervisor: " + found);
    } else if (env && env[0]) {
      report.Line(Verdict::kFail, "vmm",
                  std::string("CLOUD_HYPERVISOR_PATH=") + env + " is not executable: fix the path");
    } else {
      report.Line(Verdict::kFail, "vmm",
                  "cloud-hypervisor not on PATH: install it or set CLOUD_HYPERVISOR_PATH");
    }
  } else {
    report.Line(Verdict::kOk, "vmm", "vmm plugin " + vmm + ": no binary to check here");
  }
}

void CheckGuestFile(Report& report, const char* what, const std::string& path,
                    const std::string& origin) {
  if (Readable(path)) {
    report.Line(Verdict::kOk, what, path + " (from " + origin + ")");
  } else {
    report.Line(
        Verdict::kFail, what,
        path + " (from " + origin + ") not readable: run make (it builds _output/" +
            (std::string(what) == "kernel" ? "beaconbox-kernel-x86_64" : "beaconbox-initrd") +
            ") or set vm." + what + "_path");
  }
}

void CheckVirtiofsd(Report& report) {
  const std::string path = "/usr/lib/qemu/virtiofsd";
  if (Executable(path)) {
    report.Line(Verdict::kOk, "virtiofsd", path);
  } else {
    report.Line(Verdict::kFail, "virtiofsd",
                path + " missing: apt-get install qemu-system-x86 (Debian 12 ships it there)");
  }
}

void CheckPlugins(Report& report, const config::Config& config) {
  for (const config::PluginDecl& decl : config.plugins) {
    std::string context = "config " + config.source + ": plugin " + decl.kind + "/" + decl.name;
    auto plugin = plugin_host::LoadedPlugin::Open(decl.path, decl.kind, decl.name, context);
    Status ready = plugin.ok() ? (*plugin)->ValidateSettings(decl.settings) : plugin.error();
    if (ready.ok()) ready = (*plugin)->Init(decl.config_toml, config.paths);
    if (ready.ok()) {
      report.Line(Verdict::kOk, "plugin",
                  decl.kind + "/" + decl.name + " " + (*plugin)->info().version + " (ABI " +
                      std::to_string((*plugin)->info().abi_version) + ") loads and inits");
    } else {
      report.Line(Verdict::kFail, "plugin", ready.error().message);
    }
  }
  // The choice of plugins (vm.vmm, network.mode, storage.driver) must be declared.
  auto chosen = [&](const std::string& kind, const std::string& name, const char* key) {
    for (const auto& decl : config.plugins) {
      if (decl.kind == kind && decl.name == name) return;
    }
    report.Line(Verdict::kFail, "plugin",
                kind + "/" + name + " (chosen by " + key + ") is not declared: add [plugins." +
                    kind + "." + name + "] to " + config.source);
  };
  chosen("vmm", config.vm.vmm, "vm.vmm");
  chosen("storage", config.storage.driver, "storage.driver");
  if (config.network.mode != "none") chosen("network", config.network.mode, "network.mode");
}

}  // namespace

int RunCheck(const Args& args) {
  Report report;
  auto config = LoadConfigFor(args);
  if (!config.ok()) {
    report.Line(Verdict::kFail, "config", config.error().message);
    return 1;
  }
  report.Line(Verdict::kOk, "config", config->source);
  CheckKvm(report, *config);
  CheckVmmBinary(report, *config);
  CheckGuestFile(report, "kernel", config->vm.kernel_path, config->vm.kernel_path_origin);
  CheckGuestFile(report, "initrd", config->vm.initrd_path, config->vm.initrd_path_origin);
  CheckVirtiofsd(report);
  CheckPlugins(report, *config);
  return report.failed ? 1 : 0;
}

}  // namespace beaconbox::ctl
