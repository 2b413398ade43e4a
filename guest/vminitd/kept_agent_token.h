// The VM's agent token (common/base/agent_token.h) as vminitd checks it on each call.
// Reading it from fw_cfg is emulated port I/O (slow under TCG), so it is kept between
// calls and read again only when a call presents a well-formed token that does not
// match the kept one. That is how a VM restored from a template
// (plugins/vmm-qemu/template.h) takes its own token: it runs the template's vminitd
// while its fw_cfg holds the clone's token, so the first call of the clone's shim
// reads fw_cfg anew (and the template's token is no longer kept). Nothing is read
// before the first call, and the template is saved before any call: it keeps no token.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace beaconbox::guest {

class KeptAgentToken {
 public:
  enum class Verdict { kAccepted, kRefused, kNoToken };

  // `read_token` returns the token in fw_cfg now, empty when absent or malformed.
  explicit KeptAgentToken(std::function<std::string()> read_token)
      : read_token_(std::move(read_token)) {}

  // Whether one of `presented` (a call's token metadata values) is the VM's token,
  // compared in constant time; kNoToken when the VM has none (every call refused).
  // Thread-safe.
  Verdict Check(const std::vector<std::string_view>& presented);

 private:
  const std::function<std::string()> read_token_;
  std::mutex mutex_;
  std::string kept_;  // empty until a call made it read fw_cfg
};

}  // namespace beaconbox::guest
