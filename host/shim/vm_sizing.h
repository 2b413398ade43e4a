// How big a container's VM is: its vCPUs and memory follow the container's OCI
// resources (linux.resources: CPU quota/period or shares, memory limit, plus the
// guest's own overhead), within the configured default and maximum ([vm] vcpus,
// max_vcpus, memory_mib, max_memory_mib, guest_overhead_mib), or are set explicitly
// by the annotations io.beaconbox.vm.vcpus and io.beaconbox.vm.memory_mib. The same
// computation says how much a Task.Update needs the VM to grow. Pure functions: the
// Sandbox applies them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "host/shim/sandbox_backends.h"

namespace beaconbox::shim {

inline constexpr char kVcpusAnnotation[] = "io.beaconbox.vm.vcpus";
inline constexpr char kMemoryAnnotation[] = "io.beaconbox.vm.memory_mib";
// Hot-added memory comes in blocks of this size: Linux onlines x86-64 memory in
// 128 MiB sections, so a DIMM of another size would be partly unusable.
inline constexpr uint64_t kMemoryHotplugBlockMib = 128;

// The parts of an OCI LinuxResources object that size the VM or go to the guest's
// cgroup as they are. Absent fields stay unset; a memory limit <= 0 and a CPU quota
// <= 0 mean "no limit" (OCI: -1).
struct ContainerResources {
  std::optional<int64_t> memory_limit;  // bytes
  std::optional<int64_t> cpu_quota;     // microseconds per period
  std::optional<uint64_t> cpu_period;   // microseconds (default 100000)
  std::optional<uint64_t> cpu_shares;
  std::optional<int64_t> pids_limit;
};

struct VmSize {
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  bool operator==(const VmSize&) const = default;
};

// Parses an OCI LinuxResources JSON object (what containerd sends in
// UpdateTaskRequest.resources, and a spec's linux.resources). Fields of the wrong
// type or out of range fail with one line naming the field.
Result<ContainerResources> ParseLinuxResources(std::string_view json);

// The linux.resources of an OCI config.json (empty when it has none).
Result<ContainerResources> ResourcesOfSpec(std::string_view config_json);

// The vCPUs a container's CPU limit needs: ceil(quota / period), else ceil(shares /
// 1024) (Kubernetes' CPU request), else 0 (no need stated).
uint32_t VcpusNeeded(const ContainerResources& resources);
// The memory a container's limit needs in the VM: the limit (rounded up to MiB) plus
// vm.guest_overhead_mib; 0 when there is no limit.
uint64_t MemoryNeededMib(const ContainerResources& resources, const VmSettings& settings);

// The boot size of a new VM: each annotation when given (1..max_vcpus,
// 64..max_memory_mib), else what the resources need, at least the defaults. A
// quota-derived vCPU count or a memory limit beyond the maxima fails with one line
// naming the value, the maximum and its config key (shares are only a weight and are
// capped instead).
Result<VmSize> BootSizeFor(const ContainerResources& resources,
                           const std::map<std::string, std::string>& annotations,
                           const VmSettings& settings);

// The size a running VM of size `current` must grow to for `resources` (never
// smaller than `current`: shrinking lowers only the cgroup limits). Added memory is a
// whole number of kMemoryHotplugBlockMib blocks, capped at max_memory_mib. Needs
// beyond the maxima fail as in BootSizeFor.
Result<VmSize> GrownSizeFor(const ContainerResources& resources, VmSize current,
                            const VmSettings& settings);

}  // namespace beaconbox::shim
