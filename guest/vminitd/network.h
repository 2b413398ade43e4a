// Guest network setup for Guest.ConfigureNetwork: NICs found by MAC, renamed,
// addressed (IPv4), MTU set and brought up; routes; /etc/resolv.conf. Uses ioctls, so
// vminitd needs no netlink library.
#pragma once

#include "beaconbox/guest/v1/guest.pb.h"
#include "common/base/result.h"

namespace beaconbox::guest {

Status ConfigureNetwork(const ::beaconbox::guest::v1::NetworkConfig& config);

}  // namespace beaconbox::guest
