// Onlining what the host hot-added to the VM (Task.Update, host/shim/vm_sizing.h),
// and the cgroup files an update writes:
// vCPUs arrive offline (x86 onlines hot-added CPUs only when told), memory blocks
// usually online by themselves (the kernel argument memhp_default_state=online), else
// here. `sysfs` is the sysfs root ("/sys"; a directory tree in the tests).
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::guest {

// The cgroup v2 file writes (file, value) for an OCI LinuxResources object, as runc
// makes them: a limit <= 0 (-1) is "max"; cpu.max is "<quota|max> <period>", keeping
// from `current_cpu_max` what is not given; shares become cpu.weight
// (1 + (shares - 2) * 9999 / 262142); memory.max and pids.max.
Result<std::vector<std::pair<std::string, std::string>>> CgroupWrites(
    const nlohmann::json& resources, const std::string& current_cpu_max);

// The number of CPUs in a kernel CPU list ("0-3,5"); nullopt when malformed.
std::optional<uint32_t> CountCpuList(std::string_view list);

// Onlines every present, offline CPU until at least `want` are online, waiting up to
// `timeout` for hot-added CPUs to appear. Fails naming how many are online.
Status OnlineCpus(uint32_t want, std::chrono::milliseconds timeout,
                  const std::string& sysfs = "/sys");

// Onlines every offline memory block until the online blocks hold at least `want_mib`,
// waiting up to `timeout` for hot-added memory to appear.
Status OnlineMemory(uint64_t want_mib, std::chrono::milliseconds timeout,
                    const std::string& sysfs = "/sys");

}  // namespace beaconbox::guest
