#include "guest/vminitd/network_config.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace beaconbox::guest {
Result<Cidr4> ParseCidr4(std::string_view text) {
  auto bad = [&] {
    return MakeError(ErrorCode::kInvalidArgument, "address \"" + std::string(text.substr(0, 64)) +
                                                      "\" is not an IPv4 CIDR like 10.88.0.2/16");
  };
  size_t slash = text.find('/');
  if (slash == std::string_view::npos || text.size() > 18) return bad();
  std::string address(text.substr(0, slash));
  std::string_view prefix_text = text.substr(slash + 1);
  Cidr4 cidr;
  auto [end, ec] =
      std::from_chars(prefix_text.data(), prefix_text.data() + prefix_text.size(), cidr.prefix);
  if (prefix_text.empty() || ec != std::errc() || end != prefix_text.data() + prefix_text.size() ||
      cidr.prefix > 32) {
    return bad();
  }
  struct in_addr parsed {};
  if (::inet_pton(AF_INET, address.c_str(), &parsed) != 1) return bad();
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
  size_t slash = text.find('/');
  if (slash == std::string_view::npos || text.size() > INET6_ADDRSTRLEN + 4)
    return bad("is not an IPv6 CIDR like fd57:dba9:ddb6::100/64");
  std::string address(text.substr(0, slash));
  std::string_view prefix_text = text.substr(slash + 1);
  Cidr6 cidr;
  auto [end, ec] =
      std::from_chars(prefix_text.data(), prefix_text.data() + prefix_text.size(), cidr.prefix);
  if (prefix_text.empty() || ec != std::errc() || end != prefix_text.data() + prefix_text.size() ||
      cidr.prefix > 128) {
    return bad("is not an IPv6 CIDR like fd57:dba9:ddb6::100/64");
  }
  struct in6_addr parsed {};
  if (::inet_pton(AF_INET6, address.c_str(), &parsed) != 1)
    return bad("is not an IPv6 CIDR like fd57:dba9:ddb6::100/64");
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
