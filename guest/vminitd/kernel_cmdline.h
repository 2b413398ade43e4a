// The guest kernel command line: how vminitd learns what the host decided (the
// agent channel). Pure, unit-tested on the host.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::guest {

// Splits text into words at blanks; double quotes group words (kept in the word).
std::vector<std::string_view> SplitWords(std::string_view text);

// Splits /proc/cmdline into key -> value ("quiet" -> ""). Double quotes group words;
// the last occurrence of a key wins, as for the kernel's own parameters.
std::map<std::string, std::string> ParseCmdline(std::string_view cmdline);

struct ChannelSpec {
  enum class Kind { kVirtioSerial, kVsock };
  Kind kind = Kind::kVirtioSerial;
  std::string port_name;  // virtio-serial port name, e.g. beaconbox.agent
  unsigned vsock_port = 0;
};

inline constexpr std::string_view kChannelParam = "beaconbox.channel";

// Parses "virtio-serial:<name>" or "vsock:<port>".
Result<ChannelSpec> ParseChannelSpec(std::string_view value);

}  // namespace beaconbox::guest
