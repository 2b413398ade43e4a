#include "host/shim/vm_sizing.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "common/base/bounded_json.h"

namespace beaconbox::shim {
namespace {

constexpr uint64_t kMib = 1 << 20;
constexpr uint64_t kMinMemoryMib = 64;
constexpr uint64_t kDefaultCpuPeriod = 100000;
constexpr uint64_t kSharesPerVcpu = 1024;

Error Bad(const std::string& message) { return MakeError(ErrorCode::kInvalidArgument, message); }

uint32_t MaxVcpus(const VmSettings& settings) {
  return std::max(settings.max_vcpus, std::max<uint32_t>(settings.vcpus, 1));
}
uint64_t MaxMemoryMib(const VmSettings& settings) {
  return std::max(settings.max_memory_mib, settings.memory_mib);
}

// Reads `object[key]` as an integer into `out` when present and not null.
template <typename T>
Status ReadInteger(const nlohmann::json& object, const char* key, const std::string& where,
                   std::optional<T>* out) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return Status::Ok();
  const bool fits = std::is_signed_v<T> ? it->is_number_integer() : it->is_number_unsigned();
  if (!fits) {
    return Bad(where + "." + key + " must be " +
               (std::is_signed_v<T> ? "an integer" : "a non-negative integer") + ", not " +
               it->dump().substr(0, 40));
  }
  *out = it->get<T>();
  return Status::Ok();
}

Status CheckObject(const nlohmann::json& json, const std::string& where) {
  if (json.is_null() || json.is_object()) return Status::Ok();
  return Bad(where + " must be a JSON object");
}

Result<ContainerResources> FromJson(const nlohmann::json& json, const std::string& where) {
  ContainerResources resources;
  BBX_RETURN_IF_ERROR(CheckObject(json, where));
  if (json.is_null()) return resources;
  if (auto memory = json.find("memory"); memory != json.end()) {
    BBX_RETURN_IF_ERROR(CheckObject(*memory, where + ".memory"));
    if (memory->is_object()) {
      BBX_RETURN_IF_ERROR(
          ReadInteger(*memory, "limit", where + ".memory", &resources.memory_limit));
    }
  }
  if (auto cpu = json.find("cpu"); cpu != json.end()) {
    BBX_RETURN_IF_ERROR(CheckObject(*cpu, where + ".cpu"));
    if (cpu->is_object()) {
      BBX_RETURN_IF_ERROR(ReadInteger(*cpu, "quota", where + ".cpu", &resources.cpu_quota));
      BBX_RETURN_IF_ERROR(ReadInteger(*cpu, "period", where + ".cpu", &resources.cpu_period));
      BBX_RETURN_IF_ERROR(ReadInteger(*cpu, "shares", where + ".cpu", &resources.cpu_shares));
      if (resources.cpu_period &&
          (*resources.cpu_period < 1000 || *resources.cpu_period > 1000000)) {
        return Bad(where + ".cpu.period " + std::to_string(*resources.cpu_period) +
                   " is out of range [1000, 1000000] microseconds");
      }
      if (resources.cpu_quota && *resources.cpu_quota > 0 && *resources.cpu_quota < 1000) {
        return Bad(where + ".cpu.quota " + std::to_string(*resources.cpu_quota) +
                   " is below 1000 microseconds (use -1 for no limit)");
      }
    }
  }
  if (auto pids = json.find("pids"); pids != json.end()) {
    BBX_RETURN_IF_ERROR(CheckObject(*pids, where + ".pids"));
    if (pids->is_object()) {
      BBX_RETURN_IF_ERROR(ReadInteger(*pids, "limit", where + ".pids", &resources.pids_limit));
    }
  }
  return resources;
}

// An annotation's value as an integer in [min, max].
Result<uint64_t> AnnotationValue(const std::map<std::string, std::string>& annotations,
                                 const char* key, uint64_t min, uint64_t max, const char* max_key) {
  const std::string& text = annotations.at(key);
  uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return Bad("annotation " + std::string(key) + "=\"" + text.substr(0, 40) +
               "\" is not a whole number: give e.g. " + std::to_string(min));
  }
  if (value < min || value > max) {
    return Bad("annotation " + std::string(key) + "=" + text + " is out of range [" +
               std::to_string(min) + ", " + std::to_string(max) + "] (the maximum is config key " +
               max_key + ")");
  }
  return value;
}

// A CRI sandbox annotation as a signed decimal integer in [min, max], naming `unit`.
Result<std::optional<int64_t>> CriAnnotation(const std::map<std::string, std::string>& annotations,
                                             const char* key, int64_t min, int64_t max,
                                             const char* unit) {
  auto it = annotations.find(key);
  if (it == annotations.end()) return std::optional<int64_t>();
  const std::string& text = it->second;
  int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return Bad("annotation " + std::string(key) + "=\"" + text.substr(0, 40) +
               "\" is not a decimal integer (" + unit + "): give e.g. " + std::to_string(max / 2) +
               ", or leave it out");
  }
  if (value < min || value > max) {
    return Bad("annotation " + std::string(key) + "=" + text + " is out of range [" +
               std::to_string(min) + ", " + std::to_string(max) + "] (" + unit + ")");
  }
  return std::optional<int64_t>(value);
}

uint64_t MemoryLimitMib(const ContainerResources& resources) {
  if (!resources.memory_limit || *resources.memory_limit <= 0) return 0;
  const uint64_t limit = static_cast<uint64_t>(*resources.memory_limit);
  return limit / kMib + (limit % kMib != 0);
}

Status CheckVcpuNeed(const ContainerResources& resources, const VmSettings& settings) {
  const uint32_t max = MaxVcpus(settings);
  if (resources.cpu_quota && *resources.cpu_quota > 0 && VcpusNeeded(resources) > max) {
    return Bad("CPU limit quota " + std::to_string(*resources.cpu_quota) + " / period " +
               std::to_string(resources.cpu_period.value_or(kDefaultCpuPeriod)) + " needs " +
               std::to_string(VcpusNeeded(resources)) + " vCPUs, more than the VM maximum " +
               std::to_string(max) + " (config key vm.max_vcpus): lower the limit");
  }
  return Status::Ok();
}

Status CheckMemoryNeed(const ContainerResources& resources, const VmSettings& settings) {
  const uint64_t need = MemoryNeededMib(resources, settings);
  const uint64_t max = MaxMemoryMib(settings);
  if (need > max) {
    return Bad("memory limit " + std::to_string(*resources.memory_limit / kMib) +
               " MiB plus the guest overhead " + std::to_string(settings.guest_overhead_mib) +
               " MiB (config key vm.guest_overhead_mib) exceeds the VM maximum " +
               std::to_string(max) + " MiB (config key vm.max_memory_mib): lower the limit");
  }
  return Status::Ok();
}

}  // namespace

Result<ContainerResources> ParseLinuxResources(std::string_view json) {
  BBX_ASSIGN_OR_RETURN(nlohmann::json parsed,
                       ParseBoundedJson(json, "the LinuxResources", {16, 1 << 20}));
  return FromJson(parsed, "resources");
}

Result<ContainerResources> ResourcesOfSpec(std::string_view config_json) {
  BBX_ASSIGN_OR_RETURN(nlohmann::json spec, ParseBoundedJson(config_json, "config.json"));
  if (!spec.is_object()) return ContainerResources{};
  auto linux_part = spec.find("linux");
  if (linux_part == spec.end() || !linux_part->is_object()) return ContainerResources{};
  auto resources = linux_part->find("resources");
  if (resources == linux_part->end()) return ContainerResources{};
  return FromJson(*resources, "config.json linux.resources");
}

uint32_t VcpusNeeded(const ContainerResources& resources) {
  constexpr uint64_t kCap = std::numeric_limits<uint32_t>::max();
  if (resources.cpu_quota && *resources.cpu_quota > 0) {
    const uint64_t period = std::max<uint64_t>(resources.cpu_period.value_or(kDefaultCpuPeriod), 1);
    const uint64_t quota = static_cast<uint64_t>(*resources.cpu_quota);
    return static_cast<uint32_t>(std::min(quota / period + (quota % period != 0), kCap));
  }
  if (resources.cpu_shares && *resources.cpu_shares > 0) {
    const uint64_t shares = *resources.cpu_shares;
    return static_cast<uint32_t>(
        std::min(shares / kSharesPerVcpu + (shares % kSharesPerVcpu != 0), kCap));
  }
  return 0;
}

uint64_t MemoryNeededMib(const ContainerResources& resources, const VmSettings& settings) {
  const uint64_t limit = MemoryLimitMib(resources);
  return limit == 0 ? 0 : limit + settings.guest_overhead_mib;
}

Result<VmSize> BootSizeFor(const ContainerResources& resources,
                           const std::map<std::string, std::string>& annotations,
                           const VmSettings& settings) {
  VmSize size;
  const uint32_t max_vcpus = MaxVcpus(settings);
  const uint64_t max_memory = MaxMemoryMib(settings);
  if (annotations.count(kVcpusAnnotation)) {
    BBX_ASSIGN_OR_RETURN(uint64_t vcpus, AnnotationValue(annotations, kVcpusAnnotation, 1,
                                                         max_vcpus, "vm.max_vcpus"));
    size.vcpus = static_cast<uint32_t>(vcpus);
  } else {
    BBX_RETURN_IF_ERROR(CheckVcpuNeed(resources, settings));
    size.vcpus = std::min(std::max({VcpusNeeded(resources), settings.vcpus, 1u}), max_vcpus);
  }
  if (annotations.count(kMemoryAnnotation)) {
    BBX_ASSIGN_OR_RETURN(size.memory_mib,
                         AnnotationValue(annotations, kMemoryAnnotation, kMinMemoryMib, max_memory,
                                         "vm.max_memory_mib"));
  } else {
    BBX_RETURN_IF_ERROR(CheckMemoryNeed(resources, settings));
    size.memory_mib = std::max(MemoryNeededMib(resources, settings), settings.memory_mib);
  }
  return size;
}

Result<VmSize> GrownSizeFor(const ContainerResources& resources, VmSize current,
                            const VmSettings& settings) {
  BBX_RETURN_IF_ERROR(CheckVcpuNeed(resources, settings));
  BBX_RETURN_IF_ERROR(CheckMemoryNeed(resources, settings));
  VmSize grown = current;
  grown.vcpus = std::max(current.vcpus, std::min(VcpusNeeded(resources), MaxVcpus(settings)));
  const uint64_t need = MemoryNeededMib(resources, settings);
  if (need > current.memory_mib) {
    const uint64_t blocks =
        (need - current.memory_mib + kMemoryHotplugBlockMib - 1) / kMemoryHotplugBlockMib;
    const uint64_t room = MaxMemoryMib(settings) - current.memory_mib;
    grown.memory_mib =
        current.memory_mib + std::min(blocks * kMemoryHotplugBlockMib,
                                      room / kMemoryHotplugBlockMib * kMemoryHotplugBlockMib);
    if (grown.memory_mib < need) {
      return Bad("memory limit " + std::to_string(*resources.memory_limit / kMib) +
                 " MiB plus the guest overhead " + std::to_string(settings.guest_overhead_mib) +
                 " MiB needs " + std::to_string(need) + " MiB, but the VM (" +
                 std::to_string(current.memory_mib) + " MiB) can grow only to " +
                 std::to_string(grown.memory_mib) + " MiB in " +
                 std::to_string(kMemoryHotplugBlockMib) +
                 " MiB blocks below config key vm.max_memory_mib (" +
                 std::to_string(MaxMemoryMib(settings)) + "): lower the limit");
    }
  }
  return grown;
}

Result<std::optional<ContainerResources>> PodResourcesOf(
    const std::map<std::string, std::string>& annotations) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  BBX_ASSIGN_OR_RETURN(auto period, CriAnnotation(annotations, kCriSandboxCpuPeriod, 0, 1000000,
                                                  "CPU period in microseconds, 0 for the default"));
  BBX_ASSIGN_OR_RETURN(auto quota, CriAnnotation(annotations, kCriSandboxCpuQuota, -1, kMax,
                                                 "CPU quota in microseconds, 0 for no limit"));
  BBX_ASSIGN_OR_RETURN(auto shares, CriAnnotation(annotations, kCriSandboxCpuShares, 0, 262144,
                                                  "CPU shares, 0 for none"));
  BBX_ASSIGN_OR_RETURN(auto memory, CriAnnotation(annotations, kCriSandboxMemory, -1, kMax,
                                                  "memory limit in bytes, 0 for no limit"));
  if (!period && !quota && !shares && !memory) return std::optional<ContainerResources>();
  if (period && *period != 0 && *period < 1000) {
    return Bad("annotation " + std::string(kCriSandboxCpuPeriod) + "=" + std::to_string(*period) +
               " is below 1000 microseconds: give 1000..1000000, or 0 for the default");
  }
  if (quota && *quota > 0 && *quota < 1000) {
    return Bad("annotation " + std::string(kCriSandboxCpuQuota) + "=" + std::to_string(*quota) +
               " is below 1000 microseconds: give at least 1000, or 0 for no limit");
  }
  ContainerResources pod;
  if (period && *period > 0) pod.cpu_period = static_cast<uint64_t>(*period);
  if (quota && *quota > 0) pod.cpu_quota = *quota;
  if (shares && *shares > 0) pod.cpu_shares = static_cast<uint64_t>(*shares);
  if (memory && *memory > 0) pod.memory_limit = *memory;
  return std::optional<ContainerResources>(pod);
}

Result<VmSize> PodBootSizeFor(const ContainerResources& pod,
                              const std::map<std::string, std::string>& annotations,
                              const VmSettings& settings) {
  // The explicit annotations are checked as for any container; the pod's needs capped.
  ContainerResources none;
  BBX_ASSIGN_OR_RETURN(VmSize size, BootSizeFor(none, annotations, settings));
  if (!annotations.count(kVcpusAnnotation)) {
    size.vcpus = std::min(std::max(VcpusNeeded(pod), size.vcpus), MaxVcpus(settings));
  }
  if (!annotations.count(kMemoryAnnotation)) {
    size.memory_mib =
        std::min(std::max(MemoryNeededMib(pod, settings), size.memory_mib), MaxMemoryMib(settings));
  }
  return size;
}

ContainerResources AddResources(const ContainerResources& a, const ContainerResources& b) {
  ContainerResources sum;
  if (MemoryLimitMib(a) != 0 || MemoryLimitMib(b) != 0) {
    auto positive = [](const std::optional<int64_t>& v) { return v && *v > 0 ? *v : 0; };
    const int64_t pa = positive(a.memory_limit);
    const int64_t pb = positive(b.memory_limit);
    sum.memory_limit = pa > std::numeric_limits<int64_t>::max() - pb
                           ? std::numeric_limits<int64_t>::max()
                           : pa + pb;
  }
  const bool quota_a = a.cpu_quota && *a.cpu_quota > 0;
  const bool quota_b = b.cpu_quota && *b.cpu_quota > 0;
  if (quota_a && quota_b) {
    // Each quota at the common period, rounded up: the sum needs at least the vCPUs of
    // the parts together.
    auto at_common = [](const ContainerResources& r) {
      const uint64_t period = std::max<uint64_t>(r.cpu_period.value_or(kDefaultCpuPeriod), 1);
      const long double scaled = static_cast<long double>(*r.cpu_quota) * kDefaultCpuPeriod /
                                 static_cast<long double>(period);
      return static_cast<int64_t>(std::min<long double>(
          std::ceil(scaled), static_cast<long double>(std::numeric_limits<int64_t>::max() / 2)));
    };
    sum.cpu_quota = at_common(a) + at_common(b);
    sum.cpu_period = kDefaultCpuPeriod;
  } else if (quota_a) {
    sum.cpu_quota = a.cpu_quota;
    sum.cpu_period = a.cpu_period;
  } else if (quota_b) {
    sum.cpu_quota = b.cpu_quota;
    sum.cpu_period = b.cpu_period;
  }
  if (a.cpu_shares || b.cpu_shares) {
    const uint64_t sa = a.cpu_shares.value_or(0);
    const uint64_t sb = b.cpu_shares.value_or(0);
    sum.cpu_shares = sa > std::numeric_limits<uint64_t>::max() - sb
                         ? std::numeric_limits<uint64_t>::max()
                         : sa + sb;
  }
  return sum;
}

std::string DescribeNeeds(const ContainerResources& resources) {
  const uint32_t vcpus = VcpusNeeded(resources);
  std::string text = vcpus == 0   ? "no CPU limit"
                     : vcpus == 1 ? "1 vCPU"
                                  : std::to_string(vcpus) + " vCPUs";
  const uint64_t memory = MemoryLimitMib(resources);
  text += memory == 0 ? ", no memory limit" : ", " + std::to_string(memory) + " MiB memory limit";
  return text;
}

}  // namespace beaconbox::shim
