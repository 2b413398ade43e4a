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
int RunNetLeases(const Args& args);  // net.cc
int RunGc(const Args& args);         // net.cc

}  // namespace beaconbox::ctl
