#include "guest/vminitd/network_config.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>
#include <optional>
#include <utility>

namespace beaconbox::guest {
namespace {

// "<address>/<prefix>" with prefix 0..max_prefix: the address text and the prefix.
std::optional<std::pair<std::string, unsigned>> SplitCidr(std::string_view text,
                                                          unsigned max_prefix) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view prefix_text = text.substr(slash + 1);
  unsigned prefix = 0;
  auto [end, ec] =
      std::from_chars(prefix_text.data(), prefix_text.data() + prefix_text.size(), prefix);
  if (prefix_text.empty() || ec != std::errc() || end != prefix_text.data() + prefix_text.size() ||
      prefix > max_prefix) {
    return std::nullopt;
  }
  return std::pair{std::string(text.substr(0, slash)), prefix};
}

}  // namespace

Result<std::array<uint8_t, 6>> ParseMac(std::string_view text) {
  auto bad = [&](const char* why) {
    std::string shown;
    for (char c : text.substr(0, 32)) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
    return MakeError(
        ErrorCode::kInvalidArgument,
        "MAC \"" + shown + "\" " + why + " (want a unicast MAC like 02:ab:cd:ef:01:23)");
  };
  if (text.size() != 17) return bad("is not six hex pairs separated by ':'");
  std::array<uint8_t, 6> mac{};
  for (size_t i = 0; i < 6; ++i) {
    if (i > 0 && text[i * 3 - 1] != ':') return bad("is not six hex pairs separated by ':'");
    const char* begin = text.data() + i * 3;
    auto [end, ec] = std::from_chars(begin, begin + 2, mac[i], 16);
    if (ec != std::errc() || end != begin + 2) {
      return bad("is not six hex pairs separated by ':'");
    }
  }
  if ((mac[0] & 1) != 0) return bad("is a multicast address");
  if (mac == std::array<uint8_t, 6>{}) return bad("is all zeros");
  return mac;
}

Result<Cidr4> ParseCidr4(std::string_view text) {
  auto bad = [&] {
    return MakeError(ErrorCode::kInvalidArgument, "address \"" + std::string(text.substr(0, 64)) +
                                                      "\" is not an IPv4 CIDR like 10.88.0.2/16");
  };
  auto split = text.size() > 18 ? std::nullopt : SplitCidr(text, 32);
  if (!split) return bad();
  Cidr4 cidr;
  cidr.prefix = split->second;
  struct in_addr parsed {};
  if (::inet_pton(AF_INET, split->first.c_str(), &parsed) != 1) return bad();
  cidr.address = parsed.s_addr;
  cidr.netmask = cidr.prefix == 0 ? 0 : htonl(~uint32_t(0) << (32 - cidr.prefix));
  return cidr;
}

Result<Cidr6> ParseCidr6(std::string_view text, bool host_address) {
  auto bad = [&](const char* why) {
    std::string shown(text.substr(0, 64));
    for (char& c : shown) {
      if (static_cast<unsigned char>(c) < ' ' || c == 0x7f) c = '?';
    }
    return MakeError(ErrorCode::kInvalidArgument, "address \"" + shown + "\" " + why);
  };
  auto split = text.size() > INET6_ADDRSTRLEN + 4 ? std::nullopt : SplitCidr(text, 128);
  struct in6_addr parsed {};
  if (!split || ::inet_pton(AF_INET6, split->first.c_str(), &parsed) != 1)
    return bad("is not an IPv6 CIDR like fd57:dba9:ddb6::100/64");
  Cidr6 cidr;
  cidr.prefix = split->second;
  std::memcpy(cidr.address, parsed.s6_addr, 16);
  if (host_address) {
    if (IN6_IS_ADDR_UNSPECIFIED(&parsed) || IN6_IS_ADDR_LOOPBACK(&parsed) ||
        IN6_IS_ADDR_MULTICAST(&parsed) || IN6_IS_ADDR_LINKLOCAL(&parsed) ||
        IN6_IS_ADDR_V4MAPPED(&parsed) || cidr.prefix == 0 || cidr.prefix > 128) {
      return bad("is not a usable IPv6 host address");
    }
  }
  return cidr;
}

Result<std::string> RenderResolvConf(const std::vector<std::string>& servers,
                                     const std::vector<std::string>& search) {
  if (servers.size() > 16 || search.size() > 16) {
    return MakeError(ErrorCode::kInvalidArgument, "more than 16 DNS servers or search domains");
  }
  auto clean = [](const std::string& word) {
    if (word.empty() || word.size() > 253) return false;
    for (unsigned char c : word)
      if (c <= ' ' || c >= 0x7f) return false;
    return true;
  };
  std::string text;
  for (const std::string& server : servers) {
    struct in_addr v4 {};
    struct in6_addr v6 {};
    if (!clean(server) || (::inet_pton(AF_INET, server.c_str(), &v4) != 1 &&
                           ::inet_pton(AF_INET6, server.c_str(), &v6) != 1)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "DNS server \"" + server.substr(0, 64) + "\" is not an IP address");
    }
    text += "nameserver " + server + "\n";
  }
  if (!search.empty()) {
    text += "search";
    for (const std::string& domain : search) {
      if (!clean(domain)) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "DNS search domain \"" + domain.substr(0, 64) + "\" is invalid");
      }
      text += " " + domain;
    }
    text += "\n";
  }
  return text;
}

}  // namespace beaconbox::guest
