#pragma once

#include "common/base/result.h"
#include "host/shim/shim_flags.h"

namespace beaconbox::shim {

// `start`: releases the leftovers of dead shims (shim_record.h), creates the shim's
// socket, launches the serving shim with it as fd 3, writes its shim record, records the
// address in the bundle and prints it for containerd.
Status RunStart(const ShimFlags& flags, const char* argv0);

// The long-running shim: serves the Task API on fd 3 until Shutdown or SIGTERM.
Status RunServe(const ShimFlags& flags);

// `delete`: runs after the serving shim died. Releases what it left behind (VM
// processes, network lease, host mounts) from its shim record and state file under the
// state dir (the bundle's only as a fallback), sweeps other dead shims, and prints a
// DeleteResponse on stdout.
Status RunDelete(const ShimFlags& flags);

}  // namespace beaconbox::shim
