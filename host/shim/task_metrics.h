// Task.Stats for containerd: the guest's cgroup v2 figures, re-checked, as the
// io.containerd.cgroups.v2.Metrics runc's shim answers on a cgroup v2 host (so `ctr
// task metrics` and the CRI plugin read them), plus the VM's own cost on the host.
//
// The guest's answer is hostile input: it must be an Any of that type, at most
// kMaxGuestMetricsBytes, parse as the message, hold no field the guest never fills
// (rdma, hugetlb, unknown fields are dropped), at most kMaxIoEntries devices, and
// pids figures a Linux guest can have. The figures are then copied field by field
// into a fresh message, so nothing else the guest sent reaches containerd.
//
// The VM's cost (the VMM process's RSS and CPU time, from the host's /proc) has no
// field in containerd's type: its figures are the container's own, inside the VM.
// It rides in the same message as field kVmCostField (a message VmCost, below), which
// containerd passes through and its decoders skip as unknown; README documents it.
//   VmCost { uint64 vmm_pid = 1; uint64 rss_bytes = 2; uint64 cpu_usage_usec = 3;
//            uint64 cpu_user_usec = 4; uint64 cpu_system_usec = 5; }
#pragma once

#include <google/protobuf/any.pb.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace beaconbox::shim {

inline constexpr char kCgroupV2MetricsTypeUrl[] = "io.containerd.cgroups.v2.Metrics";
inline constexpr size_t kMaxGuestMetricsBytes = 64 * 1024;
inline constexpr int kMaxIoEntries = 64;
// PID_MAX_LIMIT: no Linux guest has more processes or a higher pids.max (but "max").
inline constexpr uint64_t kMaxGuestPids = 4194304;
inline constexpr int kVmCostField = 1000;

struct VmCost {
  uint32_t vmm_pid = 0;
  uint64_t rss_bytes = 0;
  uint64_t cpu_user_usec = 0;
  uint64_t cpu_system_usec = 0;
};

// The VMM process's cost from /proc/<pid>/stat (utime, stime) and /proc/<pid>/status
// (VmRSS). Fails when the process is gone or the files do not read as Linux's.
Result<VmCost> ReadVmCost(pid_t vmm_pid, const std::string& proc_root = "/proc");
// The parsing of those two files, for tests. `ticks_per_second`: sysconf(_SC_CLK_TCK).
Result<VmCost> ParseVmCost(std::string_view stat, std::string_view status, long ticks_per_second);

// The Any to answer containerd with, from the guest's Task.Stats answer, with
// `vm_cost` (if any) added as field kVmCostField. One line naming what is wrong when
// the guest's answer is refused.
Result<google::protobuf::Any> MetricsFromGuest(const google::protobuf::Any& guest_stats,
                                               const std::optional<VmCost>& vm_cost);

}  // namespace beaconbox::shim
