// A sandbox is one VM and everything around it: the VM from the VMM backend, the
// network attachment, each container's rootfs from the storage backend, the guest
// agent connection, and the containers running in the VM (keyed by namespace and id;
// one, or a CRI pod's containers: pod_grouping.h). What it asked the
// backends for is recorded step by step in one state file (sandbox_state.h), and
// teardown -- here or in the `delete` action after a dead shim -- runs from it.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "host/shim/checkpoint_manifest.h"
#include "host/shim/container.h"
#include "host/shim/event_publisher.h"
#include "host/shim/port_forward.h"
#include "host/shim/runtime_layout.h"
#include "host/shim/sandbox_backends.h"
#include "host/shim/sandbox_state.h"
#include "host/shim/vm_sizing.h"

namespace beaconbox::shim {

// The steps of creating a container, in order; the state file is saved before and
// after each plugin call, and the test hook may run after each step. The middle four
// happen only for the first container of a sandbox (the one that boots the VM), the
// network ones only with a network backend.
inline constexpr std::array<std::string_view, 7> kCreateSteps = {
    "rootfs-prepared",          "network-attached", "vm-created",  "guest-connected",
    "guest-network-configured", "bundle-created",   "task-created"};

// Called after each step of Create with the step's name and the container's OCI
// annotations (test_hooks.h). Null in production unless the test hooks are enabled.
using AfterStepHook =
    std::function<void(std::string_view step, const std::map<std::string, std::string>&)>;

struct SandboxOptions {
  ContainerKey key;    // the sandbox: namespace and the id of its first container
  std::string bundle;  // the first container's bundle
  AfterStepHook after_step;
  // The state file (sandbox_state.h): RuntimeLayout::SandboxStatePath under the state
  // dir, where the `delete` action finds it without the bundle; "" puts it in the
  // bundle (RuntimeLayout::StateFilePath), as a shim without a state_dir does.
  std::string state_path;
};

class Sandbox {
 public:
  // `load_status` is the error of loading the plugins when that failed (then the
  // backends are null); Create reports it to containerd.
  Sandbox(SandboxBackends backends, Status load_status, RuntimeLayout layout, EventSink& events,
          SandboxOptions options);
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  // Creates `key`'s container from containerd's request, booting the VM first if this
  // is the sandbox's first container. Returns the init pid. On failure, everything
  // this call made is released.
  Result<std::shared_ptr<Container>> CreateContainer(const ContainerKey& key,
                                                     const task::CreateTaskRequest& request);
  Result<std::shared_ptr<Container>> Find(const ContainerKey& key) const;
  // Task.Delete of an init process: the container, its rootfs, and with the last
  // container the VM and everything else go.
  Result<ExitInfo> DeleteContainer(const ContainerKey& key);
  // Task.Update (sandbox_update.cc): new cgroup limits for `key`'s container, from the
  // OCI LinuxResources in `request`; grows the VM first (hot-added vCPUs and memory,
  // vm_sizing.h) when the limits need it and the VMM can.
  Status UpdateContainer(const ContainerKey& key, const task::UpdateTaskRequest& request);
  // Task.Checkpoint (sandbox_checkpoint.cc): a VM-level checkpoint of `key`'s VM into
  // request.path(). Refuses what cannot be saved (a virtio-fs device, a VM shared by a
  // pod) with one line; the save itself is VmHandle::SaveVm.
  Status CheckpointContainer(const ContainerKey& key, const task::CheckpointTaskRequest& request);
  bool empty() const;

  // Releases the VM and everything recorded for it; every container ends. Idempotent.
  void Teardown();

  const std::string& state_path() const { return state_path_; }

 private:
  Status BootVm(const pluginapi::MountPlan& plan,
                const std::map<std::string, std::string>& annotations,
                const std::string& netns_path);  // requires lifecycle_mutex_
  Status ConnectGuest();                         // requires lifecycle_mutex_
  // Restore (sandbox_restore.cc): the checkpoint of `request` read and checked against
  // this host and this sandbox before anything is made (one line per refusal); sets
  // restore_dir_.
  Result<CheckpointManifest> ValidateRestore(
      const ContainerKey& key,
      const task::CreateTaskRequest& request);  // requires lifecycle_mutex_
  // The restored guest's container (restore_): it must exist there and run; returns its
  // init's guest pid.
  Result<uint32_t> AdoptRestoredInit(GuestClient& guest, const ContainerKey& key,
                                     const task::CreateTaskRequest& request);
  // kNotImplemented when a further container's plan needs devices the VM lacks.
  // The size the VM must grow to when `key`'s container has `resources` beside the
  // other containers in it (their limits added, vm_sizing.h); one line naming the
  // container when they do not fit.
  Result<VmSize> GrownSizeWith(
      const ContainerKey& key,
      const ContainerResources& resources) const;  // requires lifecycle_mutex_
  // Hot-adds what `grown` has beyond vm_size_ (vCPUs, then memory) through the VMM;
  // a VMM that cannot resize leaves the VM as it is (one warning).
  Status GrowVm(VmSize grown, const std::string& for_whom);  // requires lifecycle_mutex_
  Status CheckJoinsRunningVm(const ContainerKey& key, const pluginapi::MountPlan& plan);
  // kFailedPrecondition when `key` started the VM and other containers still run in it.
  Status CheckDeletesLast(const ContainerKey& key) const;
  Status SaveState();  // requires lifecycle_mutex_
  void Reached(std::string_view step, const std::map<std::string, std::string>& annotations);
  void TeardownLocked();  // requires lifecycle_mutex_
  // CRI port-forward's relay for a pod sandbox (port_forward.h); requires
  // lifecycle_mutex_.
  void StartPortForward(const std::map<std::string, std::string>& annotations,
                        const std::string& netns_path);
  void ReleaseContainer(const ContainerKey& key);        // requires lifecycle_mutex_
  Status PauseFor(const ContainerKey& key, bool pause);  // Container::PauseFunction
  void StopVm(const std::string& why);                   // Container::StopVmFunction
  uint32_t HostPid() const;                              // requires lifecycle_mutex_

  const SandboxBackends backends_;
  const Status load_status_;
  const RuntimeLayout layout_;
  EventSink& events_;
  const SandboxOptions options_;
  const std::string state_path_;

  // Serializes what changes the set of resources: Create, Delete, Teardown, and VM
  // pause/resume. Taken before mutex_, never while a Container's lock is held.
  mutable std::mutex lifecycle_mutex_;
  SandboxRecord record_;                                    // guarded by lifecycle_mutex_
  std::unique_ptr<VmHandle> vm_;                            // guarded by lifecycle_mutex_
  std::optional<pluginapi::NetworkAttachment> attachment_;  // guarded by lifecycle_mutex_
  std::unique_ptr<PortForwardRelay> port_forward_;          // guarded by lifecycle_mutex_
  long vmm_start_ms_ = 0;                                   // guarded by lifecycle_mutex_
  VmSize vm_size_;    // the VM's vCPUs and memory now; guarded by lifecycle_mutex_
  VmSize boot_size_;  // what it booted with (a checkpoint needs both equal); same guard
  // Each container's limits (its spec's, then its updates'), which the VM holds
  // together; guarded by lifecycle_mutex_.
  std::map<ContainerKey, ContainerResources> container_resources_;
  // The guest's pid of the first container's init (untrusted: only ever written into
  // a guest spec, where a pod's app container joins its namespaces by it); guarded
  // by lifecycle_mutex_.
  uint32_t first_guest_pid_ = 0;
  // Set while Create restores a checkpoint (its manifest, validated, and directory);
  // guarded by lifecycle_mutex_.
  std::optional<CheckpointManifest> restore_;
  std::string restore_dir_;
  // The storage devices the VM booted with (a joining container may reuse a share).
  std::vector<pluginapi::Device> boot_devices_;
  // Set when Kill stopped the VM: no container is created in it any more.
  std::string vm_stopped_because_;  // guarded by lifecycle_mutex_

  mutable std::mutex mutex_;
  std::shared_ptr<GuestClient> guest_;  // guarded by mutex_ (the client itself is thread-safe)
  std::map<ContainerKey, std::shared_ptr<Container>> containers_;  // guarded by mutex_
};

}  // namespace beaconbox::shim
