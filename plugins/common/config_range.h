// A plugin's integer config key bounded to a range. The ABI declares types, not
// ranges: the host checks a value's type against the plugin's declared keys before
// Init, and the plugin refuses what lies outside the range it can work with.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <string>

#include "common/base/result.h"
#include "plugins/common/console_log_bounds.h"

namespace beaconbox::plugins {

// `key`'s value in `table`, or `fallback` when unset; a value outside [min, max] is
// refused with one line naming the key, the value as given and the range (`min_note`
// follows the minimum, e.g. " (QEMU's default)").
inline Result<int64_t> IntegerInRange(const toml::table& table, const char* key, int64_t fallback,
                                      int64_t min, int64_t max, const std::string& min_note = "") {
  const int64_t value = table[key].value_or(fallback);
  if (value < min || value > max) {
    return MakeError(ErrorCode::kInvalidArgument, std::string(key) + " = " + std::to_string(value) +
                                                      ": use " + std::to_string(min) + min_note +
                                                      " to " + std::to_string(max));
  }
  return value;
}

// console_log_max_bytes of a VMM plugin's table, in the one range all of them accept.
inline Result<uint64_t> ConsoleLogMaxBytes(const toml::table& table) {
  BBX_ASSIGN_OR_RETURN(int64_t bytes, IntegerInRange(table, "console_log_max_bytes",
                                                     static_cast<int64_t>(kConsoleLogDefaultBytes),
                                                     static_cast<int64_t>(kConsoleLogMinBytes),
                                                     static_cast<int64_t>(kConsoleLogMaxBytes)));
  return static_cast<uint64_t>(bytes);
}

}  // namespace beaconbox::plugins
