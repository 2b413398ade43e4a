// beaconbox-ctl: the operator's CLI. Each subcommand is one function in the table in
// ctl_main.cc; adding one is adding a row.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "host/config/config.h"

namespace beaconbox::ctl {

struct Args {
  std::optional<std::string> config_path;  // --config FILE
  std::vector<std::string> rest;           // after the subcommand's words
};

// Reads --config FILE, else the default lookup (BEACONBOX_CONFIG, /etc, _output/).
Result<config::Config> LoadConfigFor(const Args& args);

int RunCheck(const Args& args);
int RunContainerdConfig(const Args& args);  // containerd_config.cc

// containerd's major.minor, from `containerd --version`'s output or a version given.
struct ContainerdVersion {
  int major = 0;
  int minor = 0;
};
Result<ContainerdVersion> ParseContainerdVersion(const std::string& text);
// The runtime entry for containerd's config.toml (version 2 for 1.6/1.7, 3 for 2.x),
// its options naming `config_path`; an unsupported containerd is an error.
Result<std::string> ContainerdRuntimeSnippet(const ContainerdVersion& version,
                                             const std::string& config_path);
int RunNetLeases(const Args& args);  // net.cc
int RunGc(const Args& args);         // net.cc

}  // namespace beaconbox::ctl
