#include "guest/vminitd/boot_timeline.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <mutex>

#include "common/base/unique_fd.h"

namespace beaconbox::guest {
namespace {

// What the kernel prints at each milestone (init/initramfs.c, init/main.c). The
// messages are at info level: the quiet command line keeps them off the console,
// but /dev/kmsg holds every level.
struct KernelMarker {
  std::string_view text;
  std::string_view step;
};
constexpr KernelMarker kKernelMarkers[] = {
    {"Unpacking initramfs", "initramfs-unpack-start"},
    {"Freeing initrd memory", "initramfs-unpacked"},
    {"Freeing unused kernel image", "kernel-init-done"},
    {"Run /init as init process", "init-started"},
};

std::mutex steps_mutex;
std::vector<BootStep> vminitd_steps;  // guarded by steps_mutex
std::vector<BootStep> kernel_steps;   // read once, at the first BootTimeline()
bool kernel_steps_read = false;       // guarded by steps_mutex

uint64_t BootTimeUs() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

}  // namespace

std::vector<BootStep> KernelBootSteps(std::string_view kmsg_records) {
  std::vector<BootStep> steps;
  bool found[std::size(kKernelMarkers)] = {};
  while (!kmsg_records.empty()) {
    size_t end = kmsg_records.find('\n');
    std::string_view record = kmsg_records.substr(0, end);
    kmsg_records.remove_prefix(end == std::string_view::npos ? kmsg_records.size() : end + 1);
    // prio,seq,usec,flags[,...];text
    size_t semicolon = record.find(';');
    if (semicolon == std::string_view::npos) continue;
    std::string_view prefix = record.substr(0, semicolon);
    std::string_view text = record.substr(semicolon + 1);
    size_t first = prefix.find(',');
    size_t second = first == std::string_view::npos ? first : prefix.find(',', first + 1);
    if (second == std::string_view::npos) continue;
    size_t third = prefix.find(',', second + 1);
    std::string_view usec = prefix.substr(
        second + 1, third == std::string_view::npos ? std::string_view::npos : third - second - 1);
    uint64_t at_us = 0;
    auto [ptr, ec] = std::from_chars(usec.data(), usec.data() + usec.size(), at_us);
    if (ec != std::errc() || ptr != usec.data() + usec.size()) continue;
    for (size_t i = 0; i < std::size(kKernelMarkers); ++i) {
      if (!found[i] && text.starts_with(kKernelMarkers[i].text)) {
        found[i] = true;
        steps.push_back({std::string(kKernelMarkers[i].step), at_us});
      }
    }
  }
  return steps;
}

std::string ReadKernelLog(size_t max_bytes) {
  std::string log;
  UniqueFd kmsg(::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!kmsg) return log;
  // One record per read(); EAGAIN once the buffer is drained, EPIPE when the oldest
  // records were overwritten (skip on).
  char record[8192];
  while (log.size() < max_bytes) {
    ssize_t n = ::read(kmsg.get(), record, sizeof(record));
    if (n < 0 && errno == EPIPE) continue;
    if (n <= 0) break;
    log.append(record, static_cast<size_t>(n));
    if (log.back() != '\n') log.push_back('\n');
  }
  return log;
}

uint64_t MarkBootStep(std::string_view name) {
  const uint64_t now = BootTimeUs();
  std::lock_guard lock(steps_mutex);
  for (const BootStep& step : vminitd_steps) {
    if (step.name == name) return step.at_us;
  }
  vminitd_steps.push_back({std::string(name), now});
  return now;
}

std::vector<BootStep> BootTimeline() {
  std::lock_guard lock(steps_mutex);
  if (!kernel_steps_read) {
    kernel_steps = KernelBootSteps(ReadKernelLog());
    kernel_steps_read = true;
  }
  std::vector<BootStep> timeline = kernel_steps;
  timeline.insert(timeline.end(), vminitd_steps.begin(), vminitd_steps.end());
  return timeline;
}

}  // namespace beaconbox::guest
