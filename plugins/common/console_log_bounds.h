// console_log_max_bytes, the key every VMM plugin has for the disk a VM's console log
// takes at most (the log and its one rotated predecessor, vmm-qemu's CappedLog, which
// both plugins use): its range and default, declared once so that the plugins and
// CappedLog agree. Free of toml so that CappedLog's code can include it;
// ConsoleLogMaxBytes (config_range.h) reads the key.
#pragma once

#include <cstdint>

namespace beaconbox::plugins {

inline constexpr uint64_t kConsoleLogMinBytes = 64 * 1024;  // half of it per file at least
inline constexpr uint64_t kConsoleLogMaxBytes = uint64_t{1} << 30;
inline constexpr uint64_t kConsoleLogDefaultBytes = uint64_t{4} << 20;

}  // namespace beaconbox::plugins
