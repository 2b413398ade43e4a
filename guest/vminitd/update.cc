// Task.Update in the guest: onlines what the host hot-added (the annotations say how
// many vCPUs and MiB the VM has now; an update without resources does only that), then writes the
// new limits into the container's cgroup v2 files (memory.max, cpu.max, cpu.weight, pids.max), with
// the values runc writes for the same LinuxResources. (crun 1.8's `update --resources` left
// memory.max unchanged here.)
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/base/bounded_json.h"
#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/unique_fd.h"
#include "guest/vminitd/hotplug.h"
#include "guest/vminitd/log.h"
#include "guest/vminitd/runtime.h"

namespace beaconbox::guest {
namespace {

using namespace std::chrono_literals;

constexpr char kVcpusAnnotation[] = "io.beaconbox.vm.vcpus";
constexpr char kMemoryAnnotation[] = "io.beaconbox.vm.memory_mib";
constexpr size_t kMaxResourcesBytes = 64 << 10;
constexpr auto kOnlineTimeout = 30s;

// The annotation `key` as a number in [1, max]; nullopt when absent.
Result<std::optional<uint64_t>> SizeAnnotation(const taskapi::UpdateTaskRequest& req,
                                               const char* key, uint64_t max) {
  auto it = req.annotations().find(key);
  if (it == req.annotations().end()) return std::optional<uint64_t>();
  const std::string& text = it->second;
  uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || value == 0 ||
      value > max) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string("annotation ") + key + "=\"" + text.substr(0, 32) +
                         "\" is not a number in [1, " + std::to_string(max) + "]");
  }
  return std::optional<uint64_t>(value);
}

}  // namespace

Status Runtime::Update(const taskapi::UpdateTaskRequest& req) {
  pid_t pid = 0;
  std::string dir;  // found at Create (Runtime::CgroupDirOf)
  {
    std::lock_guard lock(mu_);
    BBX_ASSIGN_OR_RETURN(Container * container, FindContainer(req.id()));
    pid = container->init->pid;
    dir = container->cgroup_dir;
  }
  BBX_ASSIGN_OR_RETURN(auto vcpus, SizeAnnotation(req, kVcpusAnnotation, 8192));
  BBX_ASSIGN_OR_RETURN(auto memory_mib, SizeAnnotation(req, kMemoryAnnotation, 1 << 24));
  if (vcpus) BBX_RETURN_IF_ERROR(OnlineCpus(static_cast<uint32_t>(*vcpus), kOnlineTimeout));
  if (memory_mib) BBX_RETURN_IF_ERROR(OnlineMemory(*memory_mib, kOnlineTimeout));

  // No resources: the host grew the VM for a pod's joining container and asks only
  // for what it added to be onlined; no cgroup changes.
  const std::string& resources = req.resources().value();
  if (resources.empty()) {
    Log("onlined the VM's hot-added vCPUs and memory (now " + std::to_string(vcpus.value_or(0)) +
        " vCPUs, " + std::to_string(memory_mib.value_or(0)) + " MiB)");
    return Status::Ok();
  }
  if (pid <= 0) {
    return MakeError(ErrorCode::kFailedPrecondition, "container " + req.id() + " has no process");
  }
  if (resources.size() > kMaxResourcesBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "update resources larger than 64 KiB: refused");
  }
  BBX_ASSIGN_OR_RETURN(nlohmann::json parsed,
                       ParseBoundedJson(resources, "the update's LinuxResources", {16, 1 << 16}));
  if (!parsed.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "the update's LinuxResources is not an object");
  }
  if (dir.empty()) dir = CgroupDirOf(pid, req.id());
  if (dir.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "container " + req.id() + " has no cgroup v2 directory to update");
  }
  auto cpu_max = ReadSmallFile(dir + "/cpu.max", 256);
  BBX_ASSIGN_OR_RETURN(auto writes, CgroupWrites(parsed, cpu_max.ok() ? *cpu_max : ""));
  for (const auto& [file, value] : writes) {
    const std::string path = dir + "/" + file;
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd ||
        ::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
      return ErrnoError("writing " + value + " to", path);
    }
  }
  Log("updated the resources of " + req.id() + " (" + std::to_string(writes.size()) +
      " cgroup files)");
  return Status::Ok();
}

}  // namespace beaconbox::guest
