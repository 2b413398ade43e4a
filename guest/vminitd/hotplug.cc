#include "guest/vminitd/hotplug.h"

#include <charconv>
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

}  // namespace

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
