// One QEMU VM and its virtiofsd helpers, from a beaconbox.plugin.v1.VmSpec.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "beaconbox/plugin/v1/vmm.pb.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "plugins/common/child_process.h"
#include "plugins/vmm-qemu/accelerator.h"
#include "plugins/vmm-qemu/console_log.h"
#include "plugins/vmm-qemu/exit_watch.h"
#include "plugins/vmm-qemu/qmp.h"

namespace beaconbox::qemu {

using plugins::Spawner;

// bench/density: see README "Memory per container".
inline constexpr uint64_t kDefaultTcgTbSizeMib = 32;
inline constexpr uint64_t kMaxTcgTbSizeMib = 4096;

struct QemuConfig {
  std::string binary = "/usr/bin/qemu-system-x86_64";
  std::string virtiofsd = "/usr/lib/qemu/virtiofsd";
  std::string accelerator = "auto";  // auto | kvm | tcg
  std::string kvm_device = "/dev/kvm";
  std::chrono::milliseconds kvm_probe_timeout{10000};
  // Where KVM verdicts are cached (<state_dir>/vmm-qemu); empty: not cached.
  std::string verdict_dir;
  // q35: measured as fast as pc/microvm to the guest's hello under TCG, and unlike
  // microvm it never hung at boot and keeps ACPI CPU/memory hotplug.
  std::string machine = "q35";
  std::vector<std::string> extra_args;
  // The kernel QEMU boots (config key kernel): "auto" = the uncompressed PVH vmlinux the
  // guest image build writes next to vm.kernel_path when it is there (no decompression:
  // measured faster under TCG, README "Boot budget"), else vm.kernel_path; "" =
  // vm.kernel_path; else that file.
  std::string kernel = "auto";
  // The console log (VmSpec.console_log_path) and its one rotated predecessor take
  // at most this much disk together (console_log.h).
  uint64_t console_log_max_bytes = plugins::kConsoleLogDefaultBytes;
  // VM templating (template.h): off unless the config says template = true.
  bool use_template = false;
  std::string template_dir;  // default <run_dir>/vmm-qemu/templates
  std::chrono::milliseconds template_boot_timeout{300000};
  // Under TCG: QEMU's translation cache in MiB (-accel tcg,tb-size=N); 0 leaves
  // QEMU's default (1 GiB reserved in QEMU 7.2, touched as the guest runs code).
  uint64_t tcg_tb_size_mib = kDefaultTcgTbSizeMib;
  // A virtio-balloon with free page reporting: the guest hands pages it frees back
  // to the host (QEMU discards them), so an idle VM's footprint shrinks.
  bool free_page_reporting = true;
  // The guest kernel's swiotlb bounce buffer (64 MiB, touched at boot); off by
  // default (swiotlb=noforce on the guest's command line).
  bool guest_swiotlb = false;
};

// What the command line is made from besides the spec and the config.
struct LaunchPlan {
  std::string accelerator;         // resolved: kvm or tcg
  std::string accelerator_reason;  // why, one line
  // KVM chosen from a verdict (file) that this VM's failure invalidates.
  std::string kvm_verdict_path;
  bool kvm_broken = false;  // TCG because KVM is present but cannot boot the guest
  // A clone restored from a template (template.h), not a cold boot.
  bool restored_from_template = false;
  // Loaded what vm_save wrote (VmSpec.restore_dir, a checkpoint), not a cold boot.
  bool restored_from_checkpoint = false;
  bool use_vsock = false;  // VmSpec.agent_channel, decided by the host
  uint32_t guest_cid = 0;  // reserved by the host for this VM
  std::string qmp_socket;
  std::string agent_socket;  // virtio-serial backend, when not vsock
  // VmSpec.agent_token, written 0600 for QEMU's fw_cfg and removed once QEMU has read it.
  std::string agent_token_file;
  std::string qemu_log;      // QEMU's stdout and stderr
  std::string console_fifo;  // QEMU's serial console; ConsolePump writes the log
  std::string virtiofsd_log;
  std::vector<std::string> virtiofsd_sockets;  // one per Share device, in spec order
  // One per NetDevice, in spec order: the TAP's descriptor (QEMU's `fd=`) when the
  // TAP lives in another network namespace (NetDevice.netns_path), else -1 (QEMU
  // opens it by name). Launch opens them and keeps them until QEMU has its copies.
  std::vector<int> tap_fds;
  // A clone with virtio-fs shares: its private copy of the template's memory.
  std::string private_memory_file;
};

// Paths of the runtime files under spec.run_dir and the host's channel and socket
// choices from `spec`; checks them and the socket path limit.
Result<LaunchPlan> PlanLaunch(const beaconbox::plugin::v1::VmSpec& spec);

// The QEMU argv for `spec`; pure, for tests.
Result<std::vector<std::string>> BuildQemuCommand(const beaconbox::plugin::v1::VmSpec& spec,
                                                  const QemuConfig& config, const LaunchPlan& plan);

// The kernel to boot for `spec` under `config.kernel`, and the config key naming it.
std::pair<std::string, std::string> KernelFor(const QemuConfig& config,
                                              const beaconbox::plugin::v1::VmSpec& spec);
// The -accel value: the resolved accelerator, with tb-size under TCG when set.
std::string AccelArg(const QemuConfig& config, const LaunchPlan& plan);
// ",thread=single" under TCG when vCPUs may be hot-added (max_vcpus > vcpus), else "":
// QEMU 7.2's multi-threaded TCG can abort starting a hot-added vCPU's thread.
std::string TcgThreadOption(const LaunchPlan& plan, uint32_t vcpus, uint32_t max_vcpus);

// Opens each TAP of `spec` that lives in another network namespace there (the
// shim's process stays in its own) and puts its descriptor into plan->tap_fds (-1
// for a TAP QEMU opens by name); the returned descriptors must outlive QEMU's copies.
Result<std::vector<UniqueFd>> OpenNetnsTaps(const beaconbox::plugin::v1::VmSpec& spec,
                                            LaunchPlan* plan);

// The saved VM's name in VmSpec.restore_dir: what QemuVm::Save writes.
inline constexpr char kSavedStateName[] = "vm.state";

// Checks a VmSpec with restore_dir before anything starts: an absolute directory,
// plain names in restore_files (no '/', no "." or ".."), vm.state among them, and no
// virtio-fs share (QEMU 7.2 cannot migrate vhost-user-fs). Ok for a spec without
// restore_dir.
Status CheckRestoreSpec(const beaconbox::plugin::v1::VmSpec& spec);
// Opens restore_dir/vm.state read-only without following a symlink, and checks that it
// is a non-empty regular file; the descriptor goes to QEMU (QMP getfd).
Result<UniqueFd> OpenSavedState(const beaconbox::plugin::v1::VmSpec& spec);

// The settings ChooseAccelerator gets from the config, and what the probe boots.
AcceleratorSettings AcceleratorSettingsOf(const QemuConfig& config);
ProbeTarget ProbeTargetOf(const beaconbox::plugin::v1::VmSpec& spec, const QemuConfig& config);

class QemuVm {
 public:
  // `log` (may be empty) gets what the operator should see (template rebuilds).
  static Result<std::unique_ptr<QemuVm>> Create(
      const beaconbox::plugin::v1::VmSpec& spec, const QemuConfig& config, Spawner& spawner,
      const std::function<void(const std::string&)>& log = {});
  ~QemuVm();
  const LaunchPlan& plan() const { return plan_; }

  // From now on, QEMU ending by itself (not through Stop) gives `warn` one line: how it
  // ended (exit status or signal) and the last 4 KiB of its log and of the guest's
  // console, read before the VM's directory goes. Called once, after Create.
  Status WatchExit(std::function<void(const std::string&)> warn);
  Result<UniqueFd> ConnectGuest(std::chrono::milliseconds timeout);
  beaconbox::plugin::v1::VmInfo Info() const;
  Status Stop(std::chrono::milliseconds timeout);
  Status Pause();
  Status Resume();
  // Stops the vCPUs (they stay stopped) and saves memory and device state into the new
  // file vm.state in `dir` (QMP migrate to an fd); answers {"vm.state"} and QEMU's
  // version. Refuses a VM with virtio-fs shares. On failure the file is removed.
  Result<beaconbox::plugin::v1::VmSaved> Save(const std::string& dir);
  // vCPU hotplug up to max_vcpus (growing only) through QMP.
  Status Resize(uint32_t vcpus, uint64_t memory_mib);

 private:
  QemuVm() = default;
  static Result<std::unique_ptr<QemuVm>> Launch(
      const beaconbox::plugin::v1::VmSpec& spec, const QemuConfig& config, Spawner& spawner,
      const AcceleratorChoice& choice, const std::function<void(const std::string&)>& log = {});
  // From a template (template.h, template.cc): restores the template's saved VM and
  // hot-adds `spec`'s devices. `log` reports template rebuilds.
  static Result<std::unique_ptr<QemuVm>> LaunchClone(
      const beaconbox::plugin::v1::VmSpec& spec, const QemuConfig& config, Spawner& spawner,
      const AcceleratorChoice& choice, const std::function<void(const std::string&)>& log);
  Status RestoreClone(const QemuConfig& config, Spawner& spawner, const std::string& template_state,
                      const std::string& memory_path, bool shared_memory);
  // QMP migrate-incoming from `uri` (QEMU started with -incoming defer), polled until
  // QEMU has loaded it (bounded by `timeout`; QEMU dying or the migration failing is an
  // error naming `what`), then the vCPUs run (cont).
  Status LoadIncoming(const std::string& uri, const std::string& what,
                      std::chrono::milliseconds timeout);
  // Under KVM from a verdict: removes the verdict when the guest never served its agent.
  void InvalidateKvmVerdictIfGuestFailed() const;
  Error Died(const std::string& what) const;  // error with qemu's stderr and console tail
  bool QemuRunning() const;                   // without reaping it while the exit watch runs
  // The line WatchExit's `warn` gets.
  std::string UnexpectedExitReport(pid_t pid, const std::string& how) const;
  Status SetVcpus(uint32_t vcpus);
  Status SetMemory(uint64_t memory_mib);

  beaconbox::plugin::v1::VmSpec spec_;
  LaunchPlan plan_;
  pid_t qemu_pid_ = -1;
  std::vector<pid_t> virtiofsd_pids_;
  // Read at the spawn, while each pid surely is our child: with the pid they name the
  // process for the stale cleanup after a dead shim (VmInfo.pid_start_times).
  uint64_t qemu_start_time_ = 0;
  std::vector<uint64_t> virtiofsd_start_times_;
  std::optional<QmpClient> qmp_;
  std::unique_ptr<ConsolePump> console_;
  std::unique_ptr<ExitWatch> exit_watch_;  // WatchExit; stopped first by Stop
  uint32_t vcpus_ = 0;
  uint64_t memory_mib_ = 0;
  int dimm_count_ = 0;
  bool stopped_ = false;
  // A clone's shared flock on its template's directory (template.h TemplateLease).
  UniqueFd template_in_use_;
};

}  // namespace beaconbox::qemu
