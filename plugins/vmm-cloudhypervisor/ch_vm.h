// One Cloud Hypervisor VM: the cloud-hypervisor process (driven over its REST API),
// its virtiofsd helpers and its console pump, from a beaconbox.plugin.v1.VmSpec.
// Every process is forked by the plugin's Spawner, so the VM dies with its shim.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "beaconbox/plugin/v1/vmm.pb.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "plugins/common/child_process.h"
#include "plugins/vmm-cloudhypervisor/ch_api.h"
#include "plugins/vmm-cloudhypervisor/vm_config.h"
#include "plugins/vmm-qemu/console_log.h"

namespace beaconbox::cloudhv {

struct ChConfig {
  std::string binary;  // absolute (FindInPath resolved it), maybe missing
  std::string virtiofsd = "/usr/lib/qemu/virtiofsd";
  std::string kvm_device = "/dev/kvm";
  std::chrono::milliseconds api_socket_timeout{10000};
  std::chrono::milliseconds api_call_timeout{30000};
  uint64_t console_log_max_bytes = plugins::kConsoleLogDefaultBytes;
  // The kernel CH boots (config key kernel): "auto" = the uncompressed PVH vmlinux the
  // guest image build puts next to the host's kernel when it is there, else the
  // host's (VmSpec.kernel_path); "" = the host's; else that file.
  std::string kernel = "auto";
};

// "" when `path` is a readable ELF file (an uncompressed vmlinux), else what it is.
std::string VmlinuxProblem(const std::string& path);

// The kernel to boot for `spec` under `config.kernel`, and the config key or field
// naming it (for messages).
std::pair<std::string, std::string> KernelFor(const ChConfig& config,
                                              const beaconbox::plugin::v1::VmSpec& spec);

// One line about /dev/kvm for messages and check: "" when it opens read-write.
std::string KvmProblem(const std::string& kvm_device);

// Connects to a hybrid vsock: the unix socket `path`, "CONNECT <port>\n", and the
// answer "OK <n>\n" (at most 32 bytes, read one at a time so that nothing of the
// stream after it is consumed). An error when the VMM closes (no listener in the
// guest yet) or answers anything else within `timeout`.
Result<UniqueFd> ConnectHybridVsock(const std::string& path, uint32_t port,
                                    std::chrono::milliseconds timeout);

class ChVm {
 public:
  static Result<std::unique_ptr<ChVm>> Create(const beaconbox::plugin::v1::VmSpec& spec,
                                              const ChConfig& config, plugins::Spawner& spawner);
  ~ChVm();

  Result<UniqueFd> ConnectGuest(std::chrono::milliseconds timeout);
  beaconbox::plugin::v1::VmInfo Info() const;
  Status Stop(std::chrono::milliseconds timeout);
  Status Pause();
  Status Resume();
  Status Resize(uint32_t vcpus, uint64_t memory_mib);
  // vm.add-disk / vm.add-net / vm.add-fs (virtiofsd first, on the share's socket).
  Status AddDevice(const beaconbox::plugin::v1::Device& device);
  // vm.remove-device of an id AddDevice or the VmConfig gave (blk-<id>, net<N>, fs<N>).
  Status RemoveDevice(const std::string& device_id);
  // vm.info's body (JSON), for tests and diagnostics.
  Result<std::string> VmmInfo();
  const std::string& version() const { return version_; }
  // Time per REST call so far (empty before the API answered).
  std::map<std::string, ApiTiming> api_timings() const {
    return api_ ? api_->timings() : std::map<std::string, ApiTiming>{};
  }

 private:
  ChVm(const ChConfig& config, plugins::Spawner& spawner) : config_(config), spawner_(spawner) {}
  Status Launch();
  // A one-line error: `what`, CH's log tail, the console tail, and KVM's state.
  Error Died(const std::string& what) const;
  Result<std::string> Put(const std::string& call, const std::optional<std::string>& body);
  // vm.add-net of a TAP in another network namespace: opened there from a thread of
  // this process (the VMM never joins it), sent as SCM_RIGHTS, closed here after.
  Status AddNetFromNetns(const beaconbox::plugin::v1::NetDevice& net, size_t index);

  ChConfig config_;
  plugins::Spawner& spawner_;
  beaconbox::plugin::v1::VmSpec spec_;
  LaunchPlan plan_;
  std::unique_ptr<ApiClient> api_;
  std::string version_;
  pid_t vmm_pid_ = -1;
  uint64_t vmm_start_time_ = 0;
  std::vector<pid_t> virtiofsd_pids_;
  std::vector<uint64_t> virtiofsd_start_times_;
  std::vector<std::string> virtiofsd_sockets_;  // spec's and hotplugged, same order
  std::unique_ptr<qemu::ConsolePump> console_;
  uint32_t vcpus_ = 0;
  uint64_t memory_mib_ = 0;
  size_t nets_ = 0;
  size_t shares_ = 0;
  bool stopped_ = false;
};

}  // namespace beaconbox::cloudhv
