// A figure of this process from /proc/self/status, for tests that check memory.
#pragma once

#include <fstream>
#include <string>
#include <string_view>

namespace beaconbox::testing {

// The value of `field` ("VmRSS", "RssFile", ...) in KiB, or -1 when absent.
inline long ProcSelfStatusKib(std::string_view field) {
  std::ifstream status("/proc/self/status");
  const std::string prefix = std::string(field) + ":";
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(prefix, 0) == 0) return std::stol(line.substr(prefix.size()));
  }
  return -1;
}

}  // namespace beaconbox::testing
