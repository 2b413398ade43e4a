// Task.Checkpoint: a VM-level checkpoint (README "Checkpoint and restore"). What cannot
// be saved is refused with one line before the VM is touched; then the VM is paused,
// saved by the VMM plugin (VmHandle::SaveVm) into containerd's directory, the manifest
// (checkpoint_manifest.h) written beside the state, and the VM resumed, unless the
// task was paused before (it stays paused) or `exit` was asked (the init is killed, as
// runc's shim lets CRIU end the container: containerd sees the task exit).
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "common/base/file_util.h"
#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"
#include "host/shim/checkpoint_manifest.h"
#include "host/shim/sandbox.h"
#include "host/shim/translate.h"

namespace beaconbox::shim {

namespace {

// containerd sends containerd.runc.v1.CheckpointOptions (ctr: --exit, --image-path,
// --work-path); anything else, or nothing, means the defaults.
bool ExitAfterCheckpoint(const task::CheckpointTaskRequest& request) {
  if (!request.has_options()) return false;
  containerd::runc::v1::CheckpointOptions options;
  // Not Any::UnpackTo: containerd's type URL is the bare message name (translate.h).
  if (!EndsWithTypeName(request.options().type_url(), options.GetTypeName()) ||
      !options.ParseFromString(request.options().value())) {
    return false;
  }
  return options.exit();
}

}  // namespace

Status Sandbox::CheckpointContainer(const ContainerKey& key,
                                    const task::CheckpointTaskRequest& request) {
  BBX_ASSIGN_OR_RETURN(auto container, Find(key));
  if (request.path().empty() || request.path()[0] != '/') {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "Checkpoint needs an absolute path for the checkpoint files, got '" + request.path() + "'");
  }
  const bool exit = ExitAfterCheckpoint(request);
  bool was_paused = false;
  uint64_t saved_bytes = 0;
  const auto started = std::chrono::steady_clock::now();
  {
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
    // Pause and Resume of the VM take lifecycle_mutex_ too: none runs meanwhile.
    BBX_ASSIGN_OR_RETURN(ProcessView init, container->State(""));
    if (init.state != ProcessState::kRunning && init.state != ProcessState::kPaused) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "checkpoint of " + key.id + " needs a running or paused task");
    }
    was_paused = init.state == ProcessState::kPaused;
    // The host's inputs first: nothing is paused when one is unreadable.
    CheckpointManifest manifest;
    manifest.beaconbox_version = BEACONBOX_VERSION;
    BBX_ASSIGN_OR_RETURN(manifest.kernel_sha256, Sha256OfFile(backends_.vm.kernel_path));
    BBX_ASSIGN_OR_RETURN(manifest.initrd_sha256, Sha256OfFile(backends_.vm.initrd_path));
    manifest.vmm = backends_.vm.vmm_plugin;
    if (vm_size_ != boot_size_) {
      // The restored VM boots with the saved VM's command line: hot-added vCPUs and
      // memory would be missing from it.
      return MakeError(ErrorCode::kNotImplemented,
                       "checkpoint of a VM grown by Task.Update (hot-added vCPUs or memory) is "
                       "not implemented");
    }
    manifest.memory_mib = vm_size_.memory_mib;
    manifest.vcpus = vm_size_.vcpus;
    manifest.max_vcpus = std::max<uint64_t>(backends_.vm.max_vcpus, vm_size_.vcpus);
    manifest.max_memory_mib = std::max<uint64_t>(backends_.vm.max_memory_mib, vm_size_.memory_mib);
    // What restore adopts (sandbox_restore.cc).
    manifest.container_namespace = key.namespace_name;
    manifest.container_id = key.id;
    manifest.guest_container_id = container->guest_id();
    manifest.guest_pid = container->InitGuestPid();
    const StdioPaths stdio = container->InitStdio();
    manifest.has_stdin = !stdio.stdin_path.empty();
    manifest.has_stdout = !stdio.stdout_path.empty();
    manifest.has_stderr = !stdio.stderr_path.empty();
    manifest.terminal = stdio.terminal;

    if (!was_paused) BBX_RETURN_IF_ERROR(vm_->Pause());
    auto resume = [&](Error error) -> Error {
      if (!was_paused) {
        if (Status resumed = vm_->Resume(); !resumed.ok()) {
          spdlog::warn("resuming {} after a failed checkpoint: {}", key.ToString(),
                       resumed.error().message);
        }
      }
      return error.Wrap("checkpoint of " + key.id);
    };
    auto saved = vm_->SaveVm(request.path());
    if (!saved.ok()) return resume(saved.error());
    manifest.vmm_version = saved->vmm_version();
    {
      // Still paused: the guest has seen no id from here on.
      std::lock_guard lock(mutex_);
      if (guest_) manifest.guest_stream_id = guest_->connection().next_stream_id();
    }
    for (const auto& name : saved->files()) {
      auto file = DescribeCheckpointFile(request.path(), name);
      if (!file.ok()) return resume(file.error());
      saved_bytes += file->size;
      manifest.files.push_back(std::move(file).value());
    }
    // Read back as restore will, so a save the restore would refuse fails here.
    if (auto parsed = ParseCheckpointManifest(FormatCheckpointManifest(manifest)); !parsed.ok()) {
      return resume(parsed.error());
    }
    if (Status written = WriteFileAtomic(request.path() + "/" + kCheckpointManifestName,
                                         FormatCheckpointManifest(manifest), 0600);
        !written.ok()) {
      return resume(written.error());
    }
    if (!was_paused || exit) BBX_RETURN_IF_ERROR(vm_->Resume());
  }
  const auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - started)
                              .count();
  spdlog::info("checkpoint of {} written to {} ({} MiB in {} ms){}", key.ToString(), request.path(),
               saved_bytes >> 20, elapsed_ms,
               exit ? "; the task exits" : (was_paused ? "; the task stays paused" : ""));
  // The VM runs again; with exit the init ends and containerd sees its TaskExit.
  if (exit) return container->Kill("", SIGKILL, /*all=*/true);
  return Status::Ok();
}

}  // namespace beaconbox::shim
