// What the net-bridge plugin needs from the host before its first attach, as the
// lines `beaconbox-ctl check` prints under its name (the common hook `check`). Reads
// only: it never creates the bridge, the lease database or nftables rules.
#pragma once

#include "beaconbox/plugin/v1/plugin.pb.h"
#include "plugins/net-bridge/config.h"

namespace beaconbox::net {

// CAP_NET_ADMIN (links and nftables), /dev/net/tun (TAPs), the lease database's
// directory writable, IPv4 forwarding when NAT is expected.
beaconbox::plugin::v1::CheckReport CheckPrerequisites(const BridgeConfig& config);

}  // namespace beaconbox::net
