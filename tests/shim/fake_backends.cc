#include "tests/shim/fake_backends.h"

#include <stdlib.h>
#include <sys/socket.h>

#include "common/base/file_util.h"

namespace beaconbox::shim::testing {
// ------------------------------------------------------------------------ FakeVmm

class FakeVm final : public VmHandle {
 public:
  FakeVm(FakeVmm& vmm, FakeGuestAgent& agent) : vmm_(vmm), agent_(agent) { ++vmm_.live_vms_; }
  ~FakeVm() override {
    agent_.Disconnect();
    --vmm_.live_vms_;
  }
  Result<UniqueFd> ConnectGuest(std::chrono::milliseconds) override { return agent_.Connect(); }
  Result<pluginapi::VmInfo> Info() override {
    pluginapi::VmInfo info;
    info.set_id("fake");
    info.add_pids(999999);
    info.set_vmm_pid(vmm_.vmm_pid);
    info.set_accelerator("fake");
    info.set_restored_from_template(vmm_.restored_from_template);
    return info;
  }
  Status Stop(std::chrono::milliseconds) override {
    ++vmm_.stops_;
    agent_.Disconnect();
    return Status::Ok();
  }
  Status Pause() override {
    ++vmm_.pauses_;
    return Status::Ok();
  }
  Status Resume() override {
    ++vmm_.resumes_;
    return Status::Ok();
  }
  // A FAKE save: one small file, no VM state in it.
  Result<pluginapi::VmSaved> SaveVm(const std::string& dir) override {
    if (!vmm_.can_save) return VmHandle::SaveVm(dir);
    BBX_RETURN_IF_ERROR(WriteFileAtomic(dir + "/vm.state", "FAKE saved VM", 0600));
    agent_.SaveProcesses();
    pluginapi::VmSaved saved;
    saved.add_files("vm.state");
    saved.set_vmm_version("FAKE VMM 1");
    return saved;
  }
  Status Resize(uint32_t vcpus, uint64_t memory_mib) override {
    if (!vmm_.can_resize) {
      return MakeError(ErrorCode::kNotImplemented, "FAKE: this VMM cannot resize");
    }
    std::lock_guard lock(vmm_.resize_mutex_);
    vmm_.resizes_.emplace_back(vcpus, memory_mib);
    return Status::Ok();
  }

 private:
  FakeVmm& vmm_;
  FakeGuestAgent& agent_;
};

Result<std::unique_ptr<VmHandle>> FakeVmm::CreateVm(const pluginapi::VmSpec& spec) {
  specs.push_back(spec);
  if (fail_create) return MakeError(ErrorCode::kUnavailable, "fake VMM: create refused");
  if (!spec.restore_dir().empty()) {
    // As a plugin must: refuse without save support or with another VMM version,
    // before loading anything.
    if (!can_save) return MakeError(ErrorCode::kNotImplemented, "FAKE: this VMM cannot restore");
    if (spec.restore_vmm_version() != "FAKE VMM 1") {
      return MakeError(ErrorCode::kInvalidArgument,
                       "FAKE: saved by '" + spec.restore_vmm_version() + "', this is FAKE VMM 1");
    }
    agent_.LoadSavedProcesses();  // the guest runs what it ran when saved
  }
  ++created_;
  return std::unique_ptr<VmHandle>(std::make_unique<FakeVm>(*this, agent_));
}

std::vector<std::pair<uint32_t, uint64_t>> FakeVmm::resizes() const {
  std::lock_guard lock(resize_mutex_);
  return resizes_;
}

Status FakeVmm::CleanupStale(const pluginapi::VmInfo&) {
  ++cleanups_;
  return Status::Ok();
}

// -------------------------------------------------------------- storage, network

Result<pluginapi::MountPlan> FakeStorage::Prepare(const ContainerKey& key,
                                                  const pluginapi::StoragePrepareRequest& request) {
  std::lock_guard lock(mutex_);
  requests.push_back(request);
  if (fail_prepare) return MakeError(ErrorCode::kUnavailable, "fake storage: prepare refused");
  prepared_.insert(key);
  pluginapi::MountPlan plan;
  if (plan_devices) {
    auto* share = plan.add_devices()->mutable_share();
    share->set_tag("rootfs-" + key.id);
    share->set_host_path(request.bundle() + "/rootfs");
  }
  if (plan_vm_share) {
    auto* share = plan.add_devices()->mutable_share();
    share->set_tag("volumes");
    share->set_host_path(request.vm_run_dir() + "/volumes");
  }
  if (plan_disk) {
    auto* disk = plan.add_devices()->mutable_block();
    disk->set_id("scratch-" + key.id);
    disk->set_host_path(request.vm_run_dir() + "/scratch-" + key.id + ".ext4");
  }
  auto* mount = plan.add_guest_mounts();
  mount->set_type("virtiofs");
  mount->set_source("rootfs-" + key.id);
  plan.set_guest_rootfs(guest_rootfs);
  return plan;
}

Status FakeStorage::Release(const ContainerKey& key, const std::string&) {
  std::lock_guard lock(mutex_);
  prepared_.erase(key);
  return Status::Ok();
}

std::set<ContainerKey> FakeStorage::prepared() const {
  std::lock_guard lock(mutex_);
  return prepared_;
}

Result<pluginapi::NetworkAttachment> FakeNetwork::Attach(const ContainerKey& key,
                                                         const pluginapi::NetworkAttachRequest&) {
  std::lock_guard lock(mutex_);
  attached_.insert(key);
  pluginapi::NetworkAttachment attachment;
  attachment.set_tap_name("tapfake0");
  attachment.set_mac("02:00:00:00:00:01");
  attachment.set_mtu(1500);
  auto* address = attachment.add_addresses();
  address->set_address("10.88.0.2");
  address->set_prefix_length(16);
  auto* route = attachment.add_routes();
  route->set_destination("0.0.0.0/0");
  route->set_gateway("10.88.0.1");
  attachment.add_dns_servers("10.88.0.1");
  return attachment;
}

Status FakeNetwork::Detach(const ContainerKey& key) {
  std::lock_guard lock(mutex_);
  attached_.erase(key);
  return Status::Ok();
}

std::set<ContainerKey> FakeNetwork::attached() const {
  std::lock_guard lock(mutex_);
  return attached_;
}

std::string MakeTestDir(const std::string& name) {
  for (const char* base : {"/dev/shm", "/tmp"}) {
    std::string pattern = std::string(base) + "/" + name + "-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) return pattern;
  }
  return "";
}

void RecordingEvents::Publish(const std::string& topic, const google::protobuf::MessageLite&) {
  std::lock_guard lock(mutex_);
  topics_.push_back(topic);
}

std::vector<std::string> RecordingEvents::topics() const {
  std::lock_guard lock(mutex_);
  return topics_;
}

}  // namespace beaconbox::shim::testing
