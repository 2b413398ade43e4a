// beaconbox-ctl containerd-config: the runtime entry containerd's config needs for
// beaconbox, in the config version the containerd at hand reads. containerd 1.6 and
// 1.7 read config version 2, where the CRI plugin is io.containerd.grpc.v1.cri; 2.x
// reads version 3, where the runtimes moved to io.containerd.cri.v1.runtime. The
// options table is decoded by CRI into runtimeoptions.v1.Options for any runtime_type
// but runc's; its ConfigPath reaches the shim's `start` (as `ctr run
// --runtime-config-path` does), which then uses that config file.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <regex>
#include <string>

#include "host/ctl/ctl.h"

namespace beaconbox::ctl {
namespace {

namespace fs = std::filesystem;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr size_t kMaxVersionOutput = 4096;

const char kUsage[] =
    "usage: beaconbox-ctl [--config FILE] containerd-config [--containerd BINARY | --version-of "
    "VERSION]\n";

// A TOML basic string: quotes and backslashes escaped; control characters refused.
Result<std::string> TomlString(const std::string& text) {
  std::string quoted = "\"";
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "the config path holds a control character: use a plain path");
    }
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "\"";
}

// `containerd --version`'s output, at most kMaxVersionOutput bytes.
Result<std::string> RunContainerdVersion(const std::string& binary) {
  std::string command = "'";
  for (char c : binary) command += c == '\'' ? std::string("'\\''") : std::string(1, c);
  command += "' --version 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) {
    return MakeError(ErrorCode::kNotFound, "cannot run " + binary + " --version");
  }
  std::string output;
  std::array<char, 512> buffer;
  size_t got;
  while ((got = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    if (output.size() < kMaxVersionOutput) output.append(buffer.data(), got);
  }
  int status = ::pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return MakeError(ErrorCode::kNotFound,
                     binary +
                         " --version failed (is containerd installed? name it with "
                         "--containerd BINARY or --version-of VERSION)");
  }
  return output.substr(0, kMaxVersionOutput);
}

}  // namespace

Result<ContainerdVersion> ParseContainerdVersion(const std::string& text) {
  // "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1",
  // "containerd containerd.io 1.7.24 88bf19b...", "containerd github.com/containerd/
  // containerd/v2 v2.0.0 207ad71...", or a bare "1.7" / "v2.1.0" given by the user:
  // the first word that is a version (the module path's "/v2" is not a word of its own).
  static const std::regex kVersion(R"((?:^|\s)v?(\d{1,4})\.(\d{1,4})(?:[.~+-]\S*)?(?=\s|$))");
  std::smatch match;
  if (!std::regex_search(text, match, kVersion)) {
    std::string shown = text.substr(0, 120);
    for (char& c : shown) {
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    }
    return MakeError(ErrorCode::kInvalidArgument,
                     "no containerd version in '" + shown +
                         "': give one with --version-of, e.g. --version-of 1.7");
  }
  return ContainerdVersion{std::stoi(match[1].str()), std::stoi(match[2].str())};
}

Result<std::string> ContainerdRuntimeSnippet(const ContainerdVersion& version,
                                             const std::string& config_path) {
  std::string plugin;
  int config_version;
  if (version.major == 1 && (version.minor == 6 || version.minor == 7)) {
    plugin = "io.containerd.grpc.v1.cri";
    config_version = 2;
  } else if (version.major == 2) {
    plugin = "io.containerd.cri.v1.runtime";
    config_version = 3;
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     "containerd " + std::to_string(version.major) + "." +
                         std::to_string(version.minor) +
                         " is not supported: beaconbox runs under containerd 1.6, 1.7 and 2.x");
  }
  BBX_ASSIGN_OR_RETURN(std::string quoted_path, TomlString(config_path));
  const std::string table = "[plugins.\"" + plugin + "\".containerd.runtimes.beaconbox]";
  const std::string shown = std::to_string(version.major) + "." + std::to_string(version.minor);
  std::string out;
  out += "# beaconbox for containerd " + shown + " (config version " +
         std::to_string(config_version) + "): add to containerd's config.toml, whose first\n";
  out += "# line is `version = " + std::to_string(config_version) +
         "`, and restart containerd. The shim, containerd-shim-beaconbox-v1,\n";
  out += "# must be on containerd's PATH (/usr/bin when installed).\n";
  out += "#   CRI (Kubernetes): a RuntimeClass with handler: beaconbox\n";
  out += "#   ctr: ctr run --runtime io.containerd.beaconbox.v1 --runtime-config-path " +
         config_path + " IMAGE ID\n";
  out += "# CRI's default runtime (runc) must keep its entry: in a config without one (an\n";
  out += "# empty config.toml) this table replaces the built-in list and containerd turns\n";
  out += "# CRI off, so add runc's too:\n";
  out += "#   " + table.substr(0, table.size() - 10) + "runc]\n";
  out += "#     runtime_type = \"io.containerd.runc.v2\"\n";
  out += table + "\n";
  out += "  runtime_type = \"io.containerd.beaconbox.v1\"\n";
  out += table.substr(0, table.size() - 1) + ".options]\n";
  out += "  ConfigPath = " + quoted_path + "\n";
  return out;
}

int RunContainerdConfig(const Args& args) {
  std::string binary = "containerd";
  std::optional<std::string> version_text;
  for (size_t i = 0; i < args.rest.size(); ++i) {
    const std::string& word = args.rest[i];
    if ((word == "--containerd" || word == "--version-of") && i + 1 < args.rest.size()) {
      if (word == "--containerd") {
        binary = args.rest[++i];
      } else {
        version_text = args.rest[++i];
      }
    } else {
      std::cerr << "beaconbox-ctl containerd-config: unexpected argument " << word << "\n"
                << kUsage;
      return kExitUsage;
    }
  }
  // The config the shim is to use: --config, else the one this host finds, else the
  // installed default's path (the snippet is often printed before it is installed).
  std::string config_path = "/etc/beaconbox/config.toml";
  if (args.config_path) {
    config_path = *args.config_path;
  } else if (auto found = config::FindConfigFile(); found.ok()) {
    config_path = *found;
  }
  std::error_code error;
  fs::path absolute = fs::absolute(config_path, error);
  if (!error) config_path = absolute.lexically_normal().string();
  if (!version_text) {
    auto output = RunContainerdVersion(binary);
    if (!output.ok()) {
      std::cerr << output.error().message << "\n";
      return kExitFailed;
    }
    version_text = *output;
  }
  auto version = ParseContainerdVersion(*version_text);
  if (!version.ok()) {
    std::cerr << version.error().message << "\n";
    return kExitFailed;
  }
  auto snippet = ContainerdRuntimeSnippet(*version, config_path);
  if (!snippet.ok()) {
    std::cerr << snippet.error().message << "\n";
    return kExitFailed;
  }
  std::cout << *snippet;
  return kExitOk;
}

}  // namespace beaconbox::ctl
