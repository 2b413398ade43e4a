#include "host/shim/idle_memory.h"

#include <elf.h>
#include <link.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

namespace beaconbox::shim {
namespace {

bool HasTextRelocations(const dl_phdr_info* info) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& header = info->dlpi_phdr[i];
    if (header.p_type != PT_DYNAMIC) continue;
    const auto* entry = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + header.p_vaddr);
    for (; entry->d_tag != DT_NULL; ++entry) {
      if (entry->d_tag == DT_TEXTREL) return true;
      if (entry->d_tag == DT_FLAGS && (entry->d_un.d_val & DF_TEXTREL) != 0) return true;
    }
  }
  return false;
}

// The object's RELRO range (written by the loader, then made read-only), or {0, 0}.
std::pair<std::uintptr_t, std::uintptr_t> RelroRange(const dl_phdr_info* info) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& header = info->dlpi_phdr[i];
    if (header.p_type == PT_GNU_RELRO) {
      const std::uintptr_t start = info->dlpi_addr + header.p_vaddr;
      return {start, start + header.p_memsz};
    }
  }
  return {0, 0};
}

int DropReadOnlySegments(dl_phdr_info* info, std::size_t /*size*/, void* data) {
  auto* dropped = static_cast<std::size_t*>(data);
  // The vDSO is the kernel's, not a file: its name is not a path (the main program's
  // name is empty).
  const char* name = info->dlpi_name;
  if (name != nullptr && name[0] != '\0' && name[0] != '/') return 0;
  if (HasTextRelocations(info)) return 0;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& header = info->dlpi_phdr[i];
    if (header.p_type != PT_LOAD || (header.p_flags & PF_W) != 0 || header.p_filesz == 0) {
      continue;
    }
    // Only whole pages inside the segment's file-backed part: a page shared with a
    // neighbouring segment (or past p_filesz, anonymous) is never touched.
    const std::uintptr_t start = info->dlpi_addr + header.p_vaddr;
    const std::uintptr_t end = start + header.p_filesz;
    const std::uintptr_t first = (start + page - 1) & ~(page - 1);
    const std::uintptr_t last = end & ~(page - 1);
    if (last <= first) continue;
    // RELRO lies in a writable segment; checked anyway, whatever the linker did.
    const auto [relro_start, relro_end] = RelroRange(info);
    if (relro_start < last && first < relro_end) continue;
    if (::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED) == 0) {
      *dropped += last - first;
    }
  }
  return 0;
}

}  // namespace

IdleTrim TrimIdleMemory() {
  IdleTrim trim;
  trim.heap_trimmed = ::malloc_trim(0) != 0;
  ::dl_iterate_phdr(DropReadOnlySegments, &trim.file_pages_bytes);
  return trim;
}

IdleTrimmer::IdleTrimmer(std::chrono::milliseconds delay, std::function<void()> trim)
    : delay_(delay), trim_(std::move(trim)), thread_([this] { Run(); }) {}

IdleTrimmer::~IdleTrimmer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void IdleTrimmer::Schedule() {
  {
    std::lock_guard lock(mutex_);
    due_ = std::chrono::steady_clock::now() + delay_;
  }
  changed_.notify_all();
}

void IdleTrimmer::Run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (!due_) {
      changed_.wait(lock);
      continue;
    }
    const auto due = *due_;
    if (changed_.wait_until(lock, due) == std::cv_status::timeout && due_ == due) {
      due_.reset();
      lock.unlock();
      trim_();
      lock.lock();
    }
  }
}

}  // namespace beaconbox::shim
