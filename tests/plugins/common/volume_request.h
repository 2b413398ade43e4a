// A volume (an OCI bind mount of a host path) added to a storage request, as the shim
// passes CRI's and ctr's mounts: for the storage plugins' volume tests.
#pragma once

#include <string>

#include "beaconbox/plugin/v1/storage.pb.h"

namespace beaconbox::plugins::testing {

inline beaconbox::plugin::v1::Volume* AddVolume(
    beaconbox::plugin::v1::StoragePrepareRequest& request, const std::string& source,
    const std::string& destination, bool read_only) {
  auto* volume = request.add_volumes();
  volume->set_source(source);
  volume->set_destination(destination);
  volume->set_read_only(read_only);
  volume->set_recursive(true);
  return volume;
}

}  // namespace beaconbox::plugins::testing
