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

inline constexpr std::string_view kPageReportingOrderParam = "page_reporting.page_reporting_order";

// The free page reporting order the command line asks for (a number 0..10), or -1
// when absent or not such a number. Linux 6.1 resets the parameter to pageblock_order
// (9: only free blocks of 2 MiB are reported) when virtio_balloon registers, so
// vminitd writes it again once the modules are loaded.
int PageReportingOrder(const std::map<std::string, std::string>& params);

}  // namespace beaconbox::guest
