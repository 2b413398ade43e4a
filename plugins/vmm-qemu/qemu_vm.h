// One QEMU VM and its virtiofsd helpers, from a beaconbox.plugin.v1.VmSpec.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "beaconbox/plugin/v1/vmm.pb.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "plugins/vmm-qemu/process.h"
#include "plugins/vmm-qemu/qmp.h"

namespace beaconbox::qemu {

struct QemuConfig {
  std::string binary;      // qemu-system-x86_64
  std::string virtiofsd = "/usr/lib/qemu/virtiofsd";
  std::string accelerator = "auto";  // auto | kvm | tcg
  std::string machine = "q35";
  std::vector<std::string> extra_args;
};

// What the command line is made from: the spec, the config and what the host has.
struct LaunchPlan {
  std::string accelerator;  // resolved: kvm or tcg
  bool use_vsock = false;
  uint32_t guest_cid = 0;
  std::string qmp_socket;
  std::string agent_socket;  // virtio-serial backend, when not vsock
  std::string stderr_log;
  std::vector<std::pair<std::string, std::string>> virtiofsd_sockets;  // (tag, socket)
};

// The QEMU argv for `spec`; pure, for tests.
Result<std::vector<std::string>> BuildQemuCommand(const beaconbox::plugin::v1::VmSpec& spec,
                                                  const QemuConfig& config, const LaunchPlan& plan);

// "kvm" when /dev/kvm opens read-write, else "tcg".
std::string DetectAccelerator();

class QemuVm {
 public:
  static Result<std::unique_ptr<QemuVm>> Create(const beaconbox::plugin::v1::VmSpec& spec,
                                                const QemuConfig& config, Spawner& spawner);
  ~QemuVm();

  Result<UniqueFd> ConnectGuest(std::chrono::milliseconds timeout);
  beaconbox::plugin::v1::VmInfo Info() const;
  Status Stop(std::chrono::milliseconds timeout);
  Status Pause();
  Status Resume();

 private:
  QemuVm() = default;
  Error Died(const std::string& what) const;  // error with qemu's stderr and console tail

  beaconbox::plugin::v1::VmSpec spec_;
  LaunchPlan plan_;
  pid_t qemu_pid_ = -1;
  std::vector<pid_t> virtiofsd_pids_;
  std::optional<QmpClient> qmp_;
  bool stopped_ = false;
};

}  // namespace beaconbox::qemu
