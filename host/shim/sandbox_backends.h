// What a Sandbox needs from the VMM, storage and network plugins, and nothing more.
// The shim core sees only these interfaces: plugin_backends.h implements them over the
// plugin host (the C ABI), the unit tests over in-process fakes. Every per-container
// call names the container by namespace and id.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "beaconbox/plugin/v1/network.pb.h"
#include "beaconbox/plugin/v1/storage.pb.h"
#include "beaconbox/plugin/v1/vmm.pb.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "host/shim/runtime_layout.h"

namespace beaconbox::shim {

// The plugin messages the shim core speaks; one alias, so that a new message
// version changes one line.
namespace pluginapi = ::beaconbox::plugin::v1;

// One running VM, owned: destroying the handle releases the VMM's resources for it.
class VmHandle {
 public:
  virtual ~VmHandle() = default;
  // The caller owns the returned stream; every byte read from it is untrusted.
  virtual Result<UniqueFd> ConnectGuest(std::chrono::milliseconds timeout) = 0;
  virtual Result<pluginapi::VmInfo> Info() = 0;
  virtual Status Stop(std::chrono::milliseconds timeout) = 0;
  virtual Status Pause() = 0;
  virtual Status Resume() = 0;
  // Grows the VM to `vcpus` and `memory_mib` (0: unchanged), hot-adding vCPUs and
  // memory; the guest onlines them. kNotImplemented when the VMM cannot.
  virtual Status Resize(uint32_t vcpus, uint64_t memory_mib) {
    (void)vcpus;
    (void)memory_mib;
    return MakeError(ErrorCode::kNotImplemented, "this VMM cannot resize a running VM");
  }
  // Saves the paused VM (memory and device state) into the directory `dir` and returns
  // the names of the files written there (checkpoint_manifest.h lists them) and the
  // VMM's version. The VM stays paused. kNotImplemented when the VMM cannot.
  virtual Result<pluginapi::VmSaved> SaveVm(const std::string& dir) {
    (void)dir;
    return MakeError(ErrorCode::kNotImplemented,
                     "this VMM cannot save a running VM (no vm_save, "
                     "see Capabilities.save)");
  }
  // The token the guest agent requires with every call (VmSpec.agent_token, see
  // common/base/agent_token.h); empty for fakes whose agent requires none.
  virtual std::string AgentToken() const { return ""; }
};

class VmmBackend {
 public:
  virtual ~VmmBackend() = default;
  virtual Result<std::unique_ptr<VmHandle>> CreateVm(const pluginapi::VmSpec& spec) = 0;
  // Ends what a VM described by `info` left behind (its processes, lock files) when
  // no handle to it exists any more. Idempotent.
  virtual Status CleanupStale(const pluginapi::VmInfo& info) = 0;
};

class StorageBackend {
 public:
  virtual ~StorageBackend() = default;
  virtual Result<pluginapi::MountPlan> Prepare(const ContainerKey& key,
                                               const pluginapi::StoragePrepareRequest& request) = 0;
  // Idempotent: releasing what was never prepared succeeds.
  virtual Status Release(const ContainerKey& key, const std::string& bundle) = 0;
};

class NetworkBackend {
 public:
  virtual ~NetworkBackend() = default;
  virtual Result<pluginapi::NetworkAttachment> Attach(
      const ContainerKey& key, const pluginapi::NetworkAttachRequest& request) = 0;
  // Idempotent: detaching what was never attached succeeds.
  virtual Status Detach(const ContainerKey& key) = 0;
};

// The VM settings of the configuration, copied out of it so that the shim core does
// not depend on the configuration's layout.
struct VmSettings {
  std::string vmm_plugin;  // the config's vmm (a checkpoint manifest names it)
  std::string kernel_path;
  std::string initrd_path;
  std::string kernel_cmdline;
  uint32_t vcpus = 1;
  uint32_t max_vcpus = 0;
  uint64_t memory_mib = 512;
  uint64_t max_memory_mib = 0;
  uint64_t guest_overhead_mib = 0;  // vm.guest_overhead_mib (vm_sizing.h)
  std::chrono::milliseconds guest_connect_timeout{60000};
  std::chrono::milliseconds guest_call_timeout{60000};  // vm.guest_call_timeout_ms
  std::chrono::milliseconds kill_timeout{5000};         // vm.kill_timeout_ms
};

// Not owned; they outlive every Sandbox using them.
struct SandboxBackends {
  VmmBackend* vmm = nullptr;
  StorageBackend* storage = nullptr;
  NetworkBackend* network = nullptr;  // null: no network (network.mode = "none")
  VmSettings vm;
};

}  // namespace beaconbox::shim
