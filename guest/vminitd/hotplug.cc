#include "guest/vminitd/hotplug.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <thread>

namespace beaconbox::guest {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr uint32_t kMaxCpus = 8192;

std::string ReadTrimmed(const fs::path& path) {
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

bool WriteValue(const fs::path& path, const char* value) {
  std::ofstream out(path);
  out << value;
  out.flush();
  return static_cast<bool>(out);
}

bool ParseNumber(std::string_view text, uint64_t* out, int base = 10) {
  if (text.empty()) return false;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *out, base);
  return error == std::errc() && end == text.data() + text.size();
}

// Whether `name` is `prefix` followed by digits only.
bool IsNumbered(const std::string& name, std::string_view prefix) {
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return false;
  return name.find_first_not_of("0123456789", prefix.size()) == std::string::npos;
}

// One pass: onlines what is offline; returns the online count (CPUs) or MiB (memory).
uint32_t OnlineCpuPass(const fs::path& cpus) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(cpus, error)) {
    if (!IsNumbered(entry.path().filename().string(), "cpu")) continue;
    fs::path online = entry.path() / "online";
    if (fs::exists(online, error) && ReadTrimmed(online) == "0") WriteValue(online, "1");
  }
  return CountCpuList(ReadTrimmed(cpus / "online")).value_or(0);
}

uint64_t OnlineMemoryPass(const fs::path& memory) {
  uint64_t block_bytes = 0;
  if (!ParseNumber(ReadTrimmed(memory / "block_size_bytes"), &block_bytes, 16)) return 0;
  uint64_t online = 0;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(memory, error)) {
    if (!IsNumbered(entry.path().filename().string(), "memory")) continue;
    fs::path state = entry.path() / "state";
    std::string value = ReadTrimmed(state);
    if (value == "offline" && WriteValue(state, "online")) value = ReadTrimmed(state);
    if (value == "online") online += block_bytes;
  }
  return online >> 20;
}

// A JSON integer member `key` of `object`, if present.
std::optional<int64_t> IntegerOf(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX)) return INT64_MAX;
  return it->get<int64_t>();
}
const nlohmann::json* ObjectOf(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_object() ? &*it : nullptr;
}

}  // namespace

Result<std::vector<std::pair<std::string, std::string>>> CgroupWrites(
    const nlohmann::json& resources, const std::string& current_cpu_max) {
  std::vector<std::pair<std::string, std::string>> writes;
  auto limit_text = [](int64_t value) {
    return value <= 0 ? std::string("max") : std::to_string(value);
  };
  if (const auto* memory = ObjectOf(resources, "memory")) {
    if (auto limit = IntegerOf(*memory, "limit"))
      writes.emplace_back("memory.max", limit_text(*limit));
  }
  if (const auto* cpu = ObjectOf(resources, "cpu")) {
    auto quota = IntegerOf(*cpu, "quota");
    auto period = IntegerOf(*cpu, "period");
    if (quota || period) {
      // What is not given stays as it is: "<quota> <period>" now.
      std::string old_quota = "max", old_period = "100000";
      if (size_t space = current_cpu_max.find(' '); space != std::string::npos) {
        old_quota = current_cpu_max.substr(0, space);
        old_period = current_cpu_max.substr(space + 1);
        while (!old_period.empty() && old_period.back() == '\n') old_period.pop_back();
      }
      writes.emplace_back("cpu.max",
                          (quota ? limit_text(*quota) : old_quota) + " " +
                              (period && *period > 0 ? std::to_string(*period) : old_period));
    }
    if (auto shares = IntegerOf(*cpu, "shares"); shares && *shares > 0) {
      const int64_t clamped = std::clamp<int64_t>(*shares, 2, 262144);
      writes.emplace_back("cpu.weight", std::to_string(1 + ((clamped - 2) * 9999) / 262142));
    }
  }
  if (const auto* pids = ObjectOf(resources, "pids")) {
    if (auto limit = IntegerOf(*pids, "limit")) writes.emplace_back("pids.max", limit_text(*limit));
  }
  return writes;
}

std::optional<uint32_t> CountCpuList(std::string_view list) {
  uint32_t count = 0;
  if (list.empty()) return 0;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view range = list.substr(start, comma - start);
    size_t dash = range.find('-');
    uint64_t first = 0, last = 0;
    if (!ParseNumber(range.substr(0, dash), &first)) return std::nullopt;
    last = first;
    if (dash != std::string_view::npos && !ParseNumber(range.substr(dash + 1), &last)) {
      return std::nullopt;
    }
    if (last < first || last >= kMaxCpus) return std::nullopt;
    count += static_cast<uint32_t>(last - first + 1);
    if (count > kMaxCpus) return std::nullopt;
    start = comma + 1;
  }
  return count;
}

Status OnlineCpus(uint32_t want, std::chrono::milliseconds timeout, const std::string& sysfs) {
  const fs::path cpus = fs::path(sysfs) / "devices/system/cpu";
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  uint32_t online = 0;
  while ((online = OnlineCpuPass(cpus)) < want) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return MakeError(ErrorCode::kTimeout,
                       "only " + std::to_string(online) + " of " + std::to_string(want) +
                           " vCPUs came online within " + std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(20ms);
  }
  return Status::Ok();
}

Status OnlineMemory(uint64_t want_mib, std::chrono::milliseconds timeout,
                    const std::string& sysfs) {
  const fs::path memory = fs::path(sysfs) / "devices/system/memory";
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  uint64_t online = 0;
  while ((online = OnlineMemoryPass(memory)) < want_mib) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return MakeError(ErrorCode::kTimeout, "only " + std::to_string(online) + " of " +
                                                std::to_string(want_mib) +
                                                " MiB of memory came online within " +
                                                std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(20ms);
  }
  return Status::Ok();
}

}  // namespace beaconbox::guest
