// Task.Create with `checkpoint` (ctr c restore --live; README "Checkpoint and
// restore"): the checkpoint containerd unpacked is input from outside. Everything in
// it is checked here, before anything is made (rootfs, lease, VM): the manifest and
// every file's size and digest (checkpoint_manifest.h), and what the saved VM needs
// against this host (beaconbox, kernel and initrd digests, VMM, memory and hotplug
// maxima; the VMM version is compared by the plugin, which knows its binary). Create
// then boots the VM from the save (VmSpec.restore_dir), connects with the new agent
// token, refreshes the guest's random pool and clock, re-sends the network config of
// the new lease, and adopts the container the guest already runs (AdoptRestoredInit)
// under containerd's new id, which may differ from the guest's (Options.guest_id).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "common/base/file_util.h"
#include "host/shim/sandbox.h"

namespace beaconbox::shim {

Result<CheckpointManifest> Sandbox::ValidateRestore(const ContainerKey& key,
                                                    const task::CreateTaskRequest& request) {
  const std::string& dir = request.checkpoint();
  if (dir.empty() || dir[0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument,
                     "restore needs an absolute checkpoint directory, got '" +
                         PrintableOneLine(dir.substr(0, 200)) + "'");
  }
  if (vm_ != nullptr) {
    return MakeError(ErrorCode::kNotImplemented,
                     "restoring " + key.id + " into the running VM of " + options_.key.id +
                         " (a pod's shared VM) is not implemented: a checkpoint restores a VM");
  }
  CheckpointHost host;
  host.beaconbox_version = BEACONBOX_VERSION;
  BBX_ASSIGN_OR_RETURN(host.kernel_sha256, Sha256OfFile(backends_.vm.kernel_path));
  BBX_ASSIGN_OR_RETURN(host.initrd_sha256, Sha256OfFile(backends_.vm.initrd_path));
  host.vmm = backends_.vm.vmm_plugin;
  // The most a VM boots with here (vm_sizing.h caps a container's size at these).
  host.max_memory_mib = std::max(backends_.vm.max_memory_mib, backends_.vm.memory_mib);
  host.compare_shape = true;
  host.config_max_vcpus = backends_.vm.max_vcpus;
  host.config_max_memory_mib = backends_.vm.max_memory_mib;
  const auto started = std::chrono::steady_clock::now();
  auto manifest = ValidateCheckpointDir(dir, host);
  if (!manifest.ok()) return manifest.error().Wrap("restore of " + key.id);
  if (manifest->terminal != request.terminal()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "restore of " + key.id + ": the checkpointed process " +
                         (manifest->terminal ? "has" : "has no") +
                         " terminal and the restore asks for " +
                         (request.terminal() ? "one" : "none") + "; restore with the same -t");
  }
  restore_dir_ = dir;
  uint64_t bytes = 0;
  for (const auto& file : manifest->files) bytes += file.size;
  spdlog::info(
      "restoring {} from the checkpoint of {} (container {} in the guest) in {}: {} MiB "
      "validated in {} ms",
      key.ToString(), PrintableOneLine(manifest->container_id), manifest->guest_container_id, dir,
      bytes >> 20,
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                            started)
          .count());
  return manifest;
}

Result<uint32_t> Sandbox::AdoptRestoredInit(GuestClient& guest, const ContainerKey& key,
                                            const task::CreateTaskRequest& request) {
  const CheckpointManifest& manifest = *restore_;
  task::StateRequest state_request;
  state_request.set_id(manifest.guest_container_id);
  task::StateResponse state;
  Status asked = guest.CallTask("State", state_request, &state, backends_.vm.guest_call_timeout);
  if (!asked.ok()) {
    return asked.error().Wrap("restore of " + key.id + ": the restored guest does not know " +
                              "container " + manifest.guest_container_id);
  }
  // The guest's answer is untrusted: only its state decides, the pid is logged.
  if (state.status() != ::containerd::v1::types::RUNNING &&
      state.status() != ::containerd::v1::types::PAUSED) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "restore of " + key.id + ": container " + manifest.guest_container_id +
                         " is not running in the restored guest (state " +
                         std::to_string(static_cast<int>(state.status())) +
                         "); take the checkpoint of a running task");
  }
  // containerd's new stdio relays the guest process's streams from now on; a stream
  // the process never had stays closed.
  const bool given[] = {!request.stdin().empty(), !request.stdout().empty(),
                        !request.stderr().empty()};
  const bool had[] = {manifest.has_stdin, manifest.has_stdout, manifest.has_stderr};
  const char* names[] = {"stdin", "stdout", "stderr"};
  for (int i = 0; i < 3; ++i) {
    if (given[i] != had[i]) {
      spdlog::warn("restore of {}: the checkpointed process {} {}, the restore {} one",
                   key.ToString(), had[i] ? "has" : "has no", names[i],
                   given[i] ? "gives" : "gives no");
    }
  }
  const uint32_t guest_pid = static_cast<uint32_t>(manifest.guest_pid);
  if (state.pid() != guest_pid) {
    spdlog::warn("restore of {}: the guest reports pid {} for its init, the checkpoint {}",
                 key.ToString(), state.pid(), guest_pid);
  }
  return guest_pid;
}

}  // namespace beaconbox::shim
