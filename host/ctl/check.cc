// `beaconbox-ctl check`: what a host needs before it can run a container, one line
// each: OK, WARN (works, but slower or degraded) or FAIL, with what to do. The host
// checks what is its own (configuration, guest kernel and initrd, directories); each
// plugin reports its own prerequisites through the common hook `check`, printed
// under the plugin's line.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

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
    std::printf("%s %-16s %s\n", tag, what.c_str(), detail.c_str());
  }
};

bool Readable(const std::string& path) { return ::access(path.c_str(), R_OK) == 0; }

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

// A directory the host uses: it exists and is writable, or can be created.
void CheckDirectory(Report& report, const char* key, const std::string& path) {
  std::filesystem::path existing(path);
  std::error_code error;
  while (!existing.empty() && !std::filesystem::exists(existing, error) &&
         existing != existing.parent_path()) {
    existing = existing.parent_path();
  }
  if (::access(existing.c_str(), W_OK) == 0) {
    report.Line(Verdict::kOk, key, path + (existing == path ? "" : " (created on first use)"));
  } else {
    report.Line(Verdict::kFail, key,
                path + " is not writable (" + existing.string() +
                    "): make it writable by root or set " + key);
  }
}

// The plugin's own check lines, indented under its name.
void PrintPluginCheck(Report& report, const plugin_host::LoadedPlugin& plugin) {
  auto checked = plugin.Check();
  if (!checked.ok()) {
    if (checked.error().code == ErrorCode::kNotImplemented) {
      std::printf("     (%s checks nothing of its own)\n", plugin.label().c_str());
    } else {
      report.Line(Verdict::kFail, "  check", checked.error().message);
    }
    return;
  }
  for (const auto& line : checked->lines()) {
    Verdict verdict = line.level() == plugin_host::pluginapi::CHECK_OK     ? Verdict::kOk
                      : line.level() == plugin_host::pluginapi::CHECK_WARN ? Verdict::kWarn
                                                                           : Verdict::kFail;
    report.Line(verdict, "  " + line.what().substr(0, 64), line.detail().substr(0, 1024));
  }
}

void CheckPlugins(Report& report, const config::Config& config) {
  for (const config::PluginDecl& decl : config.plugins) {
    std::string context = "config " + config.source + ": plugin " + decl.kind + "/" + decl.name;
    auto plugin = plugin_host::LoadedPlugin::Open(decl.path, decl.kind, decl.name, context);
    Status ready = plugin.ok() ? (*plugin)->Configure(decl, config.paths) : plugin.error();
    if (ready.ok()) {
      report.Line(Verdict::kOk, "plugin",
                  decl.kind + "/" + decl.name + " " + (*plugin)->info().version + " (ABI " +
                      std::to_string((*plugin)->info().abi_version) + ") loads and inits");
      PrintPluginCheck(report, **plugin);
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
  // The host's own prerequisites; each plugin then reports its own (binaries,
  // devices, permissions) under its name.
  report.Line(Verdict::kOk, "config", config->source);
  CheckGuestFile(report, "kernel", config->vm.kernel_path, config->vm.kernel_path_origin);
  CheckGuestFile(report, "initrd", config->vm.initrd_path, config->vm.initrd_path_origin);
  CheckDirectory(report, "paths.state_dir", config->paths.state_dir);
  CheckDirectory(report, "paths.run_dir", config->paths.run_dir);
  CheckDirectory(report, "paths.log_dir", config->paths.log_dir);
  CheckPlugins(report, *config);
  return report.failed ? 1 : 0;
}

}  // namespace beaconbox::ctl
