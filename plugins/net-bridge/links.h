// The bridge and the per-VM TAP devices, through rtnetlink (libnl-3) and
// /dev/net/tun. Everything happens in the network namespace the calling thread
// was in when Open() ran (the netlink socket is bound to it).
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "plugins/net-bridge/config.h"

struct nl_sock;
struct rtnl_link;

namespace beaconbox::net {

struct TapDevice {
  std::string name;
  int ifindex = 0;
  bool in_use = false;  // a process (the VMM) has it open: carrier is on
  int master_ifindex = 0;
  // The owner mark the plugin puts in the TAP's ifalias (see Links::EnsureTap): tells
  // which network configuration made it. Empty for a TAP made otherwise (or by an
  // older plugin).
  std::string alias;
};

class Links {
 public:
  static Result<std::unique_ptr<Links>> Open();
  ~Links();
  Links(const Links&) = delete;
  Links& operator=(const Links&) = delete;

  // Creates `name` as a bridge if missing (an existing device of another kind is
  // an error), gives it `gateway`/`prefix_length` (unless `ipv4` is false) and, when
  // `gateway6` is not 0, `gateway6`/`prefix6_length` (nodad: usable at once), and
  // brings it up. An IPv6 address of another device inside that prefix is an error
  // naming the config key ipv6_prefix (the prefix overlaps a network already there).
  // Returns its ifindex; `added_gateway`, when given, says whether this call added the
  // IPv4 gateway address (false when it was there already).
  Result<int> EnsureBridge(const std::string& name, Ipv4 gateway, uint32_t prefix_length,
                           uint32_t mtu, Ipv6 gateway6 = 0, uint32_t prefix6_length = 0,
                           bool ipv4 = true, bool* added_gateway = nullptr);
  // Removes the IPv4 address `address`/`prefix_length` from `name`. Returns whether
  // it was there (a missing device or address is fine).
  Result<bool> RemoveAddress(const std::string& name, Ipv4 address, uint32_t prefix_length);
  // Creates a persistent TAP `name` if missing (so the VMM opens it by name), marks
  // it as made by the configuration `owner_mark` (its ifalias), enslaves it to
  // `bridge_ifindex`, sets `mtu` and brings it up. An existing TAP with another
  // configuration's mark is kAlreadyExists (never taken over); one without a mark
  // gets ours.
  Status EnsureTap(const std::string& name, int bridge_ifindex, uint32_t mtu,
                   const std::string& owner_mark);
  // The ifalias of `name` ("" for none); nullopt when there is no such device.
  Result<std::optional<std::string>> Alias(const std::string& name);
  // Deletes the device; a missing one is fine. Returns whether it existed.
  Result<bool> Delete(const std::string& name);
  // TAP devices whose name starts with `prefix`.
  Result<std::vector<TapDevice>> ListTaps(const std::string& prefix);
  // The link's kind ("bridge", "tun", "" for none given) or kNotFound.
  Result<std::string> Kind(const std::string& name);

 private:
  explicit Links(nl_sock* socket) : socket_(socket) {}
  Result<int> BringUp(::rtnl_link* link, const std::string& name, int ifindex);
  Status AddGateway6(int ifindex, const std::string& name, Ipv6 gateway6, uint32_t prefix6_length);
  nl_sock* socket_;
  std::mutex mutex_;  // a libnl socket is not thread-safe
};

// Turns on IPv4 forwarding (with `ipv4`) and IPv6 forwarding on all interfaces (with
// `ipv6`: net.ipv6.conf.all.forwarding, which also makes the host ignore router
// advertisements unless accept_ra is 2) in the current netns when off. Returns true if
// it changed anything.
Result<bool> EnableIpForwarding(bool ipv4 = true, bool ipv6 = false);

}  // namespace beaconbox::net
