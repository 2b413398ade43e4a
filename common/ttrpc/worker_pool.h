// Internal: the threads ttrpc handlers run on. Threads are reused, so a call does
// not pay for a thread start. Their number is bounded twice: each connection admits
// at most Options::max_concurrent_handlers at once, and the whole process runs at
// most PoolThreadLimit() threads, so many connections cannot exhaust the process's
// threads either; a task beyond that waits for a thread (FIFO).
#pragma once

#include <cstddef>
#include <functional>

namespace beaconbox::ttrpc::internal {

constexpr size_t kDefaultPoolThreadLimit = 512;

// Runs `task` on an idle pool thread, on a new one when none is idle and the limit
// allows, else as soon as a thread is free. The pool is process-wide and never
// destroyed, so tasks may outlive whatever submitted them.
void RunOnPool(std::function<void()> task);

// The process-wide limit on pool threads; lowering it stops no running thread.
void SetPoolThreadLimit(size_t limit);
struct PoolCounts {
  size_t threads = 0;  // alive, busy or idle
  size_t queued = 0;   // tasks waiting for a thread
};
PoolCounts CountPool();

}  // namespace beaconbox::ttrpc::internal
