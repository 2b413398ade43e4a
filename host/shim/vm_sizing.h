// How big a container's VM is: its vCPUs and memory follow the container's OCI
// resources (linux.resources: CPU quota/period or shares, memory limit, plus the
// guest's own overhead), within the configured default and maximum ([vm] vcpus,
// max_vcpus, memory_mib, max_memory_mib, guest_overhead_mib), or are set explicitly
// by the annotations io.beaconbox.vm.vcpus and io.beaconbox.vm.memory_mib. The same
// computation says how much a Task.Update needs the VM to grow. A CRI pod's VM boots
// at the size its sandbox annotations give (the sum of its containers' limits) and
// grows when its containers' limits together need more (PodResourcesOf,
// PodBootSizeFor, AddResources). Pure functions: the Sandbox applies them.
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
// containerd's CRI plugin puts the pod's resources on the sandbox container as these
// annotations (decimal integers, all four together): LinuxPodSandboxConfig.resources,
// which the kubelet (1.23+) fills with the sum of the pod's container limits
// (containerd's pkg/cri/annotations; bookworm's 1.6.20, trixie's 1.7 and sid's 2.1
// binaries all carry them). The RuntimeClass overhead (LinuxPodSandboxConfig.overhead)
// is not passed to the runtime: it sizes the pod's cgroup on the host.
inline constexpr char kCriSandboxCpuPeriod[] = "io.kubernetes.cri.sandbox-cpu-period";
inline constexpr char kCriSandboxCpuQuota[] = "io.kubernetes.cri.sandbox-cpu-quota";
inline constexpr char kCriSandboxCpuShares[] = "io.kubernetes.cri.sandbox-cpu-shares";
inline constexpr char kCriSandboxMemory[] = "io.kubernetes.cri.sandbox-memory";
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

// The pod's resources from the CRI sandbox annotations above; nullopt when none of
// them is there. 0 (or -1) means "no limit" for the quota and the memory, and the
// default period for the period. A value that is not a decimal integer, or out of
// range, fails with one line naming the annotation.
Result<std::optional<ContainerResources>> PodResourcesOf(
    const std::map<std::string, std::string>& annotations);

// The boot size of a pod's VM from the pod's resources: as BootSizeFor (the
// io.beaconbox.vm.* annotations win, the defaults are the least), but a need beyond
// a maximum is capped at that maximum instead of refused (the container that does not
// fit is refused when it joins).
Result<VmSize> PodBootSizeFor(const ContainerResources& pod,
                              const std::map<std::string, std::string>& annotations,
                              const VmSettings& settings);

// Two containers' resources together: memory limits added; CPU quotas added (at a
// common period of 100000 us when both have one); shares added. A side without a
// limit adds nothing to it. (pids are per container and not added.)
ContainerResources AddResources(const ContainerResources& a, const ContainerResources& b);

// Short text of what `resources` needs ("2 vCPUs, 1024 MiB memory limit"), for messages.
std::string DescribeNeeds(const ContainerResources& resources);

}  // namespace beaconbox::shim
