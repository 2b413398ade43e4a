// Internal: the threads ttrpc handlers run on. Threads are reused, so a call does
// not pay for a thread start; their number is bounded by the callers (each
// connection admits at most Options::max_concurrent_handlers at once).
#pragma once

#include <functional>

namespace beaconbox::ttrpc::internal {

// Runs `task` on an idle pool thread, or on a new one when none is idle. The pool
// is process-wide and never destroyed, so tasks may outlive whatever submitted them.
void RunOnPool(std::function<void()> task);

}  // namespace beaconbox::ttrpc::internal
