// The bridge's forwarding and NAT rules in nftables, through libnftables.
//
//   table ip <nft_filter_table> {            # beacon_runner_filter
//     chain forward { type filter hook forward priority filter - 10; policy accept; }
//   }
//   table ip <nft_nat_table> {               # beacon_runner_nat
//     chain postrouting { type nat hook postrouting priority srcnat - 10; policy accept; }
//   }
//
// Both base chains run before the ones UFW (iptables-nft) installs at filter (0)
// and srcnat (100). Each rule carries a comment "beaconbox:<bridge>:<role>" by which
// it is found again: Ensure() adds only what is missing and deletes duplicates, under
// an flock shared by every shim, so many attaches never duplicate a rule.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "plugins/net-bridge/config.h"

struct nft_ctx;

namespace beaconbox::net {

class NftRules {
 public:
  // `lock_path` is created if missing; nothing else is touched here.
  static Result<std::unique_ptr<NftRules>> Open(const BridgeConfig& config,
                                                const std::string& lock_path);
  ~NftRules();
  NftRules(const NftRules&) = delete;
  NftRules& operator=(const NftRules&) = delete;

  // Creates the tables and chains when missing and this bridge's rules when missing.
  Status Ensure();
  // Under the lock, if `still_idle()` says so: deletes this bridge's rules, and the
  // tables when no rule is left in them. Returns whether it removed anything.
  Result<bool> RemoveIfIdle(const std::function<Result<bool>()>& still_idle);
  // `nft list table` text of both tables (empty for a missing one), for tests and logs.
  Result<std::string> Describe();

 private:
  struct Rule {
    std::string tag, table, chain, body;
  };
  NftRules(const BridgeConfig& config, UniqueFd lock);
  Result<std::string> Run(const std::string& commands);
  // Handles of this bridge's rules in `table`/`chain` keyed by tag; missing chain -> error.
  Result<std::vector<std::pair<std::string, uint64_t>>> ListTagged(const std::string& table,
                                                                   const std::string& chain);
  Status EnsureLocked();

  std::string filter_table_, nat_table_, tag_prefix_;
  std::vector<Rule> rules_;
  nft_ctx* ctx_ = nullptr;
  UniqueFd lock_;
  std::mutex mutex_;
};

}  // namespace beaconbox::net
