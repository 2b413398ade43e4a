#pragma once

#include "common/base/result.h"
#include "host/shim/shim_flags.h"

namespace beaconbox::shim {

// `start`: creates the shim's socket, launches the serving shim with it as fd 3,
// records the address in the bundle and prints it for containerd.
Status RunStart(const ShimFlags& flags, const char* argv0);

// The long-running shim: serves the Task API on fd 3 until Shutdown or SIGTERM.
Status RunServe(const ShimFlags& flags);

// `delete`: runs after the serving shim died. Releases what it left behind (VM
// processes, network lease, host mounts) from the state recorded in the bundle and
// prints a DeleteResponse on stdout.
Status RunDelete(const ShimFlags& flags);

}  // namespace beaconbox::shim
