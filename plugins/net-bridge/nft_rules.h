// The bridge's forwarding and NAT rules in nftables, through libnftables.
//
//   table inet <nft_filter_table> {          # beacon_runner_filter (IPv4 and IPv6)
//     chain forward { type filter hook forward priority filter - 10; policy accept; }
//   }
//   table inet <nft_nat_table> {             # beacon_runner_nat
//     chain postrouting { type nat hook postrouting priority srcnat - 10; policy accept; }
//   }
//   table bridge <nft_bridge_table> {        # beacon_runner_bridge: anti-spoofing
//     map guarded_taps { type ifname : verdict; }   # "<tap>" : jump guest-<tap>
//     chain prerouting { type filter hook prerouting priority filter - 10; policy accept;
//       iifname vmap @guarded_taps }
//     chain guest-<tap> {                    # one per TAP, from its lease
//       ether saddr != <mac> drop
//       arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether <mac>
//           arp saddr ip <address> accept
//       ip saddr <address> accept
//       icmpv6 type { nd-router-advert, nd-redirect } drop
//       icmpv6 type nd-neighbor-advert @th,64,128 != <address6> @th,64,128 != <link-local> drop
//       ip6 saddr { <address6>, <link-local> } accept
//       ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld-listener-report,
//           mld2-listener-report } accept
//       drop }
//   }
//
// The bridge table sees every frame a TAP brings into the bridge, before the bridge
// learns its source MAC and before it is forwarded or delivered to the host: a guest
// can send only as its own lease (no other MAC, no other IPv4 or IPv6 source, no ARP
// or neighbour advertisement claiming another address, no router advertisement or
// redirect; VLAN tags and other ethertypes are dropped). The IPv6 sources are the
// lease's address and the link-local address the guest kernel derives from its MAC
// (EUI-64), plus :: for neighbour solicitations and MLD reports. Frames of TAPs not in
// the map (another plugin's) pass untouched. A family the lease lacks gets no rule.
//
// Older versions made the filter and NAT tables in family ip; Ensure() removes this
// bridge's rules from them, and a table of that family once nothing else is in it.
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

// What a guest may send from: its lease's addresses, 0 for a family it has not.
struct GuestAddresses {
  Ipv4 v4 = 0;
  Ipv6 v6 = 0;
};

// fe80::/64 + EUI-64 of `mac` ("02:..."): the link-local address Linux gives a NIC.
Ipv6 LinkLocalFor(const std::string& mac);

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

  // Anti-spoofing: lets frames from `tap` into the bridge only with source `mac`
  // ("02:..") and IPv4 source (or ARP sender) `addresses.v4`, IPv6 source (or
  // neighbour advertisement target) `addresses.v6` or the MAC's link-local address;
  // replaces what `tap` had.
  Status GuardTap(const std::string& tap, const std::string& mac, GuestAddresses addresses);
  Status GuardTap(const std::string& tap, const std::string& mac, Ipv4 address) {
    return GuardTap(tap, mac, GuestAddresses{address, 0});
  }
  // Removes the guard of `tap` (none: fine). Call it when the TAP is deleted.
  Status UnguardTap(const std::string& tap);
  // The TAPs that have a guard (of any bridge using this table).
  Result<std::vector<std::string>> GuardedTaps();

 private:
  struct Rule {
    std::string tag, table, chain, body;
  };
  NftRules(const BridgeConfig& config, UniqueFd lock);
  Result<std::string> Run(const std::string& commands);
  // Handles of this bridge's rules in `table`/`chain` keyed by tag; missing chain -> error.
  Result<std::vector<std::pair<std::string, uint64_t>>> ListTagged(
      const std::string& table, const std::string& chain, const std::string& family = "inet");
  Status EnsureLocked();
  // Removes this bridge's rules from the family-ip tables of older versions, and such a
  // table when nothing else is left in it.
  Status RemoveLegacyLocked();

  Status EnsureBridgeTableLocked();

  std::string filter_table_, nat_table_, bridge_table_, tag_prefix_;
  std::vector<Rule> rules_;
  nft_ctx* ctx_ = nullptr;
  UniqueFd lock_;
  std::mutex mutex_;
};

}  // namespace beaconbox::net
