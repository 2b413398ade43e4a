// The token that seals the channel between the shim and the guest agent (vminitd).
//
// Why: on a host with vhost-vsock the agent's guest CID and port are predictable and
// any local process may connect to them; on virtio-serial the unix socket is the only
// way in, but nothing tells the guest who is on the other end. So the host makes a
// fresh random token per VM (plugin_host::PlanAgentChannel's caller puts it in
// VmSpec.agent_token), the VMM plugin hands it to the guest through a channel only the
// guest can read (QEMU: fw_cfg entry kAgentTokenFwCfgName, backed by a 0600 file in
// the VM's private directory, never on QEMU's command line, which any local user
// reads in /proc/<pid>/cmdline), the shim sends it as ttrpc metadata
// (kAgentTokenMetadataKey) with every call, and vminitd's server refuses every call
// without it with kUnauthenticated. A guest without a token refuses every call: a VMM
// that cannot deliver the token never gets an unsealed agent.
#pragma once

#include <sys/random.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace beaconbox {

inline constexpr char kAgentTokenMetadataKey[] = "beaconbox-agent-token";
inline constexpr char kAgentTokenFwCfgName[] = "opt/io.beaconbox/agent-token";
// 32 random bytes as lowercase hex.
inline constexpr size_t kAgentTokenBytes = 32;
inline constexpr size_t kAgentTokenLength = 2 * kAgentTokenBytes;

// A fresh token from the kernel's CSPRNG.
inline Result<std::string> GenerateAgentToken() {
  uint8_t random[kAgentTokenBytes];
  size_t have = 0;
  while (have < sizeof(random)) {
    ssize_t n = ::getrandom(random + have, sizeof(random) - have, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return MakeError(
          ErrorCode::kInternal,
          "getrandom failed making the guest agent token: errno " + std::to_string(errno));
    }
    have += static_cast<size_t>(n);
  }
  constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  token.reserve(kAgentTokenLength);
  for (uint8_t byte : random) {
    token.push_back(kHex[byte >> 4]);
    token.push_back(kHex[byte & 0xf]);
  }
  return token;
}

// True for what GenerateAgentToken makes (so a plugin can refuse anything else).
inline bool IsWellFormedAgentToken(std::string_view token) {
  if (token.size() != kAgentTokenLength) return false;
  for (char c : token) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Compares in time independent of where `presented` differs from `expected` (a
// peer must not learn the token byte by byte from answer times). An empty
// `expected` (no token) never matches.
inline bool AgentTokenMatches(std::string_view expected, std::string_view presented) {
  if (expected.empty() || presented.size() != expected.size()) return false;
  volatile uint8_t difference = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    difference =
        difference | (static_cast<uint8_t>(expected[i]) ^ static_cast<uint8_t>(presented[i]));
  }
  return difference == 0;
}

}  // namespace beaconbox
