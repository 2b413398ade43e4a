// The guest's half of the boot timeline (bench/boot): when the kernel reached its
// milestones, read from its own log, and when vminitd reached its own, on the clock
// both use (microseconds since the kernel's clock started; the kernel stamps its log
// with it and CLOCK_BOOTTIME counts from the same start). The time before that clock
// starts (VMM, firmware, kernel decompression) only the host can see.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace beaconbox::guest {

struct BootStep {
  std::string name;  // e.g. "initramfs-unpacked", "vminitd-start"
  uint64_t at_us = 0;
};

// The kernel's milestones found in /dev/kmsg records ("prio,seq,usec,flags;text", one a
// line), each the first record that names it, in record order.
std::vector<BootStep> KernelBootSteps(std::string_view kmsg_records);

// Every record /dev/kmsg holds now, one a line (at most `max_bytes`); empty when it
// cannot be read.
std::string ReadKernelLog(size_t max_bytes = 512 * 1024);

// Records that vminitd reached `name` now (the first time only); returns when it was
// first reached (at_us).
uint64_t MarkBootStep(std::string_view name);

// The kernel's milestones then vminitd's, as recorded so far.
std::vector<BootStep> BootTimeline();

}  // namespace beaconbox::guest
