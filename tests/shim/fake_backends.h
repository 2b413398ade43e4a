// Fakes of everything the shim core talks to, so that Sandbox and TaskService are
// tested in milliseconds without a VM. Named as fakes; the real parts are tested by
// the e2e tests (tests/e2e) with QEMU, virtiofsd and containerd.
//
// - FakeGuestAgent (fake_guest_agent.h) serves vminitd's API on a socketpair.
// - FakeVmm implements the VMM side of the seam (sandbox_backends.h): its VMs hand
//   out a new socketpair served by the FakeGuestAgent as their guest channel. The
//   same agent also runs behind the C ABI in the fake VMM plugin .so
//   (fake_vmm_plugin/, shim_plugin_test); this in-process one stays for the fault
//   injection a config key cannot express (failing one call mid-test, exits on cue).
// - FakeStorage and FakeNetwork keep what is prepared / attached, keyed by namespace
//   and id, so a test sees what a teardown left behind.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/ttrpc/ttrpc.h"
#include "host/shim/event_publisher.h"
#include "host/shim/sandbox_backends.h"
#include "host/shim/translate.h"
#include "tests/shim/fake_guest_agent.h"

namespace beaconbox::shim::testing {

class FakeVmm final : public VmmBackend {
 public:
  explicit FakeVmm(FakeGuestAgent& agent) : agent_(agent) {}

  Result<std::unique_ptr<VmHandle>> CreateVm(const pluginapi::VmSpec& spec) override;
  Status CleanupStale(const pluginapi::VmInfo& info) override;

  bool fail_create = false;
  int64_t vmm_pid = 424242;  // VmInfo.vmm_pid of its VMs (no such process is touched)
  // VmInfo.restored_from_template of its VMs.
  bool restored_from_template = false;
  int live_vms() const { return live_vms_; }
  int stops() const { return stops_; }  // VmHandle::Stop calls
  int created() const { return created_; }
  int cleanups() const { return cleanups_; }
  int pauses() const { return pauses_; }
  int resumes() const { return resumes_; }
  // VmHandle::SaveVm writes a FAKE vm.state when `can_save`, else answers as a VMM
  // without vm_save.
  bool can_save = false;
  std::vector<pluginapi::VmSpec> specs;
  // VmHandle::Resize: recorded (vcpus, memory_mib) when `can_resize`, else
  // kNotImplemented as from a VMM that cannot.
  bool can_resize = true;
  std::vector<std::pair<uint32_t, uint64_t>> resizes() const;

 private:
  friend class FakeVm;
  FakeGuestAgent& agent_;
  std::atomic<int> live_vms_{0};
  std::atomic<int> created_{0};
  std::atomic<int> cleanups_{0};
  std::atomic<int> pauses_{0};
  std::atomic<int> resumes_{0};
  std::atomic<int> stops_{0};
  mutable std::mutex resize_mutex_;
  std::vector<std::pair<uint32_t, uint64_t>> resizes_;  // guarded by resize_mutex_
};

class FakeStorage final : public StorageBackend {
 public:
  Result<pluginapi::MountPlan> Prepare(const ContainerKey& key,
                                       const pluginapi::StoragePrepareRequest& request) override;
  Status Release(const ContainerKey& key, const std::string& bundle) override;

  std::set<ContainerKey> prepared() const;
  std::string guest_rootfs = "rootfs";
  bool fail_prepare = false;
  // false: plans with guest mounts only, as from a storage plugin whose container
  // needs nothing added to a running VM.
  bool plan_devices = true;
  // Also in every plan: the VM's share, the same for each container of the VM
  // (storage-erofs' pod shares: tag "volumes", <vm_run_dir>/volumes), and a disk of the
  // container's own ("scratch-<id>", as its scratch disk).
  bool plan_vm_share = false;
  bool plan_disk = false;
  std::vector<pluginapi::StoragePrepareRequest> requests;

 private:
  mutable std::mutex mutex_;
  std::set<ContainerKey> prepared_;  // guarded by mutex_
};

class FakeNetwork final : public NetworkBackend {
 public:
  Result<pluginapi::NetworkAttachment> Attach(
      const ContainerKey& key, const pluginapi::NetworkAttachRequest& request) override;
  Status Detach(const ContainerKey& key) override;

  std::set<ContainerKey> attached() const;

 private:
  mutable std::mutex mutex_;
  std::set<ContainerKey> attached_;  // guarded by mutex_
};

// A new directory on tmpfs (/dev/shm) when there is one, else under /tmp: the state
// file is fsynced at every step, which tmpfs makes free. "" on failure.
std::string MakeTestDir(const std::string& name);

// Keeps every published event's topic, in order.
class RecordingEvents final : public EventSink {
 public:
  void Publish(const std::string& topic, const google::protobuf::MessageLite& event) override;
  std::vector<std::string> topics() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> topics_;  // guarded by mutex_
};

}  // namespace beaconbox::shim::testing
