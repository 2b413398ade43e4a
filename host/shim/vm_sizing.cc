#include "host/shim/vm_sizing.h"

#include <algorithm>
#include <charconv>
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
  if (!resources.memory_limit || *resources.memory_limit <= 0) return 0;
  const uint64_t limit = static_cast<uint64_t>(*resources.memory_limit);
  return limit / kMib + (limit % kMib != 0) + settings.guest_overhead_mib;
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

}  // namespace beaconbox::shim
