// Fakes of everything the shim core talks to, so that Sandbox and TaskService are
// tested in milliseconds without a VM. Named as fakes; the real parts are tested by
// the e2e tests (tests/e2e) with QEMU, virtiofsd and containerd.
//
// - FakeGuestAgent serves vminitd's API -- beaconbox.guest.v1.Guest and
//   containerd.task.v2.Task -- over ttrpc on one end of a socketpair, with an
//   in-memory process table: a process "runs" until it is killed (exit 128+signal),
//   deleted, or told to exit with Exit().
// - FakeVmm implements the VMM side of the seam (sandbox_backends.h): its VMs hand
//   out a new socketpair served by the FakeGuestAgent as their guest channel.
//   (After the plugin ABI v2 merge it becomes a test plugin .so behind the C ABI.)
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

namespace beaconbox::shim::testing {

class FakeGuestAgent {
 public:
  FakeGuestAgent() = default;
  ~FakeGuestAgent();

  // A new connection to the agent: the caller's end of a socketpair.
  Result<UniqueFd> Connect();
  // Ends every connection (the VM went away).
  void Disconnect();

  // Makes a running process exit on its own.
  void Exit(const std::string& id, const std::string& exec_id, uint32_t status);
  // Fails the next call of "Service.Method" (e.g. "Guest.CreateBundle") with `code`.
  void FailNext(const std::string& method, ttrpc::Code code);

  std::vector<std::string> calls() const;  // "Guest.Hello", "Task.Create", ... in order
  std::optional<guestapi::CreateBundleRequest> last_bundle() const;
  std::optional<guestapi::NetworkConfig> network() const;

 private:
  struct Process {
    uint32_t pid = 0;
    bool started = false;
    bool exited = false;
    uint32_t exit_status = 0;
  };
  using ProcessKey = std::pair<std::string, std::string>;  // id, exec id

  void Register(ttrpc::Server& server);
  ttrpc::RpcStatus Record(const std::string& method);  // the failure to inject, if any

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<ProcessKey, Process> processes_;                   // guarded by mutex_
  uint32_t next_pid_ = 100;                                   // guarded by mutex_
  std::vector<std::string> calls_;                            // guarded by mutex_
  std::map<std::string, ttrpc::Code> failures_;               // guarded by mutex_
  std::optional<guestapi::CreateBundleRequest> last_bundle_;  // guarded by mutex_
  std::optional<guestapi::NetworkConfig> network_;            // guarded by mutex_
  std::vector<std::unique_ptr<ttrpc::Server>> servers_;       // guarded by mutex_
  std::vector<std::thread> threads_;                          // guarded by mutex_
  int waiting_handlers_ = 0;  // guarded by mutex_: Wait handlers still using `this`
};

class FakeVmm final : public VmmBackend {
 public:
  explicit FakeVmm(FakeGuestAgent& agent) : agent_(agent) {}

  Result<std::unique_ptr<VmHandle>> CreateVm(const pluginapi::VmSpec& spec) override;
  Status CleanupStale(const pluginapi::VmInfo& info) override;

  bool fail_create = false;
  int live_vms() const { return live_vms_; }
  int created() const { return created_; }
  int cleanups() const { return cleanups_; }
  int pauses() const { return pauses_; }
  std::vector<pluginapi::VmSpec> specs;

 private:
  friend class FakeVm;
  FakeGuestAgent& agent_;
  std::atomic<int> live_vms_{0};
  std::atomic<int> created_{0};
  std::atomic<int> cleanups_{0};
  std::atomic<int> pauses_{0};
};

class FakeStorage final : public StorageBackend {
 public:
  Result<pluginapi::MountPlan> Prepare(const ContainerKey& key,
                                       const pluginapi::StoragePrepareRequest& request) override;
  Status Release(const ContainerKey& key, const std::string& bundle) override;

  std::set<ContainerKey> prepared() const;
  std::string guest_rootfs = "rootfs";
  bool fail_prepare = false;
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
  void Publish(const std::string& topic, const google::protobuf::Message& event) override;
  std::vector<std::string> topics() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> topics_;  // guarded by mutex_
};

}  // namespace beaconbox::shim::testing
