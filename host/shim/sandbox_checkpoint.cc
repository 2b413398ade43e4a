// Task.Checkpoint: a VM-level checkpoint (README "Checkpoint and restore"). What cannot
// be saved is refused with one line before the VM is touched.
#include "host/shim/sandbox.h"

namespace beaconbox::shim {

Status Sandbox::CheckpointContainer(const ContainerKey& key,
                                    const task::CheckpointTaskRequest& request) {
  BBX_ASSIGN_OR_RETURN(auto container, Find(key));
  (void)container;
  if (request.path().empty() || request.path()[0] != '/') {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "Checkpoint needs an absolute path for the checkpoint files, got '" + request.path() + "'");
  }
  std::lock_guard lifecycle(lifecycle_mutex_);
  if (!vm_) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "container " + key.id + " has no running VM to checkpoint");
  }
  for (const auto& device : boot_devices_) {
    if (device.has_share()) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "checkpoint needs storage.driver = erofs (transport blk) and no volumes: "
                       "QEMU 7.2 cannot migrate vhost-user-fs");
    }
  }
  {
    std::lock_guard lock(mutex_);
    if (containers_.size() > 1) {
      return MakeError(ErrorCode::kNotImplemented,
                       "checkpoint of one container of a pod's shared VM is not implemented");
    }
  }
  auto files = vm_->SaveState(request.path());
  if (!files.ok()) return files.error().Wrap("checkpoint of " + key.id);
  // Writing the manifest and resuming come with the first VMM that saves (issue 19).
  return MakeError(ErrorCode::kNotImplemented,
                   "checkpoint of " + key.id + ": the manifest step is not implemented");
}

}  // namespace beaconbox::shim
