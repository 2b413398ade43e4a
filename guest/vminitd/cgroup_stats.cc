#include "guest/vminitd/cgroup_stats.h"

#include <limits>

#include "common/base/file_util.h"

namespace beaconbox::guest {
namespace {

constexpr size_t kMaxKeyLength = 64;
constexpr size_t kMaxCgroupPath = 4096;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view Trim(std::string_view text) {
  while (!text.empty() && IsSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsSpace(text.back())) text.remove_suffix(1);
  return text;
}

// Splits `text` at '\n', calling `line` for each; stops when it returns false.
template <typename Fn>
void ForEachLine(std::string_view text, Fn line) {
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view current = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (!line(current)) return;
  }
}

// Whitespace-separated words of one line.
std::vector<std::string_view> Words(std::string_view line, size_t max_words) {
  std::vector<std::string_view> words;
  while (words.size() <= max_words) {
    while (!line.empty() && IsSpace(line.front())) line.remove_prefix(1);
    if (line.empty()) break;
    size_t end = 0;
    while (end < line.size() && !IsSpace(line[end])) ++end;
    words.push_back(line.substr(0, end));
    line.remove_prefix(end);
  }
  return words;
}

bool IsKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyLength) return false;
  for (char c : key) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

// Decimal digits only, no sign, no overflow.
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

uint64_t Get(const std::map<std::string, uint64_t>& values, const char* key) {
  auto it = values.find(key);
  return it == values.end() ? 0 : it->second;
}

uint64_t ValueOr0(const std::optional<std::string>& file) {
  if (!file) return 0;
  return ParseCgroupValue(*file).value_or(0);
}

}  // namespace

std::optional<uint64_t> ParseCgroupValue(std::string_view text) {
  text = Trim(text);
  if (text == "max") return std::numeric_limits<uint64_t>::max();
  if (!text.empty() && text.front() == '-') {
    // A negative number (the kernel prints some limits as -1) reads as 0.
    if (ParseDecimal(text.substr(1))) return 0;
    return std::nullopt;
  }
  return ParseDecimal(text);
}

std::map<std::string, uint64_t> ParseFlatKeyed(std::string_view text) {
  std::map<std::string, uint64_t> values;
  ForEachLine(text, [&](std::string_view line) {
    auto words = Words(line, 2);
    if (words.size() != 2 || !IsKey(words[0])) return true;
    auto value = ParseCgroupValue(words[1]);
    if (!value) return true;
    values[std::string(words[0])] = *value;
    return values.size() < kMaxFlatKeyedEntries;
  });
  return values;
}

std::vector<cgroupsv2::IOEntry> ParseIoStat(std::string_view text) {
  std::vector<cgroupsv2::IOEntry> entries;
  ForEachLine(text, [&](std::string_view line) {
    auto words = Words(line, 16);
    if (words.size() < 2 || words.size() > 16) return true;
    size_t colon = words[0].find(':');
    if (colon == std::string_view::npos) return true;
    auto major = ParseDecimal(words[0].substr(0, colon));
    auto minor = ParseDecimal(words[0].substr(colon + 1));
    if (!major || !minor || *major > 0xffffffffu || *minor > 0xffffffffu) return true;
    cgroupsv2::IOEntry entry;
    entry.set_major(*major);
    entry.set_minor(*minor);
    for (size_t i = 1; i < words.size(); ++i) {
      size_t equals = words[i].find('=');
      if (equals == std::string_view::npos) continue;
      std::string_view key = words[i].substr(0, equals);
      auto value = ParseDecimal(words[i].substr(equals + 1));
      if (!value) continue;
      if (key == "rbytes") entry.set_rbytes(*value);
      if (key == "wbytes") entry.set_wbytes(*value);
      if (key == "rios") entry.set_rios(*value);
      if (key == "wios") entry.set_wios(*value);
    }
    entries.push_back(std::move(entry));
    return entries.size() < kMaxIoDevices;
  });
  return entries;
}

CgroupFiles ReadCgroupFiles(const std::string& dir) {
  auto read = [&dir](const char* name) -> std::optional<std::string> {
    auto content = ReadSmallFile(dir + "/" + name, kMaxCgroupFileBytes);
    if (!content.ok()) return std::nullopt;
    return std::move(content).value();
  };
  CgroupFiles files;
  files.cpu_stat = read("cpu.stat");
  files.memory_stat = read("memory.stat");
  files.memory_current = read("memory.current");
  files.memory_max = read("memory.max");
  files.memory_swap_current = read("memory.swap.current");
  files.memory_swap_max = read("memory.swap.max");
  files.memory_events = read("memory.events");
  files.pids_current = read("pids.current");
  files.pids_max = read("pids.max");
  files.io_stat = read("io.stat");
  return files;
}

cgroupsv2::Metrics MetricsFromCgroupFiles(const CgroupFiles& files) {
  cgroupsv2::Metrics metrics;
  auto* pids = metrics.mutable_pids();
  pids->set_current(ValueOr0(files.pids_current));
  pids->set_limit(ValueOr0(files.pids_max));

  const auto cpu_stat = ParseFlatKeyed(files.cpu_stat.value_or(""));
  auto* cpu = metrics.mutable_cpu();
  cpu->set_usage_usec(Get(cpu_stat, "usage_usec"));
  cpu->set_user_usec(Get(cpu_stat, "user_usec"));
  cpu->set_system_usec(Get(cpu_stat, "system_usec"));
  cpu->set_nr_periods(Get(cpu_stat, "nr_periods"));
  cpu->set_nr_throttled(Get(cpu_stat, "nr_throttled"));
  cpu->set_throttled_usec(Get(cpu_stat, "throttled_usec"));

  const auto stat = ParseFlatKeyed(files.memory_stat.value_or(""));
  auto* memory = metrics.mutable_memory();
  memory->set_anon(Get(stat, "anon"));
  memory->set_file(Get(stat, "file"));
  memory->set_kernel_stack(Get(stat, "kernel_stack"));
  memory->set_slab(Get(stat, "slab"));
  memory->set_sock(Get(stat, "sock"));
  memory->set_shmem(Get(stat, "shmem"));
  memory->set_file_mapped(Get(stat, "file_mapped"));
  memory->set_file_dirty(Get(stat, "file_dirty"));
  memory->set_file_writeback(Get(stat, "file_writeback"));
  memory->set_anon_thp(Get(stat, "anon_thp"));
  memory->set_inactive_anon(Get(stat, "inactive_anon"));
  memory->set_active_anon(Get(stat, "active_anon"));
  memory->set_inactive_file(Get(stat, "inactive_file"));
  memory->set_active_file(Get(stat, "active_file"));
  memory->set_unevictable(Get(stat, "unevictable"));
  memory->set_slab_reclaimable(Get(stat, "slab_reclaimable"));
  memory->set_slab_unreclaimable(Get(stat, "slab_unreclaimable"));
  memory->set_pgfault(Get(stat, "pgfault"));
  memory->set_pgmajfault(Get(stat, "pgmajfault"));
  memory->set_workingset_refault(Get(stat, "workingset_refault"));
  memory->set_workingset_activate(Get(stat, "workingset_activate"));
  memory->set_workingset_nodereclaim(Get(stat, "workingset_nodereclaim"));
  memory->set_pgrefill(Get(stat, "pgrefill"));
  memory->set_pgscan(Get(stat, "pgscan"));
  memory->set_pgsteal(Get(stat, "pgsteal"));
  memory->set_pgactivate(Get(stat, "pgactivate"));
  memory->set_pgdeactivate(Get(stat, "pgdeactivate"));
  memory->set_pglazyfree(Get(stat, "pglazyfree"));
  memory->set_pglazyfreed(Get(stat, "pglazyfreed"));
  memory->set_thp_fault_alloc(Get(stat, "thp_fault_alloc"));
  memory->set_thp_collapse_alloc(Get(stat, "thp_collapse_alloc"));
  memory->set_usage(ValueOr0(files.memory_current));
  memory->set_usage_limit(ValueOr0(files.memory_max));
  memory->set_swap_usage(ValueOr0(files.memory_swap_current));
  memory->set_swap_limit(ValueOr0(files.memory_swap_max));

  if (files.memory_events) {
    const auto events = ParseFlatKeyed(*files.memory_events);
    if (!events.empty()) {
      auto* memory_events = metrics.mutable_memory_events();
      memory_events->set_low(Get(events, "low"));
      memory_events->set_high(Get(events, "high"));
      memory_events->set_max(Get(events, "max"));
      memory_events->set_oom(Get(events, "oom"));
      memory_events->set_oom_kill(Get(events, "oom_kill"));
    }
  }
  auto* io = metrics.mutable_io();
  for (auto& entry : ParseIoStat(files.io_stat.value_or(""))) *io->add_usage() = std::move(entry);
  return metrics;
}

uint64_t OomKillCount(std::string_view memory_events) {
  return Get(ParseFlatKeyed(memory_events), "oom_kill");
}

Result<std::string> CgroupDirFromProcCgroup(std::string_view proc_cgroup) {
  std::optional<std::string_view> path;
  ForEachLine(proc_cgroup, [&](std::string_view line) {
    if (!line.starts_with("0::")) return true;
    path = line.substr(3);
    return false;
  });
  if (!path) {
    return MakeError(ErrorCode::kNotFound,
                     "the container's process is in no cgroup v2 (no 0:: line in "
                     "/proc/PID/cgroup): the guest must mount cgroup2 on /sys/fs/cgroup");
  }
  auto bad = [](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the container's cgroup path " + std::string(why));
  };
  if (path->size() > kMaxCgroupPath) return bad("is longer than 4096 bytes");
  if (path->find('\0') != std::string_view::npos) return bad("holds a NUL byte");
  if (path->empty() || path->front() != '/') return bad("is not absolute");
  if (*path == "/") return bad("is the root cgroup: the container has no cgroup of its own");
  std::string_view rest = path->substr(1);
  while (true) {
    size_t slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    if (part.empty() || part == "." || part == "..") return bad("has an empty, . or .. component");
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return std::string(kCgroupRoot) + std::string(*path);
}

}  // namespace beaconbox::guest
