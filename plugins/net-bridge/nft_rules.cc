#include "plugins/net-bridge/nft_rules.h"

#include <fcntl.h>
#include <nftables/libnftables.h>
#include <sys/file.h>

#include <cctype>
#include <map>
#include <sstream>

#include "common/base/errno_error.h"

namespace beaconbox::net {
namespace {

// Holds an flock for a scope; retried on EINTR.
class FileLock {
 public:
  explicit FileLock(int fd) : fd_(fd) {
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~FileLock() { ::flock(fd_, LOCK_UN); }

 private:
  int fd_;
};

// TAP names go into nft commands unquoted (chain names cannot be quoted in nft 1.0):
// only letters, digits, '-' and '_' (the plugin's names are beacon-<8 hex>).
bool IsPlainName(const std::string& name) {
  if (name.empty() || name.size() > 15) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  }
  return true;
}

// A unicast "xx:xx:xx:xx:xx:xx" in lower case (what MacFor gives).
bool IsPlainMac(const std::string& mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    if (i % 3 == 2 ? mac[i] != ':' : !std::isxdigit(static_cast<unsigned char>(mac[i])))
      return false;
  }
  return true;
}

Status ToStatus(const Result<std::string>& result) {
  return result.ok() ? Status::Ok() : Status(result.error());
}

std::string FirstLine(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  size_t newline = text.find('\n');
  if (newline != std::string::npos) text = text.substr(0, newline);
  return text;
}

}  // namespace

NftRules::NftRules(const BridgeConfig& config, UniqueFd lock)
    : filter_table_(config.nft_filter_table),
      nat_table_(config.nft_nat_table),
      bridge_table_(config.nft_bridge_table),
      tag_prefix_("beaconbox:" + config.bridge + ":"),
      lock_(std::move(lock)) {
  const std::string bridge = "\"" + config.bridge + "\"";
  rules_ = {
      {tag_prefix_ + "established", filter_table_, "forward",
       "ct state established,related accept"},
      {tag_prefix_ + "from-bridge", filter_table_, "forward", "iifname " + bridge + " accept"},
      {tag_prefix_ + "to-bridge", filter_table_, "forward", "oifname " + bridge + " accept"},
  };
  if (config.ipv4) {
    rules_.push_back(
        {tag_prefix_ + "masquerade", nat_table_, "postrouting",
         "ip saddr " + config.subnet.ToString() + " oifname != " + bridge + " masquerade"});
  }
  if (config.ipv6 && config.ipv6_masquerade) {
    rules_.push_back(
        {tag_prefix_ + "masquerade6", nat_table_, "postrouting",
         "ip6 saddr " + config.prefix6.ToString() + " oifname != " + bridge + " masquerade"});
  }
}

Result<std::unique_ptr<NftRules>> NftRules::Open(const BridgeConfig& config,
                                                 const std::string& lock_path) {
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return ErrnoError("open nftables lock file", lock_path);
  std::unique_ptr<NftRules> rules(new NftRules(config, std::move(lock)));
  rules->ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
  if (rules->ctx_ == nullptr)
    return MakeError(ErrorCode::kInternal, "libnftables: nft_ctx_new failed");
  nft_ctx_output_set_flags(rules->ctx_, NFT_CTX_OUTPUT_HANDLE);
  nft_ctx_buffer_output(rules->ctx_);
  nft_ctx_buffer_error(rules->ctx_);
  return rules;
}

NftRules::~NftRules() {
  if (ctx_ != nullptr) nft_ctx_free(ctx_);
}

Result<std::string> NftRules::Run(const std::string& commands) {
  int rc = nft_run_cmd_from_buffer(ctx_, commands.c_str());
  std::string output = nft_ctx_get_output_buffer(ctx_);
  std::string errors = nft_ctx_get_error_buffer(ctx_);
  if (rc != 0) {
    ErrorCode code =
        errors.find("Operation not permitted") != std::string::npos     ? ErrorCode::kPermission
        : errors.find("No such file or directory") != std::string::npos ? ErrorCode::kNotFound
                                                                        : ErrorCode::kInternal;
    return MakeError(code, "nft: " + FirstLine(errors.empty() ? "failed" : errors) +
                               " (command: " + FirstLine(commands) + ")");
  }
  return output;
}

Result<std::vector<std::pair<std::string, uint64_t>>> NftRules::ListTagged(
    const std::string& table, const std::string& chain, const std::string& family) {
  BBX_ASSIGN_OR_RETURN(std::string listing,
                       Run("list chain " + family + " " + table + " " + chain));
  std::vector<std::pair<std::string, uint64_t>> tagged;
  std::istringstream lines(listing);
  std::string line;
  const std::string comment = "comment \"" + tag_prefix_;
  while (std::getline(lines, line)) {
    size_t at = line.find(comment);
    size_t handle_at = line.rfind("# handle ");
    if (at == std::string::npos || handle_at == std::string::npos) continue;
    size_t tag_start = at + std::string("comment \"").size();
    size_t tag_end = line.find('"', tag_start);
    if (tag_end == std::string::npos) continue;
    uint64_t handle = std::strtoull(line.c_str() + handle_at + 9, nullptr, 10);
    if (handle == 0) continue;
    tagged.emplace_back(line.substr(tag_start, tag_end - tag_start), handle);
  }
  return tagged;
}

Status NftRules::EnsureLocked() {
  auto filter = ListTagged(filter_table_, "forward");
  auto nat = ListTagged(nat_table_, "postrouting");
  if (!filter.ok() || !nat.ok()) {
    // A table or chain is missing: declare both (a no-op for what exists).
    BBX_RETURN_IF_ERROR(
        Run("add table inet " + filter_table_ + "\n" +  //
            "add chain inet " + filter_table_ +
            " forward { type filter hook forward priority filter - 10; policy accept; }\n" +
            "add table inet " + nat_table_ + "\n" +  //
            "add chain inet " + nat_table_ +
            " postrouting { type nat hook postrouting priority srcnat - 10; policy accept; }\n"));
    filter = ListTagged(filter_table_, "forward");
    nat = ListTagged(nat_table_, "postrouting");
    if (!filter.ok()) return filter.error();
    if (!nat.ok()) return nat.error();
  }
  // tag -> (table, handle) of each rule carrying it
  std::map<std::string, std::vector<std::pair<std::string, uint64_t>>> present;
  for (auto [list, table] : {std::pair{&*filter, filter_table_}, std::pair{&*nat, nat_table_}}) {
    for (auto& [tag, handle] : *list) present[tag].emplace_back(table, handle);
  }
  std::string batch;
  for (const Rule& rule : rules_) {
    auto& found = present[rule.tag];
    if (found.empty()) {
      batch += "add rule inet " + rule.table + " " + rule.chain + " " + rule.body + " comment \"" +
               rule.tag + "\"\n";
    }
    for (size_t i = 1; i < found.size(); ++i) {  // duplicates left by someone else
      batch += "delete rule inet " + rule.table + " " + rule.chain + " handle " +
               std::to_string(found[i].second) + "\n";
    }
  }
  // This bridge's rules no config asks for any more (masquerade after ipv4 = false,
  // masquerade6 after ipv6_masquerade = false).
  for (auto& [tag, found] : present) {
    bool wanted = false;
    for (const Rule& rule : rules_) wanted = wanted || rule.tag == tag;
    if (wanted) continue;
    for (auto& [table, handle] : found) {
      bool in_filter = table == filter_table_;
      batch += "delete rule inet " + (in_filter ? filter_table_ : nat_table_) + " " +
               (in_filter ? "forward" : "postrouting") + " handle " + std::to_string(handle) + "\n";
    }
  }
  if (!batch.empty()) BBX_RETURN_IF_ERROR(Run(batch));
  return RemoveLegacyLocked();
}

Status NftRules::RemoveLegacyLocked() {
  std::string batch;
  for (auto [table, chain] : {std::pair{filter_table_, std::string("forward")},
                              std::pair{nat_table_, std::string("postrouting")}}) {
    auto tagged = ListTagged(table, chain, "ip");
    if (!tagged.ok()) continue;  // no such table: nothing left by an older version
    BBX_ASSIGN_OR_RETURN(std::string listing, Run("list table ip " + table));
    size_t rule_lines = 0, chains = 0;
    std::istringstream lines(listing);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("chain ") != std::string::npos) ++chains;
      if (line.find("# handle") != std::string::npos && line.find("chain ") == std::string::npos &&
          line.find("table ") == std::string::npos) {
        ++rule_lines;
      }
    }
    if (rule_lines == tagged->size() && chains == 1) {
      batch += "delete table ip " + table + "\n";  // only ours was in it
    } else {
      for (auto& [tag, handle] : *tagged) {
        batch +=
            "delete rule ip " + table + " " + chain + " handle " + std::to_string(handle) + "\n";
      }
    }
  }
  if (!batch.empty()) BBX_RETURN_IF_ERROR(Run(batch));
  return Status::Ok();
}

Status NftRules::Ensure() {
  std::lock_guard guard(mutex_);
  FileLock lock(lock_.get());
  Status status = EnsureLocked();
  if (!status.ok()) return status.error().Wrap("set up nftables rules");
  return status;
}

Result<bool> NftRules::RemoveIfIdle(const std::function<Result<bool>()>& still_idle) {
  std::lock_guard guard(mutex_);
  FileLock lock(lock_.get());
  BBX_ASSIGN_OR_RETURN(bool idle, still_idle());
  if (!idle) return false;
  std::string batch;
  bool tables_empty = true;
  for (auto [table, chain] : {std::pair{filter_table_, std::string("forward")},
                              std::pair{nat_table_, std::string("postrouting")}}) {
    auto tagged = ListTagged(table, chain);
    if (!tagged.ok()) {
      if (tagged.error().code == ErrorCode::kNotFound) continue;
      return tagged.error();
    }
    for (auto& [tag, handle] : *tagged) {
      batch +=
          "delete rule inet " + table + " " + chain + " handle " + std::to_string(handle) + "\n";
    }
    // Rules of other bridges (or the admin's) keep the table.
    BBX_ASSIGN_OR_RETURN(std::string listing, Run("list chain inet " + table + " " + chain));
    size_t rule_lines = 0;
    std::istringstream lines(listing);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("# handle") != std::string::npos && line.find("chain ") == std::string::npos &&
          line.find("table ") == std::string::npos) {
        ++rule_lines;
      }
    }
    if (rule_lines != tagged->size()) tables_empty = false;
  }
  if (tables_empty) {  // deleting a table deletes its chains and rules with it
    batch.clear();
    for (const std::string& table : {filter_table_, nat_table_}) {
      if (Run("list table inet " + table).ok()) batch += "delete table inet " + table + "\n";
    }
    // The anti-spoofing table goes when no TAP (of any bridge) is guarded any more.
    auto guarded = Run("list map bridge " + bridge_table_ + " guarded_taps");
    if (guarded.ok() && guarded->find("elements = {") == std::string::npos) {
      batch += "delete table bridge " + bridge_table_ + "\n";
    }
  }
  if (batch.empty()) return false;
  BBX_RETURN_IF_ERROR(Run(batch));
  return true;
}

Result<std::string> NftRules::Describe() {
  std::lock_guard guard(mutex_);
  std::string text;
  for (const std::string& table : {filter_table_, nat_table_}) {
    auto listing = Run("list table inet " + table);
    if (listing.ok()) text += *listing;
  }
  auto listing = Run("list table bridge " + bridge_table_);
  if (listing.ok()) text += *listing;
  return text;
}

Status NftRules::EnsureBridgeTableLocked() {
  const std::string kTag = "beaconbox:guarded-taps";
  auto listing = Run("list chain bridge " + bridge_table_ + " prerouting");
  if (listing.ok() && listing->find("comment \"" + kTag + "\"") != std::string::npos) {
    return Status::Ok();
  }
  const std::string table = "bridge " + bridge_table_;
  return ToStatus(Run(
      "add table " + table + "\n" +                                        //
      "add map " + table + " guarded_taps { type ifname : verdict; }\n" +  //
      "add chain " + table +
      " prerouting { type filter hook prerouting priority filter - 10; policy accept; }\n" +
      "add rule " + table + " prerouting iifname vmap @guarded_taps comment \"" + kTag + "\"\n"));
}

Ipv6 LinkLocalFor(const std::string& mac) {
  uint8_t bytes[6] = {};
  for (size_t i = 0; i < 6 && i * 3 + 1 < mac.size(); ++i) {
    bytes[i] = uint8_t(std::strtoul(mac.substr(i * 3, 2).c_str(), nullptr, 16));
  }
  Ipv6 interface_id = (Ipv6(bytes[0] ^ 0x02) << 56) | (Ipv6(bytes[1]) << 48) |
                      (Ipv6(bytes[2]) << 40) | (Ipv6(0xfffe) << 24) | (Ipv6(bytes[3]) << 16) |
                      (Ipv6(bytes[4]) << 8) | Ipv6(bytes[5]);
  return (Ipv6(0xfe80) << 112) | interface_id;
}

namespace {
// An IPv6 address as the 128-bit integer a raw payload match (@th,64,128) compares.
std::string Hex128(Ipv6 value) {
  char text[35];
  std::snprintf(text, sizeof(text), "0x%016llx%016llx",
                static_cast<unsigned long long>(uint64_t(value >> 64)),
                static_cast<unsigned long long>(uint64_t(value)));
  return text;
}

// "aa:bb:cc:dd:ee:ff" (checked by IsPlainMac) as the 48-bit integer a raw payload
// match (@th,208,48) compares: "0xaabbccddeeff".
std::string Hex48(const std::string& mac) {
  std::string hex = "0x";
  for (char c : mac) {
    if (c != ':') hex += c;
  }
  return hex;
}
}  // namespace

Status NftRules::GuardTap(const std::string& tap, const std::string& mac,
                          GuestAddresses addresses) {
  if (!IsPlainName(tap) || !IsPlainMac(mac)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "anti-spoofing rules: bad TAP name \"" + tap + "\" or MAC \"" + mac + "\"");
  }
  std::lock_guard guard(mutex_);
  FileLock lock(lock_.get());
  Status status = EnsureBridgeTableLocked();
  if (status.ok()) {
    const std::string table = "bridge " + bridge_table_;
    const std::string chain = "guest-" + tap;
    const std::string rule = "add rule " + table + " " + chain + " ";
    // One transaction: the TAP is never half guarded.
    std::string batch = "add chain " + table + " " + chain + "\n" +    //
                        "flush chain " + table + " " + chain + "\n" +  //
                        rule + "ether saddr != " + mac + " drop\n";
    if (addresses.v4 != 0) {
      const std::string ip = FormatIpv4(addresses.v4);
      batch += rule +
               "ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether " +
               mac + " arp saddr ip " + ip + " accept\n" +  //
               rule + "ether type ip ip saddr " + ip + " accept\n";
    }
    if (addresses.v6 != 0) {
      const Ipv6 link_local = LinkLocalFor(mac);
      const std::string ip6 = FormatIpv6(addresses.v6), ll = FormatIpv6(link_local);
      // A guest is no router: no advertisement or redirect reaches the host or a peer.
      batch += rule + "icmpv6 type { nd-router-advert, nd-redirect } drop\n";
      // Neighbour advertisements only for its own addresses (target at byte 8).
      batch += rule + "icmpv6 type nd-neighbor-advert @th,64,128 != " + Hex128(addresses.v6) +
               " @th,64,128 != " + Hex128(link_local) + " drop\n";
      // The link-layer address its solicitations and advertisements name is its own
      // MAC: at most one option (a Linux guest sends one, its link-layer address or a
      // DAD nonce; with extension headers ip6 length only grows), and a source or
      // target link-layer address option there (type 1 or 2 at byte 24 of the ICMPv6
      // message, the address at byte 26) holds the guest's MAC. 135-136: neighbour
      // solicitation and advertisement.
      // Ranges, not sets: an anonymous set per rule per TAP slows every nft cache
      // fetch (detach measured about 5 ms slower with sets).
      batch += rule + "icmpv6 type 135-136 ip6 length > 32 drop\n";
      batch += rule + "icmpv6 type 135-136 @th,192,8 1-2 @th,208,48 != " + Hex48(mac) + " drop\n";
      batch += rule + "ether type ip6 ip6 saddr { " + ip6 + ", " + ll + " } accept\n";
      batch += rule +
               "ether type ip6 ip6 saddr :: icmpv6 type { nd-neighbor-solicit, "
               "mld-listener-report, mld2-listener-report } accept\n";
    }
    batch += rule + "drop\n";
    batch += "add element " + table + " guarded_taps { \"" + tap + "\" : jump " + chain + " }\n";
    status = ToStatus(Run(batch));
  }
  if (!status.ok()) return status.error().Wrap("set up anti-spoofing rules for " + tap);
  return status;
}

Status NftRules::UnguardTap(const std::string& tap) {
  if (!IsPlainName(tap)) return Status::Ok();  // never guarded
  std::lock_guard guard(mutex_);
  FileLock lock(lock_.get());
  if (!Run("list table bridge " + bridge_table_).ok()) return Status::Ok();
  const std::string table = "bridge " + bridge_table_;
  const std::string chain = "guest-" + tap;
  const std::string element = " guarded_taps { \"" + tap + "\" : jump " + chain + " }\n";
  // nft 1.0.6 has no "destroy": adding first makes each delete find its object, so
  // this removes the guard whether or not it (or half of it) exists.
  Status status = ToStatus(Run("add map " + table + " guarded_taps { type ifname : verdict; }\n" +
                               "add chain " + table + " " + chain + "\n" +  //
                               "add element " + table + element +           //
                               "delete element " + table + " guarded_taps { \"" + tap + "\" }\n" +
                               "flush chain " + table + " " + chain + "\n" +  //
                               "delete chain " + table + " " + chain + "\n"));
  if (!status.ok()) return status.error().Wrap("remove anti-spoofing rules of " + tap);
  return status;
}

Result<std::vector<std::string>> NftRules::GuardedTaps() {
  std::lock_guard guard(mutex_);
  std::vector<std::string> taps;
  auto listing = Run("list map bridge " + bridge_table_ + " guarded_taps");
  if (!listing.ok()) {
    if (listing.error().code == ErrorCode::kNotFound) return taps;
    return listing.error();
  }
  // elements = { "beacon-1" : jump guest-beacon-1,\n "beacon-2" : jump ... }
  size_t at = listing->find("elements = {");
  while (at != std::string::npos) {
    size_t open = listing->find('"', at);
    if (open == std::string::npos) break;
    size_t close = listing->find('"', open + 1);
    if (close == std::string::npos) break;
    taps.push_back(listing->substr(open + 1, close - open - 1));
    at = close + 1;
  }
  return taps;
}

}  // namespace beaconbox::net
