#include "guest/vminitd/kept_agent_token.h"

#include "common/base/agent_token.h"

namespace beaconbox::guest {

KeptAgentToken::Verdict KeptAgentToken::Check(const std::vector<std::string_view>& presented) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto matches = [&] {
    bool any = false;
    for (std::string_view value : presented) any = AgentTokenMatches(kept_, value) || any;
    return any;
  };
  if (matches()) return Verdict::kAccepted;
  bool could_match = false;  // only a well-formed token can be a token fw_cfg now holds
  for (std::string_view value : presented)
    could_match = could_match || IsWellFormedAgentToken(value);
  if (!kept_.empty() && !could_match) return Verdict::kRefused;
  kept_ = read_token_();
  if (kept_.empty()) return Verdict::kNoToken;
  return matches() ? Verdict::kAccepted : Verdict::kRefused;
}

}  // namespace beaconbox::guest
