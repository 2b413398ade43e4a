#include "host/shim/task_metrics.h"

#include <unistd.h>

#include <limits>

#include "common/base/file_util.h"
#include "github.com/containerd/cgroups/v2/stats/metrics.pb.h"

namespace beaconbox::shim {
namespace {

namespace cgroupsv2 = ::io::containerd::cgroups::v2;

constexpr size_t kMaxProcFileBytes = 64 * 1024;

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

void AppendVarintField(int field, uint64_t value, std::string* out) {
  AppendVarint(uint64_t(field) << 3, out);  // wire type 0
  AppendVarint(value, out);
}

// The lite runtime has neither DiscardUnknownFields nor a public way to clear a
// message's unknown fields: they sit in MessageLite's protected metadata, reached here
// through a pointer to that member named from a class derived from MessageLite (never
// instantiated).
class UnknownFields : public google::protobuf::MessageLite {
 public:
  static void Discard(google::protobuf::MessageLite& message) {
    (message.*&UnknownFields::_internal_metadata_).Clear<std::string>();
  }
};

// Each message the shim passes on (the five it copies, all flat but IOStat's entries)
// drops what it does not know.
void DiscardUnknownFields(cgroupsv2::Metrics& metrics) {
  UnknownFields::Discard(metrics);
  if (metrics.has_pids()) UnknownFields::Discard(*metrics.mutable_pids());
  if (metrics.has_cpu()) UnknownFields::Discard(*metrics.mutable_cpu());
  if (metrics.has_memory()) UnknownFields::Discard(*metrics.mutable_memory());
  if (metrics.has_memory_events()) UnknownFields::Discard(*metrics.mutable_memory_events());
  if (metrics.has_io()) {
    UnknownFields::Discard(*metrics.mutable_io());
    for (auto& entry : *metrics.mutable_io()->mutable_usage()) UnknownFields::Discard(entry);
  }
}

std::string SerializeVmCost(const VmCost& cost) {
  std::string body;
  AppendVarintField(1, cost.vmm_pid, &body);
  AppendVarintField(2, cost.rss_bytes, &body);
  AppendVarintField(3, cost.cpu_user_usec + cost.cpu_system_usec, &body);
  AppendVarintField(4, cost.cpu_user_usec, &body);
  AppendVarintField(5, cost.cpu_system_usec, &body);
  std::string field;
  AppendVarint((uint64_t(kVmCostField) << 3) | 2, &field);  // wire type 2: a message
  AppendVarint(body.size(), &field);
  return field + body;
}

std::optional<uint64_t> ParseDecimal(std::string_view digits) {
  if (digits.empty() || digits.size() > 20) return std::nullopt;
  uint64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = uint64_t(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// Clock ticks to microseconds without overflow for any tick count a process can have.
uint64_t TicksToUsec(uint64_t ticks, long ticks_per_second) {
  const uint64_t per_second = uint64_t(ticks_per_second);
  return ticks / per_second * 1000000 + ticks % per_second * 1000000 / per_second;
}

Error Refused(std::string_view why) {
  return MakeError(ErrorCode::kInternal,
                   "the guest's metrics were refused: " + std::string(why) +
                       " (a faulty or hostile guest agent; see the VM's console log)");
}

}  // namespace

Result<VmCost> ParseVmCost(std::string_view stat, std::string_view status, long ticks_per_second) {
  if (ticks_per_second <= 0) {
    return MakeError(ErrorCode::kInternal, "clock ticks per second unknown");
  }
  // /proc/PID/stat: "pid (comm) state ppid ...": comm may hold anything, so the
  // fields are counted from the last ')'. utime and stime are fields 14 and 15.
  const size_t paren = stat.rfind(')');
  if (paren == std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "/proc/PID/stat has no ')'");
  }
  std::string_view rest = stat.substr(paren + 1);
  std::optional<uint64_t> utime, stime;
  for (int field = 3; field <= 15 && !rest.empty(); ++field) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    size_t end = rest.find(' ');
    std::string_view word = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
    if (field == 14) utime = ParseDecimal(word);
    if (field == 15) stime = ParseDecimal(word);
  }
  if (!utime || !stime) {
    return MakeError(ErrorCode::kInvalidArgument, "/proc/PID/stat has no utime and stime");
  }
  // /proc/PID/status: "VmRSS:\t  1234 kB".
  std::optional<uint64_t> rss_kib;
  size_t line_start = 0;
  while (line_start < status.size()) {
    size_t line_end = status.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = status.size();
    std::string_view line = status.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    if (!line.starts_with("VmRSS:")) continue;
    line.remove_prefix(6);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (!line.ends_with(" kB")) break;
    line.remove_suffix(3);
    rss_kib = ParseDecimal(line);
    break;
  }
  if (!rss_kib || *rss_kib > std::numeric_limits<uint64_t>::max() / 1024) {
    return MakeError(ErrorCode::kInvalidArgument, "/proc/PID/status has no VmRSS in kB");
  }
  VmCost cost;
  cost.rss_bytes = *rss_kib * 1024;
  cost.cpu_user_usec = TicksToUsec(*utime, ticks_per_second);
  cost.cpu_system_usec = TicksToUsec(*stime, ticks_per_second);
  return cost;
}

Result<VmCost> ReadVmCost(pid_t vmm_pid, const std::string& proc_root) {
  if (vmm_pid <= 0) return MakeError(ErrorCode::kNotFound, "the VM has no VMM process");
  const std::string dir = proc_root + "/" + std::to_string(vmm_pid);
  BBX_ASSIGN_OR_RETURN(std::string stat, ReadSmallFile(dir + "/stat", kMaxProcFileBytes));
  BBX_ASSIGN_OR_RETURN(std::string status, ReadSmallFile(dir + "/status", kMaxProcFileBytes));
  BBX_ASSIGN_OR_RETURN(VmCost cost, ParseVmCost(stat, status, ::sysconf(_SC_CLK_TCK)));
  cost.vmm_pid = static_cast<uint32_t>(vmm_pid);
  return cost;
}

Result<google::protobuf::Any> MetricsFromGuest(const google::protobuf::Any& guest_stats,
                                               const std::optional<VmCost>& vm_cost) {
  if (guest_stats.type_url() != kCgroupV2MetricsTypeUrl) {
    return Refused("type \"" + guest_stats.type_url().substr(0, 80) + "\", not " +
                   kCgroupV2MetricsTypeUrl);
  }
  if (guest_stats.value().size() > kMaxGuestMetricsBytes) {
    return Refused(std::to_string(guest_stats.value().size()) + " bytes, more than " +
                   std::to_string(kMaxGuestMetricsBytes));
  }
  cgroupsv2::Metrics guest;
  if (!guest.ParseFromString(guest_stats.value())) {
    return Refused("not an io.containerd.cgroups.v2.Metrics message");
  }
  if (guest.io().usage_size() > kMaxIoEntries) {
    return Refused(std::to_string(guest.io().usage_size()) + " IO devices, more than " +
                   std::to_string(kMaxIoEntries));
  }
  if (guest.pids().current() > kMaxGuestPids) {
    return Refused("pids.current " + std::to_string(guest.pids().current()) +
                   " above the kernel's PID_MAX_LIMIT");
  }
  if (guest.pids().limit() > kMaxGuestPids &&
      guest.pids().limit() != std::numeric_limits<uint64_t>::max()) {
    return Refused("pids.max " + std::to_string(guest.pids().limit()) +
                   " is neither \"max\" nor within the kernel's PID_MAX_LIMIT");
  }
  for (const auto& entry : guest.io().usage()) {
    if (entry.major() > 0xffffffffu || entry.minor() > 0xffffffffu) {
      return Refused("an IO device number above 32 bits");
    }
  }
  // Field by field into a fresh message: what the guest never fills (rdma, hugetlb)
  // and whatever else it sent (unknown fields) stay behind.
  cgroupsv2::Metrics metrics;
  if (guest.has_pids()) *metrics.mutable_pids() = guest.pids();
  if (guest.has_cpu()) *metrics.mutable_cpu() = guest.cpu();
  if (guest.has_memory()) *metrics.mutable_memory() = guest.memory();
  if (guest.has_memory_events()) *metrics.mutable_memory_events() = guest.memory_events();
  if (guest.has_io()) *metrics.mutable_io() = guest.io();
  DiscardUnknownFields(metrics);
  google::protobuf::Any any;
  any.set_type_url(kCgroupV2MetricsTypeUrl);
  std::string value = metrics.SerializeAsString();
  if (vm_cost) value += SerializeVmCost(*vm_cost);
  any.set_value(std::move(value));
  return any;
}

}  // namespace beaconbox::shim
