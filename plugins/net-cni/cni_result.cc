#include "plugins/net-cni/cni_result.h"

#include <arpa/inet.h>

#include <nlohmann/json.hpp>

#include "common/base/bounded_json.h"
#include "common/base/file_util.h"

namespace beaconbox::cni {
namespace {

using json = nlohmann::json;

Error Bad(std::string_view who, const std::string& what) {
  return MakeError(ErrorCode::kInvalidArgument,
                   "CNI plugin " + std::string(who) + " printed a bad result: " + what);
}

// A string member of at most `max` bytes; "" when absent. Error when present but of
// another type or too long.
Result<std::string> StringMember(const json& object, const char* key, size_t max,
                                 std::string_view who, const std::string& where) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Bad(who, where + "." + key + " is not a string");
  const auto& text = it->get_ref<const std::string&>();
  if (text.size() > max)
    return Bad(who, where + "." + key + " is longer than " + std::to_string(max));
  return text;
}

Result<const json*> ArrayMember(const json& object, const char* key, size_t max,
                                std::string_view who) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return static_cast<const json*>(nullptr);
  if (!it->is_array()) return Bad(who, std::string(key) + " is not an array");
  if (it->size() > max) {
    return Bad(who, std::string(key) + " has more than " + std::to_string(max) + " entries");
  }
  return &*it;
}

}  // namespace

bool IsSupportedCniVersion(std::string_view version) {
  return version == "0.3.0" || version == "0.3.1" || version == "0.4.0" || version == "1.0.0";
}

bool CniVersionHasCheck(std::string_view version) {
  return version == "0.4.0" || version == "1.0.0";
}

bool IsIpAddress(std::string_view text, bool* v4) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return false;
  std::string copy(text);
  unsigned char buffer[16];
  if (inet_pton(AF_INET, copy.c_str(), buffer) == 1) {
    if (v4 != nullptr) *v4 = true;
    return true;
  }
  if (inet_pton(AF_INET6, copy.c_str(), buffer) == 1) {
    if (v4 != nullptr) *v4 = false;
    return true;
  }
  return false;
}

bool ParseCidr(std::string_view text, std::string* address, unsigned* prefix, bool* v4) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return false;
  bool is_v4 = false;
  if (!IsIpAddress(text.substr(0, slash), &is_v4)) return false;
  std::string_view digits = text.substr(slash + 1);
  if (digits.empty() || digits.size() > 3) return false;
  unsigned value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > (is_v4 ? 32u : 128u)) return false;
  if (address != nullptr) *address = std::string(text.substr(0, slash));
  if (prefix != nullptr) *prefix = value;
  if (v4 != nullptr) *v4 = is_v4;
  return true;
}

Result<CniResult> ParseCniResult(std::string_view text, std::string_view who,
                                 const CniLimits& limits) {
  JsonLimits json_limits;
  json_limits.max_bytes = limits.max_bytes;
  json_limits.max_depth = 16;
  auto parsed = ParseBoundedJson(text, "the result of CNI plugin " + std::string(who), json_limits);
  if (!parsed.ok()) return parsed.error();
  const json& root = *parsed;
  if (!root.is_object()) return Bad(who, "not a JSON object");
  CniResult result;
  BBX_ASSIGN_OR_RETURN(result.cni_version, StringMember(root, "cniVersion", 16, who, "result"));
  if (!IsSupportedCniVersion(result.cni_version)) {
    return Bad(who, "cniVersion \"" + PrintableOneLine(result.cni_version) +
                        "\" is not one of 0.3.0, 0.3.1, 0.4.0, 1.0.0");
  }
  BBX_ASSIGN_OR_RETURN(const json* interfaces,
                       ArrayMember(root, "interfaces", limits.max_interfaces, who));
  if (interfaces != nullptr) {
    for (size_t i = 0; i < interfaces->size(); ++i) {
      const json& entry = (*interfaces)[i];
      const std::string where = "interfaces[" + std::to_string(i) + "]";
      if (!entry.is_object()) return Bad(who, where + " is not an object");
      CniInterface interface;
      BBX_ASSIGN_OR_RETURN(interface.name, StringMember(entry, "name", 15, who, where));
      BBX_ASSIGN_OR_RETURN(interface.mac, StringMember(entry, "mac", 64, who, where));
      BBX_ASSIGN_OR_RETURN(interface.sandbox, StringMember(entry, "sandbox", 4096, who, where));
      if (interface.name.empty()) return Bad(who, where + " has no name");
      result.interfaces.push_back(std::move(interface));
    }
  }
  BBX_ASSIGN_OR_RETURN(const json* ips, ArrayMember(root, "ips", limits.max_ips, who));
  if (ips != nullptr) {
    for (size_t i = 0; i < ips->size(); ++i) {
      const json& entry = (*ips)[i];
      const std::string where = "ips[" + std::to_string(i) + "]";
      if (!entry.is_object()) return Bad(who, where + " is not an object");
      CniIp ip;
      BBX_ASSIGN_OR_RETURN(ip.address, StringMember(entry, "address", 64, who, where));
      if (!ParseCidr(ip.address, nullptr, nullptr, nullptr)) {
        return Bad(who, where + ".address \"" + PrintableOneLine(ip.address) + "\" is not a CIDR");
      }
      BBX_ASSIGN_OR_RETURN(ip.gateway, StringMember(entry, "gateway", 64, who, where));
      if (!ip.gateway.empty() && !IsIpAddress(ip.gateway)) {
        return Bad(who, where + ".gateway is not an IP address");
      }
      if (auto it = entry.find("interface"); it != entry.end() && !it->is_null()) {
        if (!it->is_number_integer() || it->get<int64_t>() < 0 ||
            it->get<int64_t>() >= static_cast<int64_t>(result.interfaces.size())) {
          return Bad(who, where + ".interface is not an index into interfaces");
        }
        ip.interface = static_cast<int>(it->get<int64_t>());
      }
      result.ips.push_back(std::move(ip));
    }
  }
  BBX_ASSIGN_OR_RETURN(const json* routes, ArrayMember(root, "routes", limits.max_routes, who));
  if (routes != nullptr) {
    for (size_t i = 0; i < routes->size(); ++i) {
      const json& entry = (*routes)[i];
      const std::string where = "routes[" + std::to_string(i) + "]";
      if (!entry.is_object()) return Bad(who, where + " is not an object");
      CniRoute route;
      BBX_ASSIGN_OR_RETURN(route.destination, StringMember(entry, "dst", 64, who, where));
      if (!ParseCidr(route.destination, nullptr, nullptr, nullptr)) {
        return Bad(who, where + ".dst is not a CIDR");
      }
      BBX_ASSIGN_OR_RETURN(route.gateway, StringMember(entry, "gw", 64, who, where));
      if (!route.gateway.empty() && !IsIpAddress(route.gateway)) {
        return Bad(who, where + ".gw is not an IP address");
      }
      result.routes.push_back(std::move(route));
    }
  }
  if (auto dns = root.find("dns"); dns != root.end() && !dns->is_null()) {
    if (!dns->is_object()) return Bad(who, "dns is not an object");
    BBX_ASSIGN_OR_RETURN(const json* servers,
                         ArrayMember(*dns, "nameservers", limits.max_dns_entries, who));
    if (servers != nullptr) {
      for (const json& server : *servers) {
        if (!server.is_string() || !IsIpAddress(server.get_ref<const std::string&>())) {
          return Bad(who, "dns.nameservers holds something that is not an IP address");
        }
        result.nameservers.push_back(server.get<std::string>());
      }
    }
    BBX_ASSIGN_OR_RETURN(const json* search,
                         ArrayMember(*dns, "search", limits.max_dns_entries, who));
    if (search != nullptr) {
      for (const json& domain : *search) {
        if (!domain.is_string() || domain.get_ref<const std::string&>().size() > 253 ||
            domain.get_ref<const std::string&>().empty()) {
          return Bad(who, "dns.search holds something that is not a domain");
        }
        const auto& name = domain.get_ref<const std::string&>();
        for (char c : name) {
          if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_')) {
            return Bad(who, "dns.search holds something that is not a domain");
          }
        }
        result.search.push_back(name);
      }
    }
    BBX_ASSIGN_OR_RETURN(result.domain, StringMember(*dns, "domain", 253, who, "dns"));
  }
  return result;
}

std::string CniErrorMessage(std::string_view stdout_text) {
  JsonLimits limits;
  limits.max_bytes = 1 << 20;
  limits.max_depth = 8;
  auto parsed = ParseBoundedJson(stdout_text, "error", limits);
  std::string message;
  if (parsed.ok() && parsed->is_object()) {
    const json& error = *parsed;
    if (auto code = error.find("code"); code != error.end() && code->is_number_integer()) {
      message += "code " + std::to_string(code->get<int64_t>()) + ": ";
    }
    if (auto msg = error.find("msg"); msg != error.end() && msg->is_string()) {
      message += msg->get<std::string>();
    }
    if (auto details = error.find("details"); details != error.end() && details->is_string() &&
                                              !details->get_ref<const std::string&>().empty()) {
      message += " (" + details->get<std::string>() + ")";
    }
  }
  if (message.empty()) message = std::string(stdout_text.substr(0, 300));
  if (message.size() > 400) message = message.substr(0, 400) + "...";
  return PrintableOneLine(std::move(message));
}

}  // namespace beaconbox::cni
