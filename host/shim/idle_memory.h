// What an idle shim holds without using it (issue 16: shim RSS). After a container
// starts, the shim mostly waits; the pages it touched while setting the VM up stay in
// its RSS until it exits: free heap that malloc keeps, and the text and read-only
// data pages of the binary, the plugins and the libraries, read once from the page
// cache while starting. TrimIdleMemory gives both back.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace beaconbox::shim {

struct IdleTrim {
  std::size_t file_pages_bytes = 0;  // read-only file pages unmapped (madvise DONTNEED)
  bool heap_trimmed = false;         // malloc_trim returned memory to the kernel
};

// Returns free heap to the kernel (malloc_trim) and drops this process's mappings of
// the read-only, file-backed pages of every loaded ELF object (its PT_LOAD segments
// without PF_W; objects with text relocations are skipped). Those pages stay in the
// page cache, shared with every other process mapping the same files (other shims,
// containerd), and are mapped again on a minor fault when the shim runs that code
// next; nothing the shim wrote is ever dropped: writable segments, RELRO (inside the
// writable segment) and anonymous memory are left alone. Safe with other threads
// running and with dlopen in progress: a read-only segment of a loaded object is never
// written, so its pages are always the file's.
IdleTrim TrimIdleMemory();

// Runs `trim` once `delay` has passed since the last Schedule(), on a thread of its
// own: after a Start, containerd's next calls and the TaskStart event still run code
// (which would be mapped again at once), so the shim trims when they are done.
class IdleTrimmer {
 public:
  IdleTrimmer(std::chrono::milliseconds delay, std::function<void()> trim);
  ~IdleTrimmer();
  IdleTrimmer(const IdleTrimmer&) = delete;
  IdleTrimmer& operator=(const IdleTrimmer&) = delete;

  void Schedule();

 private:
  void Run();

  const std::chrono::milliseconds delay_;
  const std::function<void()> trim_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<std::chrono::steady_clock::time_point> due_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace beaconbox::shim
