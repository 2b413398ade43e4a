// A container's cgroup v2 figures in the guest, as containerd's cgroup v2 runtime
// reports them (io.containerd.cgroups.v2.Metrics, what runc's shim answers to Stats):
// the parsing of the kernel's cgroup files, kept apart from the reading so that
// odd or hostile contents (a container may fill its cgroup with anything the kernel
// lets it) are unit-tested. Every parser bounds what it keeps and skips what it
// cannot read, as containerd's does; a value that is no number is never a number.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "github.com/containerd/cgroups/v2/stats/metrics.pb.h"

namespace beaconbox::guest {

namespace cgroupsv2 = ::io::containerd::cgroups::v2;

inline constexpr char kCgroupRoot[] = "/sys/fs/cgroup";
// Largest cgroup file the guest reads (memory.stat is ~1.5 KiB, io.stat grows with
// the devices: a VM has a handful).
inline constexpr size_t kMaxCgroupFileBytes = 64 * 1024;
// Entries kept from a flat-keyed file (memory.stat has ~40) and io.stat devices.
inline constexpr size_t kMaxFlatKeyedEntries = 256;
inline constexpr size_t kMaxIoDevices = 64;

// One value file (memory.current, memory.max, pids.max, ...): a decimal number, or
// "max" (no limit: UINT64_MAX, as containerd reports it). A negative number is 0, as
// containerd's parser has it. Anything else (empty, text, overflow) is nullopt.
std::optional<uint64_t> ParseCgroupValue(std::string_view text);

// A flat-keyed file (cpu.stat, memory.stat, memory.events): "key value" lines. Lines
// that are not exactly that, keys that are not [a-z0-9_] of at most 64 characters and
// values that ParseCgroupValue refuses are skipped; at most kMaxFlatKeyedEntries kept.
std::map<std::string, uint64_t> ParseFlatKeyed(std::string_view text);

// io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N" per device;
// malformed lines skipped, at most kMaxIoDevices kept.
std::vector<cgroupsv2::IOEntry> ParseIoStat(std::string_view text);

// The contents of a container cgroup's files; nullopt: the file is absent (its
// controller is not enabled) or unreadable.
struct CgroupFiles {
  std::optional<std::string> cpu_stat, memory_stat, memory_current, memory_max, memory_swap_current,
      memory_swap_max, memory_events, pids_current, pids_max, io_stat;
};

// Reads the files of the cgroup directory `dir` (each at most kMaxCgroupFileBytes).
CgroupFiles ReadCgroupFiles(const std::string& dir);

// containerd's cgroup v2 Metrics from those files: the fields containerd's cgroup v2
// manager fills, each 0 when its file or key is missing.
cgroupsv2::Metrics MetricsFromCgroupFiles(const CgroupFiles& files);

// memory.events' oom_kill: how many processes the OOM killer ended in the cgroup
// (and its children); 0 when absent.
uint64_t OomKillCount(std::string_view memory_events);

// The cgroup v2 directory of a process from /proc/<pid>/cgroup ("0::/default/c1"):
// kCgroupRoot + the path. Refused: no "0::" line, a path that is not absolute, holds
// "." or ".." components or a NUL, is longer than 4096, or is the root itself (the
// container would have no cgroup of its own).
Result<std::string> CgroupDirFromProcCgroup(std::string_view proc_cgroup);

}  // namespace beaconbox::guest
