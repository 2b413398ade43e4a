// Task.Update: a container's new cgroup limits, growing its VM first when they need
// more vCPUs or memory than it has (vm_sizing.h). Shrinking never shrinks the VM:
// only the cgroup limits go down.
#include <spdlog/spdlog.h>

#include "host/shim/sandbox.h"

namespace beaconbox::shim {
namespace {

long MsSince(std::chrono::steady_clock::time_point start) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count());
}

}  // namespace

Status Sandbox::UpdateContainer(const ContainerKey& key, const task::UpdateTaskRequest& request) {
  std::lock_guard lifecycle(lifecycle_mutex_);
  BBX_RETURN_IF_ERROR(Find(key));
  if (request.resources().value().empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "update of " + key.id + " carries no resources: give the new limits");
  }
  BBX_ASSIGN_OR_RETURN(ContainerResources resources,
                       ParseLinuxResources(request.resources().value()));
  BBX_ASSIGN_OR_RETURN(VmSize grown, GrownSizeFor(resources, vm_size_, backends_.vm));
  std::shared_ptr<GuestClient> guest;
  {
    std::lock_guard lock(mutex_);
    guest = guest_;
  }
  if (!vm_ || !guest) return MakeError(ErrorCode::kFailedPrecondition, "the sandbox has no VM");

  // One resource at a time, so that vm_size_ stays what the VM really has.
  const VmSize before = vm_size_;
  auto grow = [&](const char* what, uint32_t vcpus, uint64_t memory_mib) -> Status {
    const auto started = std::chrono::steady_clock::now();
    Status resized = vm_->Resize(vcpus, memory_mib);
    if (resized.ok()) {
      if (vcpus != 0) vm_size_.vcpus = vcpus;
      if (memory_mib != 0) vm_size_.memory_mib = memory_mib;
      spdlog::info("VM {}: {} hot-added in {} ms (now {} vCPUs, {} MiB)", options_.key.ToString(),
                   what, MsSince(started), vm_size_.vcpus, vm_size_.memory_mib);
      return resized;
    }
    if (resized.error().code == ErrorCode::kNotImplemented) {
      // The limits still apply, within the VM as it is.
      spdlog::warn("VM {} stays at {} vCPUs, {} MiB ({}): the new limits apply within it",
                   options_.key.ToString(), vm_size_.vcpus, vm_size_.memory_mib,
                   resized.error().message);
      return Status::Ok();
    }
    return resized.error().Wrap(std::string("hot-adding ") + what + " to the VM of " + key.id);
  };
  if (grown.vcpus > before.vcpus) BBX_RETURN_IF_ERROR(grow("vCPUs", grown.vcpus, 0));
  if (grown.memory_mib > before.memory_mib) {
    BBX_RETURN_IF_ERROR(grow("memory", 0, grown.memory_mib));
  }

  // The guest onlines what was added (it waits for the sizes the annotations give),
  // then applies the limits to the container's cgroup.
  const auto started = std::chrono::steady_clock::now();
  task::UpdateTaskRequest guest_request;
  guest_request.set_id(key.id);
  *guest_request.mutable_resources() = request.resources();
  (*guest_request.mutable_annotations())[kVcpusAnnotation] = std::to_string(vm_size_.vcpus);
  (*guest_request.mutable_annotations())[kMemoryAnnotation] = std::to_string(vm_size_.memory_mib);
  google::protobuf::Empty empty;
  BBX_RETURN_IF_ERROR(
      guest->CallTask("Update", guest_request, &empty, backends_.vm.guest_call_timeout));
  spdlog::info("container {} updated: guest online and cgroup update {} ms", key.ToString(),
               MsSince(started));
  return Status::Ok();
}

}  // namespace beaconbox::shim
