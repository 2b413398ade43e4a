#include "guest/vminitd/kernel_cmdline.h"

#include <charconv>

namespace beaconbox::guest {
namespace {

std::string StripQuotes(std::string_view s) {
  std::string out;
  for (char c : s)
    if (c != '"') out += c;
  return out;
}

}  // namespace

std::vector<std::string_view> SplitWords(std::string_view text) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n')) ++i;
    if (i >= text.size()) break;
    size_t start = i;
    bool quoted = false;
    while (i < text.size() && (quoted || (text[i] != ' ' && text[i] != '\t' && text[i] != '\n'))) {
      if (text[i] == '"') quoted = !quoted;
      ++i;
    }
    words.push_back(text.substr(start, i - start));
  }
  return words;
}

std::map<std::string, std::string> ParseCmdline(std::string_view cmdline) {
  std::map<std::string, std::string> params;
  for (std::string_view word : SplitWords(cmdline)) {
    size_t eq = word.find('=');
    if (eq == std::string_view::npos) {
      params[StripQuotes(word)] = "";
    } else {
      params[StripQuotes(word.substr(0, eq))] = StripQuotes(word.substr(eq + 1));
    }
  }
  return params;
}

Result<ChannelSpec> ParseChannelSpec(std::string_view value) {
  ChannelSpec spec;
  constexpr std::string_view kSerial = "virtio-serial:";
  constexpr std::string_view kVsock = "vsock:";
  if (value.starts_with(kSerial)) {
    spec.kind = ChannelSpec::Kind::kVirtioSerial;
    spec.port_name = std::string(value.substr(kSerial.size()));
    if (spec.port_name.empty() || spec.port_name.size() > 128 ||
        spec.port_name.find('/') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "beaconbox.channel=" + std::string(value) + ": bad virtio-serial port name");
    }
    return spec;
  }
  if (value.starts_with(kVsock)) {
    spec.kind = ChannelSpec::Kind::kVsock;
    std::string_view port = value.substr(kVsock.size());
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), spec.vsock_port);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() ||
        spec.vsock_port == 0) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "beaconbox.channel=" + std::string(value) + ": bad vsock port");
    }
    return spec;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "beaconbox.channel=" + std::string(value) +
                       ": expected virtio-serial:<port name> or vsock:<port>");
}

int PageReportingOrder(const std::map<std::string, std::string>& params) {
  auto it = params.find(std::string(kPageReportingOrderParam));
  if (it == params.end()) return -1;
  const std::string& value = it->second;
  if (value.empty() || value.size() > 2 ||
      value.find_first_not_of("0123456789") != std::string::npos) {
    return -1;
  }
  const int order = std::stoi(value);
  return order <= 10 ? order : -1;
}

}  // namespace beaconbox::guest
