// A sandbox is one container's VM and everything around it: the VM from the VMM
// plugin, the rootfs export from the storage plugin, the network attachment, the
// guest agent connection and the processes running in the guest. The containerd-
// facing task service only translates requests into calls on this object.
#pragma once

#include <google/protobuf/timestamp.pb.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "beaconbox/plugin/v1/storage.pb.h"
#include "host/plugin_host/plugin_host.h"
#include "host/shim/event_publisher.h"
#include "host/shim/guest_client.h"
#include "host/shim/io_relay.h"

namespace beaconbox::shim {

enum class ProcessState { kCreated, kRunning, kPaused, kStopped };

struct ExitInfo {
  uint32_t pid = 0;
  uint32_t exit_status = 0;
  google::protobuf::Timestamp exited_at;
};

struct ProcessView {
  uint32_t pid = 0;
  ProcessState state = ProcessState::kCreated;
  uint32_t exit_status = 0;
  google::protobuf::Timestamp exited_at;
  StdioPaths stdio;
};

struct SandboxOptions {
  std::string namespace_name;
  std::string container_id;
  std::string bundle;  // host bundle directory (containerd's)
};

class Sandbox {
 public:
  // `plugins` may be null when loading them failed; `load_status` then holds why, and
  // Create reports it to containerd.
  Sandbox(plugin_host::PluginHost* plugins, Status load_status, EventPublisher& events,
          SandboxOptions options);
  ~Sandbox();

  // Task API, one call per containerd request. exec_id empty = the init process.
  Result<uint32_t> Create(const task::CreateTaskRequest& request);
  Result<uint32_t> Start(const std::string& exec_id);
  Status Exec(const task::ExecProcessRequest& request);
  Status Kill(const std::string& exec_id, uint32_t signal, bool all);
  Result<ExitInfo> Wait(const std::string& exec_id);
  Result<ExitInfo> Delete(const std::string& exec_id);
  Result<ProcessView> State(const std::string& exec_id);
  Result<std::vector<uint32_t>> Pids();
  Status CloseIo(const std::string& exec_id);
  Status ResizePty(const std::string& exec_id, uint32_t width, uint32_t height);
  Status Pause();
  Status Resume();

  uint32_t init_pid() const;
  bool has_container() const;
  // Releases the VM and everything prepared for it. Idempotent.
  void Teardown();

 private:
  struct Process {
    std::string exec_id;
    uint32_t pid = 0;
    ProcessState state = ProcessState::kCreated;
    ExitInfo exit;
    StdioPaths stdio;
    std::unique_ptr<IoRelay> io;
    std::thread waiter;
  };

  Status BootVm(const beaconbox::plugin::v1::MountPlan& plan,
                const beaconbox::plugin::v1::NetworkAttachment* attachment);
  Status ConfigureGuestNetwork(const beaconbox::plugin::v1::NetworkAttachment& attachment);
  Status ConnectGuest();
  void WatchExit(Process* process);
  Process* Find(const std::string& exec_id);  // requires mutex_
  void PublishExit(const Process& process);

  plugin_host::PluginHost* plugins_;
  const Status load_status_;
  EventPublisher& events_;
  const SandboxOptions options_;

  std::unique_ptr<plugin_host::Vm> vm_;
  std::unique_ptr<GuestClient> guest_;
  bool storage_prepared_ = false;
  bool network_attached_ = false;
  std::string guest_bundle_;
  long vmm_start_ms_ = 0;  // how long the VMM plugin's vm_create took

  mutable std::mutex mutex_;
  std::condition_variable exited_;
  std::map<std::string, std::unique_ptr<Process>> processes_;  // key: exec id ("" = init)
};

}  // namespace beaconbox::shim
