// Serves vminitd's two ttrpc services (beaconbox.guest.v1.Guest and
// containerd.task.v2.Task) on one connection to the shim.
#pragma once

#include "common/base/unique_fd.h"
#include "guest/vminitd/runtime.h"

namespace beaconbox::guest {

// Blocks until the peer goes away or the connection fails.
void ServeConnection(Runtime& runtime, UniqueFd connection);

// When vminitd began serving (CLOCK_BOOTTIME, ms), reported by Hello.
void SetReadyTime();

}  // namespace beaconbox::guest
