// Command line of a containerd shim v2 binary, as containerd invokes it:
//   <shim> -namespace NS -address ADDR -publish-binary BIN -id ID [-bundle B] [-debug] start|delete
// and, for the long-running server the `start` action launches, no action at all.
#pragma once

#include <string>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::shim {

struct ShimFlags {
  std::string namespace_name;
  std::string id;
  std::string containerd_address;  // containerd's GRPC socket
  std::string publish_binary;
  std::string bundle;  // empty: the working directory
  std::string socket;  // unused by containerd 1.6/1.7; accepted for compatibility
  bool debug = false;
  bool version = false;
  std::string action;  // "start", "delete" or empty (serve)
};

// Parses Go `flag` package syntax: -name value, -name=value, --name value; boolean
// flags take no value. The first non-flag argument is the action.
Result<ShimFlags> ParseShimFlags(const std::vector<std::string>& args);

}  // namespace beaconbox::shim
