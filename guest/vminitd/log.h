// vminitd's log: one line per event on the console (stderr is /dev/console, which the
// kernel command line points at ttyS0), prefixed "vminitd:" so the host's VM console
// log shows where a line came from.
#pragma once

#include <string_view>

namespace beaconbox::guest {

void Log(std::string_view message);

}  // namespace beaconbox::guest
