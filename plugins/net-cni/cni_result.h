// CNI results and errors as plugins print them (CNI spec, "Result" and "Error"),
// parsed with bounds: a plugin binary may be buggy or hostile, so every size, count
// and type is checked before use and nothing in it becomes a host path. Versions
// 0.3.0, 0.3.1, 0.4.0 and 1.0.0 share the shape read here (0.3/0.4 add "version" to
// each IP, ignored); older ones are refused.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::cni {

// The result versions this runtime reads, and the config versions it runs.
bool IsSupportedCniVersion(std::string_view version);
// CHECK exists from 0.4.0 on.
bool CniVersionHasCheck(std::string_view version);

struct CniInterface {
  std::string name;
  std::string mac;
  std::string sandbox;  // the netns path for an interface in the container
};

struct CniIp {
  std::string address;  // CIDR, "10.22.0.5/16"
  std::string gateway;  // "" when none
  int interface = -1;   // index into interfaces, -1 when not given
};

struct CniRoute {
  std::string destination;  // CIDR
  std::string gateway;      // "" when none (the IP's gateway)
};

struct CniResult {
  std::string cni_version;
  std::vector<CniInterface> interfaces;
  std::vector<CniIp> ips;
  std::vector<CniRoute> routes;
  std::vector<std::string> nameservers;
  std::vector<std::string> search;
  std::string domain;
};

struct CniLimits {
  size_t max_bytes = 1 << 20;
  size_t max_interfaces = 64;
  size_t max_ips = 64;
  size_t max_routes = 256;
  size_t max_dns_entries = 16;
};

// Parses a result printed by plugin `who` ("bridge"). kInvalidArgument naming `who`
// for anything out of shape.
Result<CniResult> ParseCniResult(std::string_view text, std::string_view who,
                                 const CniLimits& limits = {});

// The one-line message of a CNI error object ({"code", "msg", "details"}) printed by
// a failed plugin, or a printable excerpt of whatever it printed instead.
std::string CniErrorMessage(std::string_view stdout_text);

// "10.22.0.5/16" -> address and prefix; false for anything else. `v4` says which.
bool ParseCidr(std::string_view text, std::string* address, unsigned* prefix, bool* v4);
bool IsIpAddress(std::string_view text, bool* v4 = nullptr);

}  // namespace beaconbox::cni
