#include "plugins/vmm-qemu/qemu_vm.h"

#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/base/agent_token.h"
#include "common/base/bounded_json.h"
#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "plugins/common/netns.h"
#include "plugins/common/virtiofsd.h"
#include "plugins/common/vm_files.h"
#include "plugins/vmm-qemu/qemu_version.h"

namespace beaconbox::qemu {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
using namespace std::chrono_literals;
using plugins::CheckReadable;
using plugins::ChildRunning;
using plugins::EndChild;
using plugins::VmlinuxNextTo;
using plugins::WaitChildExit;
using plugins::WaitForPath;
using plugins::WriteAgentTokenFile;

constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;
// Loading a saved VM reads its whole memory from disk: as long as vm_save may take.
constexpr std::chrono::milliseconds kRestoreTimeout = 300s;

bool IsSafeToken(const std::string& value) {
  // Values spliced into QEMU's comma-separated options must not inject options.
  return !value.empty() && value.find_first_of(",= \n") == std::string::npos;
}

}  // namespace

Result<std::vector<UniqueFd>> OpenNetnsTaps(const pluginapi::VmSpec& spec, LaunchPlan* plan) {
  std::vector<UniqueFd> tap_fds;
  for (const auto& device : spec.devices()) {
    if (!device.has_net()) continue;
    if (device.net().netns_path().empty()) {
      plan->tap_fds.push_back(-1);
      continue;
    }
    BBX_ASSIGN_OR_RETURN(
        UniqueFd tap, plugins::OpenTapInNetns(device.net().netns_path(), device.net().tap_name()));
    plan->tap_fds.push_back(tap.get());
    tap_fds.push_back(std::move(tap));
  }
  return tap_fds;
}

Status CheckRestoreSpec(const pluginapi::VmSpec& spec) {
  if (spec.restore_dir().empty()) return Status::Ok();
  const std::string& dir = spec.restore_dir();
  if (dir[0] != '/' || dir.find('\0') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "VmSpec.restore_dir '" + SanitizeLine(dir, 200) +
                                                      "' must be an absolute path");
  }
  bool has_state = false;
  for (const std::string& name : spec.restore_files()) {
    if (name.empty() || name == "." || name == ".." || name.size() > 255 ||
        name.find_first_of(std::string("/\0", 2)) != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "VmSpec.restore_files entry '" + SanitizeLine(name, 200) +
                           "' is not a plain file name (no '/', not '.' or '..')");
    }
    if (name == kSavedStateName) has_state = true;
  }
  if (spec.restore_vmm_version().empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "VmSpec.restore_vmm_version is empty: a checkpoint names the QEMU that saved "
                     "it (VmSaved.vmm_version); restore from a checkpoint's manifest");
  }
  if (!has_state) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string("VmSpec.restore_files does not name ") + kSavedStateName +
                         ", the file vm_save of the qemu plugin writes: not a save of this plugin");
  }
  for (const auto& device : spec.devices()) {
    if (device.has_share()) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "cannot restore a VM with virtio-fs shares (share '" +
                           SanitizeLine(device.share().tag(), 64) +
                           "'): QEMU 7.2 cannot migrate vhost-user-fs");
    }
  }
  return Status::Ok();
}

Result<UniqueFd> OpenSavedState(const pluginapi::VmSpec& spec) {
  BBX_RETURN_IF_ERROR(CheckRestoreSpec(spec));
  if (spec.restore_dir().empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "VmSpec.restore_dir is empty");
  }
  const std::string path = spec.restore_dir() + "/" + kSavedStateName;
  // O_NONBLOCK: a FIFO in its place must not block the open.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    if (errno == ELOOP) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "the saved VM " + path + " is a symlink: refusing to follow it");
    }
    return ErrnoError("opening the saved VM", path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("stat of the saved VM", path);
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the saved VM " + path + " is not a regular file");
  }
  if (st.st_size == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "the saved VM " + path + " is empty");
  }
  // QEMU reads it with its own flags; a regular file never blocks anyway.
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return ErrnoError("fcntl of the saved VM", path);
  }
  return fd;
}

AcceleratorSettings AcceleratorSettingsOf(const QemuConfig& config) {
  AcceleratorSettings settings;
  settings.mode = config.accelerator;
  settings.kvm_device = config.kvm_device;
  settings.probe_timeout = config.kvm_probe_timeout;
  settings.cache_dir = config.verdict_dir;
  return settings;
}

std::pair<std::string, std::string> KernelFor(const QemuConfig& config,
                                              const pluginapi::VmSpec& spec) {
  if (config.kernel.empty()) return {spec.kernel_path(), "vm.kernel_path"};
  if (config.kernel != "auto") return {config.kernel, "kernel of [plugins.vmm.qemu.config]"};
  if (std::string vmlinux = VmlinuxNextTo(spec.kernel_path()); !vmlinux.empty()) {
    return {vmlinux, "kernel = \"auto\" of [plugins.vmm.qemu.config]"};
  }
  return {spec.kernel_path(), "vm.kernel_path"};
}

ProbeTarget ProbeTargetOf(const pluginapi::VmSpec& spec, const QemuConfig& config) {
  ProbeTarget target;
  target.binary = config.binary;
  target.machine = config.machine;
  target.kernel = KernelFor(config, spec).first;
  target.initrd = spec.initrd_path();
  target.memory_mib = spec.memory_mib() == 0 ? 512 : spec.memory_mib();
  return target;
}

Result<LaunchPlan> PlanLaunch(const pluginapi::VmSpec& spec) {
  const std::string& dir = spec.run_dir();
  if (dir.empty() || dir[0] != '/' || dir.find(',') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "VmSpec.run_dir '" + dir + "' must be an absolute path without ','");
  }
  // The agent channel, the guest CID and the vhost-user sockets are the host's
  // choice (VmSpec); this plugin only wires them up.
  LaunchPlan plan;
  const pluginapi::AgentChannel& channel = spec.agent_channel();
  if (channel.kind() == pluginapi::AGENT_CHANNEL_VSOCK) {
    if (channel.guest_cid() < 3 || channel.port() == 0) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "VmSpec.agent_channel: vsock needs a guest_cid >= 3 and a port");
    }
    plan.use_vsock = true;
    plan.guest_cid = channel.guest_cid();
  } else if (channel.kind() == pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL) {
    if (!IsSafeToken(channel.serial_port_name()) || channel.unix_socket_path().empty() ||
        channel.unix_socket_path().find(',') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "VmSpec.agent_channel: virtio-serial needs a port name and a socket path "
                       "without ','");
    }
    plan.agent_socket = channel.unix_socket_path();
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     "VmSpec.agent_channel.kind " + std::to_string(channel.kind()) +
                         " is not one this plugin supports (vsock, virtio-serial)");
  }
  // The host seals the agent channel with a per-VM token; without one the guest
  // agent refuses every call, and a VM is never started unsealed.
  if (!IsWellFormedAgentToken(spec.agent_token())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "VmSpec.agent_token is missing or malformed (want 64 hex characters): the "
                     "host must seal the guest agent channel; refusing to start the VM");
  }
  plan.agent_token_file = dir + "/agent-token";
  plan.qmp_socket = dir + "/qmp.sock";
  plan.qemu_log = dir + "/qemu.log";
  plan.console_fifo = dir + "/console.fifo";
  plan.virtiofsd_log = dir + "/virtiofsd.log";
  for (const auto& device : spec.devices()) {
    if (!device.has_share()) continue;
    const std::string& socket = device.share().vhost_user_socket();
    if (socket.empty() || socket[0] != '/' || socket.find(',') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "share '" + device.share().tag() + "' has no usable vhost_user_socket ('" +
                           socket + "'): the host assigns one, absolute and without ','");
    }
    plan.virtiofsd_sockets.push_back(socket);
  }
  std::vector<std::string> sockets = {plan.qmp_socket};
  if (!plan.agent_socket.empty()) sockets.push_back(plan.agent_socket);
  sockets.insert(sockets.end(), plan.virtiofsd_sockets.begin(), plan.virtiofsd_sockets.end());
  for (const auto& path : sockets) {
    if (path.size() > kMaxSocketPath) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "socket path " + path + " is longer than " + std::to_string(kMaxSocketPath) +
                           " bytes (the unix socket limit): use a shorter run_dir");
    }
  }
  return plan;
}

std::string AccelArg(const QemuConfig& config, const LaunchPlan& plan) {
  if (plan.accelerator != "tcg" || config.tcg_tb_size_mib == 0) return plan.accelerator;
  return "tcg,tb-size=" + std::to_string(config.tcg_tb_size_mib);
}

std::string TcgThreadOption(const LaunchPlan& plan, uint32_t vcpus, uint32_t max_vcpus) {
  // Under multi-threaded TCG each vCPU thread takes a region of the translation cache
  // when it starts, and QEMU aborts (tcg/region.c: tcg_region_initial_alloc__locked:
  // assertion failed) when the running vCPUs hold every region since the last flush:
  // a hot-added vCPU killed its VM that way (e2e_beaconbox_update, bench/hotadd-loop).
  // One TCG thread for all vCPUs takes one region once: hot-added vCPUs share it.
  return plan.accelerator == "tcg" && max_vcpus > vcpus ? ",thread=single" : "";
}

constexpr const char* kBootCmdline =
    "i8042.noaux i8042.nokbd i8042.nopnp i8042.dumbkbd 8250.nr_uarts=1 tsc=reliable "
    "no_timer_check noreplace-smp cryptomgr.notests rcupdate.rcu_expedited=1";

Result<std::vector<std::string>> BuildQemuCommand(const pluginapi::VmSpec& spec,
                                                  const QemuConfig& config,
                                                  const LaunchPlan& plan) {
  uint32_t vcpus = std::max<uint32_t>(spec.vcpus(), 1);
  uint32_t max_vcpus = std::max(spec.max_vcpus(), vcpus);
  uint64_t memory = spec.memory_mib() == 0 ? 512 : spec.memory_mib();
  uint64_t max_memory = std::max(spec.max_memory_mib(), memory);
  if (spec.console_log_path().empty() || spec.console_log_path().find(',') != std::string::npos) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "VmSpec.console_log_path '" + spec.console_log_path() + "' must be set and contain no ','");
  }

  // reboot=t with -no-reboot: a guest reboot ends QEMU at once. Then what the host
  // decided the guest needs (agent channel, panic behaviour), then the operator's.
  // kBootCmdline: no probing of hardware the VM lacks (i8042), one UART, no boot-time
  // self tests or timer/TSC checks: kernel init 0.8 s against 1.4-2.4 s under TCG
  // (bench/boot, README "Boot budget").
  std::string cmdline = std::string("console=ttyS0 quiet loglevel=4 reboot=t ") + kBootCmdline;
  for (const auto& arg : spec.guest_kernel_args()) cmdline += " " + arg;
  // The guest kernel's 64 MiB DMA bounce buffer is zeroed at boot (host memory for
  // good) and unused: virtio devices without VIRTIO_F_ACCESS_PLATFORM never bounce.
  if (!config.guest_swiotlb) cmdline += " swiotlb=noforce";
  // Free page reporting of free blocks from 128 KiB (order 5) instead of the kernel's
  // 2 MiB: less PSS per idle container (bench/density, README "Memory per container").
  // Linux 6.1 resets the order when virtio_balloon loads; vminitd sets it again from
  // here. An operator's `page_reporting.page_reporting_order` in [vm] kernel_cmdline
  // comes later on the line and wins (vminitd takes the last one).
  if (config.free_page_reporting) cmdline += " page_reporting.page_reporting_order=5";
  if (!spec.kernel_cmdline().empty()) cmdline += " " + spec.kernel_cmdline();

  std::string memory_arg = std::to_string(memory) + "M";
  if (max_memory > memory) memory_arg += ",slots=8,maxmem=" + std::to_string(max_memory) + "M";

  // clang-format off
  std::vector<std::string> argv = {
      config.binary,
      "-name", "beaconbox-" + spec.id(),
      "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
      "-accel", AccelArg(config, plan) + TcgThreadOption(plan, vcpus, max_vcpus),
      "-M", config.machine,
      "-cpu", plan.accelerator == "kvm" ? "host" : "max",
      "-smp", std::to_string(vcpus) + ",maxcpus=" + std::to_string(max_vcpus),
      "-m", memory_arg,
      // vhost-user-fs needs guest memory that virtiofsd can map: a shared memfd.
      "-object", "memory-backend-memfd,id=mem,size=" + std::to_string(memory) + "M,share=on",
      "-numa", "node,memdev=mem",
      "-kernel", KernelFor(config, spec).first,
      "-initrd", spec.initrd_path(),
      "-append", cmdline,
      // Through the plugin's ConsolePump, which caps the log (console_log.h).
      "-serial", "file:" + plan.console_fifo,
      "-qmp", "unix:" + plan.qmp_socket + ",server=on,wait=off",
      // The agent token: only the guest reads fw_cfg (never on this command line,
      // which any local user reads in /proc/<pid>/cmdline).
      "-fw_cfg", std::string("name=") + kAgentTokenFwCfgName + ",file=" + plan.agent_token_file,
  };
  // clang-format on
  if (plan.use_vsock) {
    argv.insert(argv.end(),
                {"-device", "vhost-vsock-pci,guest-cid=" + std::to_string(plan.guest_cid)});
  } else {
    argv.insert(argv.end(),
                {"-device", "virtio-serial-pci,id=serial0", "-chardev",
                 "socket,id=agent,path=" + plan.agent_socket + ",server=on,wait=off", "-device",
                 "virtserialport,chardev=agent,name=" + spec.agent_channel().serial_port_name()});
  }
  size_t fs_index = 0;
  size_t net_index = 0;
  for (const auto& device : spec.devices()) {
    if (device.has_share()) {
      if (!IsSafeToken(device.share().tag()) || fs_index >= plan.virtiofsd_sockets.size()) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "bad virtio-fs tag '" + device.share().tag() + "'");
      }
      const std::string id = "fs" + std::to_string(fs_index);
      argv.insert(
          argv.end(),
          {"-chardev", "socket,id=" + id + ",path=" + plan.virtiofsd_sockets[fs_index], "-device",
           "vhost-user-fs-pci,queue-size=1024,chardev=" + id + ",tag=" + device.share().tag()});
      ++fs_index;
    } else if (device.has_block()) {
      const auto& block = device.block();
      if (!IsSafeToken(block.id()) || block.host_path().empty() ||
          block.host_path().find(',') != std::string::npos) {
        return MakeError(ErrorCode::kInvalidArgument, "bad block device '" + block.id() + "'");
      }
      argv.insert(argv.end(),
                  {"-drive",
                   "file=" + block.host_path() + ",if=none,id=blk-" + block.id() + ",format=raw" +
                       (block.read_only() ? ",readonly=on" : ""),
                   "-device", "virtio-blk-pci,drive=blk-" + block.id() + ",serial=" + block.id()});
    } else if (device.has_net()) {
      const auto& net = device.net();
      if (!IsSafeToken(net.tap_name()) || !IsSafeToken(net.mac())) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "bad network device '" + net.tap_name() + "'");
      }
      const size_t index = net_index++;
      const std::string id = "net" + std::to_string(index);
      std::string nic = "virtio-net-pci,netdev=" + id + ",mac=" + net.mac();
      if (net.mtu() != 0) nic += ",host_mtu=" + std::to_string(net.mtu());
      const int tap_fd = index < plan.tap_fds.size() ? plan.tap_fds[index] : -1;
      if (!net.netns_path().empty() && tap_fd < 0) {
        return MakeError(ErrorCode::kInternal,
                         "TAP " + net.tap_name() + " in " + net.netns_path() + " was not opened");
      }
      argv.insert(argv.end(), {"-netdev",
                               tap_fd >= 0 ? "tap,id=" + id + ",fd=" + std::to_string(tap_fd)
                                           : "tap,id=" + id + ",ifname=" + net.tap_name() +
                                                 ",script=no,downscript=no",
                               "-device", nic});
    }
  }
  if (config.free_page_reporting) {
    argv.insert(argv.end(), {"-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on"});
  }
  argv.insert(argv.end(), config.extra_args.begin(), config.extra_args.end());
  return argv;
}

Result<std::unique_ptr<QemuVm>> QemuVm::Create(const pluginapi::VmSpec& spec,
                                               const QemuConfig& config, Spawner& spawner,
                                               const std::function<void(const std::string&)>& log) {
  BBX_RETURN_IF_ERROR(CheckReadable(spec.kernel_path(), "kernel", "vm.kernel_path"));
  const auto [kernel, kernel_key] = KernelFor(config, spec);
  BBX_RETURN_IF_ERROR(CheckReadable(kernel, "kernel", kernel_key));
  BBX_RETURN_IF_ERROR(CheckReadable(spec.initrd_path(), "initrd", "vm.initrd_path"));
  if (config.binary.empty() || config.binary[0] != '/' ||
      ::access(config.binary.c_str(), X_OK) != 0) {
    return MakeError(ErrorCode::kNotFound,
                     "QEMU binary " + config.binary +
                         " is missing or not executable (config key binary of "
                         "[plugins.vmm.qemu.config]): install qemu-system-x86 or fix the path");
  }
  if (spec.id().empty()) return MakeError(ErrorCode::kInvalidArgument, "VmSpec.id is empty");
  BBX_RETURN_IF_ERROR(PlanLaunch(spec));  // checks run_dir before the probe uses it
  BBX_RETURN_IF_ERROR(CheckRestoreSpec(spec));
  if (!spec.restore_dir().empty()) {
    // Before anything starts (a KVM probe included): the QEMU that saved the VM.
    BBX_ASSIGN_OR_RETURN(std::string version, QemuBinaryVersion(config.binary, config.verdict_dir));
    BBX_RETURN_IF_ERROR(CheckRestoreVmmVersion(spec, config.binary, version));
  }

  const AcceleratorSettings settings = AcceleratorSettingsOf(config);
  const ProbeTarget target = ProbeTargetOf(spec, config);
  BBX_ASSIGN_OR_RETURN(AcceleratorChoice choice,
                       ChooseAccelerator(settings, target, spec.run_dir()));
  auto vm = Launch(spec, config, spawner, choice, log);
  if (vm.ok() || choice.accelerator != "kvm" ||
      choice.source != AcceleratorSource::kCachedVerdict) {
    return vm;
  }
  // QEMU died under a cached "usable": the verdict is stale (the failed VM removed
  // it). Probe again; if KVM is now unusable, this VM gets one retry under TCG.
  auto again = ChooseAccelerator(settings, target, spec.run_dir());
  if (!again.ok()) return again.error();
  if (again->accelerator != "tcg") return vm;
  again->why += "; QEMU had died under the previously cached KVM verdict: " +
                SanitizeLine(vm.error().message, 240);
  return Launch(spec, config, spawner, *again, log);
}

Result<std::unique_ptr<QemuVm>> QemuVm::Launch(const pluginapi::VmSpec& spec,
                                               const QemuConfig& config, Spawner& spawner,
                                               const AcceleratorChoice& choice,
                                               const std::function<void(const std::string&)>& log) {
  // A checkpoint's restore needs the cold boot's devices: restore wins over templates.
  if (config.use_template && spec.restore_dir().empty()) {
    return LaunchClone(spec, config, spawner, choice, log);
  }
  // Opened before anything starts: a missing or unusable file starts nothing.
  UniqueFd saved_state;
  if (!spec.restore_dir().empty()) {
    BBX_ASSIGN_OR_RETURN(saved_state, OpenSavedState(spec));
  }
  auto vm = std::unique_ptr<QemuVm>(new QemuVm());
  vm->spec_ = spec;
  BBX_ASSIGN_OR_RETURN(vm->plan_, PlanLaunch(spec));
  LaunchPlan& plan = vm->plan_;
  plan.accelerator = choice.accelerator;
  plan.accelerator_reason = choice.why;
  plan.kvm_broken = choice.kvm_broken;
  if (choice.accelerator == "kvm") plan.kvm_verdict_path = choice.verdict_path;
  // A TAP in another network namespace (a CNI sandbox) is opened there by this
  // process and handed to QEMU as a descriptor; QEMU stays in the shim's namespace.
  BBX_ASSIGN_OR_RETURN(std::vector<UniqueFd> tap_fds, OpenNetnsTaps(spec, &plan));
  BBX_ASSIGN_OR_RETURN(auto argv, BuildQemuCommand(spec, config, plan));
  vm->vcpus_ = std::max<uint32_t>(spec.vcpus(), 1);
  vm->memory_mib_ = spec.memory_mib() == 0 ? 512 : spec.memory_mib();
  if (saved_state) {
    // The cold boot's command line, so devices, PCI slots and RAM blocks match the
    // saved VM's; the new VM's token (fw_cfg), CID and TAP, the spec's MAC.
    argv.insert(argv.end(), {"-incoming", "defer"});
    plan.restored_from_checkpoint = true;
    plan.accelerator_reason += "; restored from the saved VM in " + spec.restore_dir();
  }

  // From here, a failure destroys `vm`, whose destructor ends what was started and
  // removes the runtime files.
  size_t share = 0;
  for (const auto& device : spec.devices()) {
    if (!device.has_share()) continue;
    auto pid = plugins::StartVirtiofsd(spawner, config.virtiofsd, device.share(),
                                       plan.virtiofsd_sockets[share++], plan.virtiofsd_log, 10s);
    if (!pid.ok()) return pid.error().Wrap("config key virtiofsd");
    vm->virtiofsd_pids_.push_back(*pid);
    vm->virtiofsd_start_times_.push_back(plugins::ProcessStartTime(*pid));
  }
  BBX_RETURN_IF_ERROR(WriteAgentTokenFile(plan.agent_token_file, spec.agent_token()));
  BBX_ASSIGN_OR_RETURN(auto console_log,
                       CappedLog::Open(spec.console_log_path(), config.console_log_max_bytes));
  BBX_ASSIGN_OR_RETURN(vm->console_, ConsolePump::Start(plan.console_fifo, std::move(console_log)));
  plugins::SpawnOptions qemu_output;
  qemu_output.log_path = plan.qemu_log;
  for (int fd : plan.tap_fds) {
    if (fd >= 0) qemu_output.inherit_fds.push_back(fd);
  }
  BBX_ASSIGN_OR_RETURN(vm->qemu_pid_, spawner.Spawn(argv, qemu_output));
  vm->qemu_start_time_ = plugins::ProcessStartTime(vm->qemu_pid_);
  if (!WaitForPath(plan.qmp_socket, vm->qemu_pid_, 30s)) return vm->Died("QEMU did not start");
  auto qmp = QmpClient::Connect(plan.qmp_socket, 10s);
  if (!qmp.ok()) return vm->Died("QEMU's QMP did not answer (" + qmp.error().message + ")");
  vm->qmp_.emplace(std::move(qmp).value());
  // QEMU read the fw_cfg file while parsing its options, before QMP served: the
  // token need not stay on disk.
  ::unlink(plan.agent_token_file.c_str());
  if (saved_state) {
    const std::string what = "the saved VM " + spec.restore_dir() + "/" + kSavedStateName;
    auto named =
        vm->qmp_->CallWithFd("getfd", R"({"fdname":"bbx-restore"})", saved_state.get(), 5s);
    if (!named.ok()) return named.error().Wrap("handing " + what + " to QEMU");
    saved_state.Reset();  // QEMU has its copy
    BBX_RETURN_IF_ERROR(vm->LoadIncoming("fd:bbx-restore", what, kRestoreTimeout));
  }
  return vm;
}

QemuVm::~QemuVm() {
  InvalidateKvmVerdictIfGuestFailed();
  (void)Stop(0ms);
  std::error_code error;
  for (const auto& path :
       {plan_.qmp_socket, plan_.agent_socket, plan_.qemu_log, plan_.virtiofsd_log,
        plan_.agent_token_file, plan_.private_memory_file}) {
    if (!path.empty()) fs::remove(path, error);
  }
  for (const auto& socket : plan_.virtiofsd_sockets) fs::remove(socket, error);
}

void QemuVm::InvalidateKvmVerdictIfGuestFailed() const {
  if (plan_.kvm_verdict_path.empty()) return;
  // vminitd prints this on the console once its agent serves (virtio-serial or vsock);
  // a VM ending without it never reached the agent, so the cached "usable" is not
  // trusted any longer: the next VM probes again.
  constexpr char kAgentServingMarker[] = "vminitd: serving on";
  constexpr size_t kMaxScan = 1 << 20;
  std::ifstream console(spec_.console_log_path(), std::ios::binary);
  std::string text(kMaxScan, '\0');
  console.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(std::max<std::streamsize>(console.gcount(), 0)));
  if (text.find(kAgentServingMarker) == std::string::npos) {
    InvalidateVerdict(plan_.kvm_verdict_path);
  }
}

Error QemuVm::Died(const std::string& what) const {
  const std::string how = exit_watch_ ? exit_watch_->Ended() : std::string();
  return MakeError(ErrorCode::kUnavailable,
                   what + (how.empty() ? "" : " (QEMU: " + how + ")") +
                       ": qemu said: " + ReadFileTail(plan_.qemu_log, 512) +
                       " -- console tail: " + ReadFileTail(spec_.console_log_path(), 1024));
}

bool QemuVm::QemuRunning() const {
  return exit_watch_ ? exit_watch_->Ended().empty() : ChildRunning(qemu_pid_);
}

std::string QemuVm::UnexpectedExitReport(pid_t pid, const std::string& how) const {
  // The log and the console are the guest's and QEMU's words: bounded, one line.
  constexpr size_t kTailBytes = 4096;
  return "VM " + spec_.namespace_() + "/" + spec_.id() + ": QEMU (pid " + std::to_string(pid) +
         ") ended without being asked to: " + how + "; QEMU's log ends: [" +
         ReadFileTail(plan_.qemu_log, kTailBytes) + "]; the guest console ends: [" +
         ReadFileTail(spec_.console_log_path(), kTailBytes) + "]";
}

Status QemuVm::WatchExit(std::function<void(const std::string&)> warn) {
  if (exit_watch_ || qemu_pid_ <= 0 || stopped_) {
    return MakeError(ErrorCode::kFailedPrecondition, "the VM is stopped or watched already");
  }
  const pid_t pid = qemu_pid_;
  BBX_ASSIGN_OR_RETURN(exit_watch_,
                       ExitWatch::Start(pid, [this, pid, warn](const std::string& how) {
                         // The console pump copies the guest's last words a moment later.
                         std::this_thread::sleep_for(300ms);
                         if (warn) warn(UnexpectedExitReport(pid, how));
                       }));
  return Status::Ok();
}

Result<UniqueFd> QemuVm::ConnectGuest(std::chrono::milliseconds timeout) {
  if (stopped_) return MakeError(ErrorCode::kFailedPrecondition, "the VM is stopped");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (!QemuRunning()) return Died("the VM exited before its agent connected");
    if (plan_.use_vsock) {
      UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_vm addr{};
      addr.svm_family = AF_VSOCK;
      addr.svm_cid = plan_.guest_cid;
      addr.svm_port = spec_.agent_channel().port();
      if (fd && ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
        return fd;
      }
    } else {
      // QEMU accepts as soon as it runs; the guest answers once its agent serves.
      UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      plan_.agent_socket.copy(addr.sun_path, kMaxSocketPath);
      if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return MakeError(ErrorCode::kTimeout,
                       "no guest channel within " + std::to_string(timeout.count()) +
                           " ms -- console tail: " + ReadFileTail(spec_.console_log_path(), 1024));
    }
    std::this_thread::sleep_for(20ms);
  }
}

pluginapi::VmInfo QemuVm::Info() const {
  pluginapi::VmInfo info;
  info.set_id(spec_.id());
  info.set_namespace_(spec_.namespace_());
  if (qemu_pid_ > 0) {
    info.add_pids(qemu_pid_);
    info.add_pid_start_times(qemu_start_time_);
  }
  for (size_t i = 0; i < virtiofsd_pids_.size(); ++i) {
    info.add_pids(virtiofsd_pids_[i]);
    info.add_pid_start_times(i < virtiofsd_start_times_.size() ? virtiofsd_start_times_[i] : 0);
  }
  info.set_accelerator(plan_.accelerator);
  info.set_accelerator_reason(plan_.accelerator_reason);
  info.set_console_log_path(spec_.console_log_path());
  info.set_guest_channel(plan_.use_vsock ? "vsock:" + std::to_string(plan_.guest_cid) + ":" +
                                               std::to_string(spec_.agent_channel().port())
                                         : "unix:" + plan_.agent_socket);
  info.set_run_dir(spec_.run_dir());
  info.set_vmm_pid(qemu_pid_ > 0 ? qemu_pid_ : 0);
  info.set_restored_from_template(plan_.restored_from_template);
  info.set_restored_from_checkpoint(plan_.restored_from_checkpoint);
  return info;
}

Status QemuVm::Stop(std::chrono::milliseconds timeout) {
  if (stopped_) return Status::Ok();
  stopped_ = true;
  // Reports an end that came before this stop (the watch's thread may not have yet).
  if (exit_watch_) exit_watch_->Stop();
  // The guest's state is disposable: quit at once. An ACPI powerdown first would only
  // add the guest's shutdown time (our guests do not act on it: vminitd is PID 1).
  if (qmp_ && ChildRunning(qemu_pid_)) (void)qmp_->Execute("quit", std::max(timeout, 100ms));
  qmp_.reset();
  if (!WaitChildExit(qemu_pid_, timeout)) EndChild(qemu_pid_, 0ms);
  qemu_pid_ = -1;
  if (console_) console_->Stop();  // copies the last output; the log stays
  // Each virtiofsd exits by itself once QEMU is gone.
  for (size_t i = 0; i < plan_.virtiofsd_sockets.size(); ++i) {
    plugins::StopVirtiofsd(i < virtiofsd_pids_.size() ? virtiofsd_pids_[i] : -1,
                           plan_.virtiofsd_sockets[i], 500ms);
  }
  virtiofsd_pids_.clear();
  return Status::Ok();
}

Status QemuVm::Pause() {
  if (!qmp_) return MakeError(ErrorCode::kFailedPrecondition, "the VM is not running");
  return qmp_->Execute("stop", 5s);
}

Result<pluginapi::VmSaved> QemuVm::Save(const std::string& dir) {
  if (!qmp_) return MakeError(ErrorCode::kFailedPrecondition, "the VM is not running");
  for (const auto& device : spec_.devices()) {
    if (device.has_share()) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "cannot save a VM with virtio-fs shares: QEMU 7.2 cannot migrate "
                       "vhost-user-fs");
    }
  }
  const std::string name = "vm.state";
  const std::string path = dir + "/" + name;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return ErrnoError("creating the VM state file", path);
  auto fail = [&](const Error& error) -> Error {
    ::unlink(path.c_str());
    return error.Wrap("saving the VM to " + path);
  };
  // Idempotent: the host pauses first; a running VM is stopped here and stays so.
  if (Status stopped = qmp_->Execute("stop", 5s); !stopped.ok()) return fail(stopped.error());
  auto named = qmp_->CallWithFd("getfd", R"({"fdname":"bbx-save"})", fd.get(), 5s);
  if (!named.ok()) return fail(named.error());
  fd.Reset();
  if (Status saved = MigrateAndWait(*qmp_, "fd:bbx-save", 300s); !saved.ok()) {
    (void)qmp_->Call("closefd", R"({"fdname":"bbx-save"})", 5s);
    return fail(saved.error());
  }
  pluginapi::VmSaved answer;
  answer.add_files(name);
  // {"qemu":{"major":7,"minor":2,"micro":22},"package":"Debian 1:7.2+dfsg-7+deb12u18"}
  auto version = qmp_->Call("query-version", "", 5s);
  if (!version.ok()) return fail(version.error());
  auto parsed = ParseBoundedJson(*version, "QMP query-version");
  if (!parsed.ok()) return fail(parsed.error());
  if (!parsed->is_object() || !parsed->contains("qemu") || !(*parsed)["qemu"].is_object()) {
    return fail(MakeError(ErrorCode::kInternal, "QMP query-version answered no version"));
  }
  for (const char* key : {"major", "minor", "micro"}) {
    if (!(*parsed)["qemu"].contains(key) || !(*parsed)["qemu"][key].is_number_unsigned()) {
      return fail(MakeError(ErrorCode::kInternal,
                            std::string("QMP query-version answered no ") + key + " number"));
    }
  }
  const auto& qemu = (*parsed)["qemu"];
  answer.set_vmm_version(VmmVersionText(
      qemu["major"].get<uint64_t>(), qemu["minor"].get<uint64_t>(), qemu["micro"].get<uint64_t>()));
  return answer;
}

Status QemuVm::Resume() {
  if (!qmp_) return MakeError(ErrorCode::kFailedPrecondition, "the VM is not running");
  return qmp_->Execute("cont", 5s);
}

Status QemuVm::Resize(uint32_t vcpus, uint64_t memory_mib) {
  if (!qmp_) return MakeError(ErrorCode::kFailedPrecondition, "the VM is not running");
  if (vcpus != 0 && vcpus != vcpus_) BBX_RETURN_IF_ERROR(SetVcpus(vcpus));
  if (memory_mib != 0 && memory_mib != memory_mib_) BBX_RETURN_IF_ERROR(SetMemory(memory_mib));
  return Status::Ok();
}

Status QemuVm::SetVcpus(uint32_t vcpus) {
  uint32_t max_vcpus = std::max(spec_.max_vcpus(), std::max<uint32_t>(spec_.vcpus(), 1));
  if (vcpus < vcpus_) {
    return MakeError(ErrorCode::kNotImplemented,
                     "removing vCPUs is not implemented (the guest must offline them first)");
  }
  if (vcpus > max_vcpus) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "vcpus " + std::to_string(vcpus) + " exceeds max_vcpus " + std::to_string(max_vcpus));
  }
  BBX_ASSIGN_OR_RETURN(std::string slots_text, qmp_->Call("query-hotpluggable-cpus", "", 5s));
  BBX_ASSIGN_OR_RETURN(nlohmann::json slots,
                       ParseBoundedJson(slots_text, "QMP query-hotpluggable-cpus reply"));
  if (!slots.is_array()) {
    return MakeError(ErrorCode::kInternal, "QMP query-hotpluggable-cpus: unexpected reply");
  }
  // QEMU lists slots from the highest id down; plug the lowest free ones first.
  std::reverse(slots.begin(), slots.end());
  for (const auto& slot : slots) {
    if (vcpus_ >= vcpus) break;
    if (!slot.is_object() || slot.contains("qom-path") || !slot.contains("type") ||
        !slot["type"].is_string() || !slot.contains("props") || !slot["props"].is_object()) {
      continue;
    }
    nlohmann::json arguments = slot["props"];
    arguments.erase("node-id");
    arguments["driver"] = slot["type"];
    arguments["id"] = "vcpu" + std::to_string(vcpus_);
    BBX_RETURN_IF_ERROR(qmp_->Call("device_add", arguments.dump(), 10s));
    ++vcpus_;
  }
  if (vcpus_ < vcpus) {
    return MakeError(ErrorCode::kExhausted, "no free vCPU slot for vcpus " + std::to_string(vcpus));
  }
  return Status::Ok();
}

Status QemuVm::SetMemory(uint64_t memory_mib) {
  uint64_t base = spec_.memory_mib() == 0 ? 512 : spec_.memory_mib();
  uint64_t max_memory = std::max(spec_.max_memory_mib(), base);
  if (memory_mib < memory_mib_) {
    return MakeError(ErrorCode::kNotImplemented,
                     "removing memory is not implemented (the guest must offline it first)");
  }
  if (memory_mib > max_memory) {
    return MakeError(ErrorCode::kInvalidArgument, "memory " + std::to_string(memory_mib) +
                                                      " MiB exceeds max_memory_mib " +
                                                      std::to_string(max_memory));
  }
  // One DIMM per step, backed like the boot memory (shared memfd, for virtiofsd).
  std::string id = "dimm" + std::to_string(dimm_count_);
  nlohmann::json backend = {{"qom-type", "memory-backend-memfd"},
                            {"id", id + "-mem"},
                            {"size", (memory_mib - memory_mib_) << 20},
                            {"share", true}};
  BBX_RETURN_IF_ERROR(qmp_->Call("object-add", backend.dump(), 10s));
  nlohmann::json dimm = {{"driver", "pc-dimm"}, {"id", id}, {"memdev", id + "-mem"}};
  auto added = qmp_->Call("device_add", dimm.dump(), 10s);
  if (!added.ok()) {
    (void)qmp_->Call("object-del", nlohmann::json{{"id", id + "-mem"}}.dump(), 5s);
    return added.error();
  }
  ++dimm_count_;
  memory_mib_ = memory_mib;
  return Status::Ok();
}

}  // namespace beaconbox::qemu
