// spdlog setup shared by the shim and beaconbox-ctl: one default logger writing to a
// file or to stderr, at a level from the configuration or BEACONBOX_LOG_LEVEL.
#pragma once

#include <spdlog/common.h>

#include <string>

#include "common/base/result.h"

namespace beaconbox::log {

struct LogOptions {
  std::string program;         // shown in each line, e.g. "beaconbox-ctl"
  std::string level = "info";  // trace, debug, info, warn, error, off
  std::string file;            // empty: stderr
};

// "info" -> spdlog::level::info; anything unknown is refused naming the choices.
Result<spdlog::level::level_enum> ParseLogLevel(const std::string& level);

// Replaces spdlog's default logger. BEACONBOX_LOG_LEVEL, when set, beats
// options.level. On failure (unwritable file, unknown level) the previous logger
// stays and the error says why.
Status SetUpLogging(const LogOptions& options);

}  // namespace beaconbox::log
