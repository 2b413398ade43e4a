// Task.Update: a container's new cgroup limits, growing its VM first when they need
// more vCPUs or memory than it has (vm_sizing.h; in a pod, with the limits of the
// VM's other containers added). Shrinking never shrinks the VM: only the cgroup limits
// go down.
#include <spdlog/spdlog.h>

#include "host/shim/sandbox.h"

namespace beaconbox::shim {
namespace {

long MsSince(std::chrono::steady_clock::time_point start) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count());
}

// `update`'s fields over `current`'s: a field the update leaves out keeps its value.
ContainerResources Merged(ContainerResources current, const ContainerResources& update) {
  if (update.memory_limit) current.memory_limit = update.memory_limit;
  if (update.cpu_quota) current.cpu_quota = update.cpu_quota;
  if (update.cpu_period) current.cpu_period = update.cpu_period;
  if (update.cpu_shares) current.cpu_shares = update.cpu_shares;
  if (update.pids_limit) current.pids_limit = update.pids_limit;
  return current;
}

}  // namespace

Status Sandbox::UpdateContainer(const ContainerKey& key, const task::UpdateTaskRequest& request) {
  std::lock_guard lifecycle(lifecycle_mutex_);
  BBX_ASSIGN_OR_RETURN(auto container, Find(key));
  if (request.resources().value().empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "update of " + key.id + " carries no resources: give the new limits");
  }
  BBX_ASSIGN_OR_RETURN(ContainerResources update, ParseLinuxResources(request.resources().value()));
  auto current = container_resources_.find(key);
  const ContainerResources resources =
      current == container_resources_.end() ? update : Merged(current->second, update);
  BBX_ASSIGN_OR_RETURN(VmSize grown, GrownSizeWith(key, resources));
  std::shared_ptr<GuestClient> guest;
  {
    std::lock_guard lock(mutex_);
    guest = guest_;
  }
  if (!vm_ || !guest) return MakeError(ErrorCode::kFailedPrecondition, "the sandbox has no VM");
  BBX_RETURN_IF_ERROR(GrowVm(grown, key.id));

  // The guest onlines what was added (it waits for the sizes the annotations give),
  // then applies the limits to the container's cgroup.
  const auto started = std::chrono::steady_clock::now();
  task::UpdateTaskRequest guest_request;
  guest_request.set_id(container->guest_id());
  *guest_request.mutable_resources() = request.resources();
  (*guest_request.mutable_annotations())[kVcpusAnnotation] = std::to_string(vm_size_.vcpus);
  (*guest_request.mutable_annotations())[kMemoryAnnotation] = std::to_string(vm_size_.memory_mib);
  google::protobuf::Empty empty;
  BBX_RETURN_IF_ERROR(
      guest->CallTask("Update", guest_request, &empty, backends_.vm.guest_call_timeout));
  container_resources_[key] = resources;
  spdlog::info("container {} updated: guest online and cgroup update {} ms", key.ToString(),
               MsSince(started));
  return Status::Ok();
}

}  // namespace beaconbox::shim
