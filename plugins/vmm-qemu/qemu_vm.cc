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
#include <thread>

#include "common/base/errno_error.h"

namespace beaconbox::qemu {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
using namespace std::chrono_literals;

constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;
constexpr char kAgentPortName[] = "beaconbox.agent";

bool IsSafeToken(const std::string& value) {
  // Values spliced into QEMU's comma-separated options must not inject options.
  return !value.empty() && value.find_first_of(",= \n") == std::string::npos;
}

Status CheckReadable(const std::string& path, const std::string& what, const std::string& key) {
  if (path.empty() || ::access(path.c_str(), R_OK) != 0) {
    return MakeError(ErrorCode::kNotFound, what + " " + (path.empty() ? "(unset)" : path) +
                                               " is missing or unreadable (config key " + key +
                                               "): run `make` or fix the path");
  }
  return Status::Ok();
}

bool WaitForPath(const std::string& path, pid_t owner, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (::access(path.c_str(), F_OK) != 0) {
    if (!ChildRunning(owner) || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

}  // namespace

std::string DetectAccelerator() {
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  return kvm.valid() ? "kvm" : "tcg";
}

Result<std::vector<std::string>> BuildQemuCommand(const pluginapi::VmSpec& spec,
                                                  const QemuConfig& config, const LaunchPlan& plan) {
  uint32_t vcpus = std::max<uint32_t>(spec.vcpus(), 1);
  uint32_t max_vcpus = std::max(spec.max_vcpus(), vcpus);
  uint64_t memory = spec.memory_mib() == 0 ? 512 : spec.memory_mib();

  std::string cmdline = "console=ttyS0 panic=-1 quiet loglevel=4 ";
  cmdline += plan.use_vsock
                 ? "beaconbox.channel=vsock:" + std::to_string(spec.guest_port())
                 : std::string("beaconbox.channel=virtio-serial:") + kAgentPortName;
  if (!spec.kernel_cmdline().empty()) cmdline += " " + spec.kernel_cmdline();

  std::vector<std::string> argv = {
      config.binary,
      "-name", "beaconbox-" + spec.id(),
      "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
      "-accel", plan.accelerator,
      "-M", config.machine,
      "-cpu", plan.accelerator == "kvm" ? "host" : "max",
      "-smp", std::to_string(vcpus) + ",maxcpus=" + std::to_string(max_vcpus),
      "-m", std::to_string(memory) + "M",
      // vhost-user-fs needs guest memory shared with virtiofsd.
      "-object", "memory-backend-memfd,id=mem,size=" + std::to_string(memory) + "M,share=on",
      "-numa", "node,memdev=mem",
      "-kernel", spec.kernel_path(),
      "-initrd", spec.initrd_path(),
      "-append", cmdline,
      "-serial", "file:" + spec.console_log_path(),
      "-qmp", "unix:" + plan.qmp_socket + ",server=on,wait=off",
  };
  if (plan.use_vsock) {
    argv.insert(argv.end(),
                {"-device", "vhost-vsock-pci,guest-cid=" + std::to_string(plan.guest_cid)});
  } else {
    argv.insert(argv.end(), {"-device", "virtio-serial-pci,id=serial0", "-chardev",
                             "socket,id=agent,path=" + plan.agent_socket + ",server=on,wait=off",
                             "-device",
                             std::string("virtserialport,chardev=agent,name=") + kAgentPortName});
  }
  size_t fs_index = 0;
  size_t net_index = 0;
  for (const auto& device : spec.devices()) {
    if (device.has_share()) {
      if (!IsSafeToken(device.share().tag())) {
        return MakeError(ErrorCode::kInvalidArgument, "bad virtio-fs tag '" + device.share().tag() + "'");
      }
      const std::string id = "fs" + std::to_string(fs_index);
      argv.insert(argv.end(),
                  {"-chardev", "socket,id=" + id + ",path=" + plan.virtiofsd_sockets[fs_index].second,
                   "-device",
                   "vhost-user-fs-pci,queue-size=1024,chardev=" + id + ",tag=" + device.share().tag()});
      ++fs_index;
    } else if (device.has_block()) {
      const auto& block = device.block();
      if (!IsSafeToken(block.id()) || block.host_path().find(',') != std::string::npos) {
        return MakeError(ErrorCode::kInvalidArgument, "bad block device '" + block.id() + "'");
      }
      argv.insert(argv.end(),
                  {"-drive", "file=" + block.host_path() + ",if=none,id=" + block.id() +
                                 ",format=raw" + (block.read_only() ? ",readonly=on" : ""),
                   "-device", "virtio-blk-pci,drive=" + block.id() + ",serial=" + block.id()});
    } else if (device.has_net()) {
      const auto& net = device.net();
      if (!IsSafeToken(net.tap_name()) || !IsSafeToken(net.mac())) {
        return MakeError(ErrorCode::kInvalidArgument, "bad network device '" + net.tap_name() + "'");
      }
      const std::string id = "net" + std::to_string(net_index++);
      argv.insert(argv.end(),
                  {"-netdev", "tap,id=" + id + ",ifname=" + net.tap_name() + ",script=no,downscript=no",
                   "-device", "virtio-net-pci,netdev=" + id + ",mac=" + net.mac()});
    }
  }
  argv.insert(argv.end(), config.extra_args.begin(), config.extra_args.end());
  return argv;
}

Result<std::unique_ptr<QemuVm>> QemuVm::Create(const pluginapi::VmSpec& spec,
                                               const QemuConfig& config, Spawner& spawner) {
  BBX_RETURN_IF_ERROR(CheckReadable(spec.kernel_path(), "kernel", "vm.kernel_path"));
  BBX_RETURN_IF_ERROR(CheckReadable(spec.initrd_path(), "initrd", "vm.initrd_path"));
  if (::access(config.binary.c_str(), X_OK) != 0) {
    return MakeError(ErrorCode::kNotFound,
                     "QEMU binary " + config.binary +
                         " is missing or not executable (config key plugins.vmm.qemu.config.binary):"
                         " install qemu-system-x86");
  }
  if (spec.run_dir().empty() || spec.run_dir()[0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "VmSpec.run_dir must be an absolute directory");
  }

  auto vm = std::unique_ptr<QemuVm>(new QemuVm());
  vm->spec_ = spec;
  LaunchPlan& plan = vm->plan_;
  plan.accelerator = config.accelerator == "auto" ? DetectAccelerator() : config.accelerator;
  plan.use_vsock = ::access("/dev/vhost-vsock", R_OK | W_OK) == 0;
  plan.guest_cid = 3 + static_cast<uint32_t>(::getpid());  // one VM per shim: the pid is unique
  plan.qmp_socket = spec.run_dir() + "/qmp.sock";
  plan.agent_socket = spec.run_dir() + "/agent.sock";
  plan.stderr_log = spec.run_dir() + "/qemu.log";
  int share_index = 0;
  for (const auto& device : spec.devices()) {
    if (device.has_share()) {
      plan.virtiofsd_sockets.emplace_back(device.share().tag(),
                                          spec.run_dir() + "/fs" + std::to_string(share_index++) + ".sock");
    }
  }
  for (const auto& path : {plan.qmp_socket, plan.agent_socket}) {
    if (path.size() > kMaxSocketPath) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "socket path " + path + " is longer than 107 bytes: use a shorter paths.run_dir");
    }
  }
  BBX_ASSIGN_OR_RETURN(auto argv, BuildQemuCommand(spec, config, plan));

  // From here, a failure destroys `vm`, whose destructor ends what was started.
  size_t share = 0;
  for (const auto& device : spec.devices()) {
    if (!device.has_share()) continue;
    const std::string& socket = plan.virtiofsd_sockets[share++].second;
    std::vector<std::string> virtiofsd = {config.virtiofsd, "--socket-path=" + socket, "-o",
                                          "source=" + device.share().host_path(), "-o",
                                          "cache=auto", "-o", "sandbox=chroot"};
    if (device.share().read_only()) {
      // Debian's C virtiofsd has no read-only export; the guest mounts it read-only.
    }
    BBX_ASSIGN_OR_RETURN(pid_t pid, spawner.Spawn(virtiofsd, spec.run_dir() + "/virtiofsd.log"));
    vm->virtiofsd_pids_.push_back(pid);
    if (!WaitForPath(socket, pid, 10s)) {
      return MakeError(ErrorCode::kUnavailable,
                       "virtiofsd for " + device.share().host_path() + " did not start: " +
                           FileTail(spec.run_dir() + "/virtiofsd.log", 512));
    }
  }
  BBX_ASSIGN_OR_RETURN(vm->qemu_pid_, spawner.Spawn(argv, plan.stderr_log));
  auto qmp = QmpClient::Connect(plan.qmp_socket, 10s);
  if (!qmp.ok()) return vm->Died("QEMU did not come up");
  vm->qmp_.emplace(std::move(qmp).value());
  return vm;
}

QemuVm::~QemuVm() {
  (void)Stop(0ms);
  std::error_code error;
  for (const auto& path : {plan_.qmp_socket, plan_.agent_socket}) fs::remove(path, error);
  for (const auto& [tag, socket] : plan_.virtiofsd_sockets) fs::remove(socket, error);
}

Error QemuVm::Died(const std::string& what) const {
  return MakeError(ErrorCode::kUnavailable,
                   what + ": qemu: " + FileTail(plan_.stderr_log, 512) +
                       "; console: " + FileTail(spec_.console_log_path(), 1024));
}

Result<UniqueFd> QemuVm::ConnectGuest(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (!ChildRunning(qemu_pid_)) return Died("the VM exited before its agent connected");
    if (plan_.use_vsock) {
      UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_vm addr{};
      addr.svm_family = AF_VSOCK;
      addr.svm_cid = plan_.guest_cid;
      addr.svm_port = spec_.guest_port();
      if (fd && ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
        return fd;
      }
    } else {
      // QEMU accepts as soon as it runs; the guest answers once vminitd serves.
      UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      plan_.agent_socket.copy(addr.sun_path, kMaxSocketPath);
      if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return MakeError(ErrorCode::kTimeout, "no guest channel within " +
                                                std::to_string(timeout.count()) + " ms; console: " +
                                                FileTail(spec_.console_log_path(), 1024));
    }
    std::this_thread::sleep_for(20ms);
  }
}

pluginapi::VmInfo QemuVm::Info() const {
  pluginapi::VmInfo info;
  info.set_id(spec_.id());
  if (qemu_pid_ > 0) info.add_pids(qemu_pid_);
  for (pid_t pid : virtiofsd_pids_) info.add_pids(pid);
  info.set_accelerator(plan_.accelerator);
  info.set_console_log_path(spec_.console_log_path());
  info.set_guest_channel(plan_.use_vsock ? "vsock:" + std::to_string(plan_.guest_cid) + ":" +
                                               std::to_string(spec_.guest_port())
                                         : "unix:" + plan_.agent_socket);
  info.set_run_dir(spec_.run_dir());
  info.set_vmm_pid(qemu_pid_);
  return info;
}

Status QemuVm::Stop(std::chrono::milliseconds timeout) {
  if (stopped_) return Status::Ok();
  stopped_ = true;
  // The guest's state is disposable: quit at once rather than an ACPI powerdown.
  if (qmp_ && ChildRunning(qemu_pid_)) (void)qmp_->Execute("quit", std::max(timeout, 100ms));
  qmp_.reset();
  if (!WaitChildExit(qemu_pid_, timeout)) EndChild(qemu_pid_, 0ms);
  qemu_pid_ = -1;
  for (pid_t pid : virtiofsd_pids_) EndChild(pid, 500ms);  // exits by itself once QEMU is gone
  virtiofsd_pids_.clear();
  // Debian's C virtiofsd leaves a lock file per socket in /run/virtiofsd, named after
  // the socket path with '/' turned into '.'.
  for (const auto& [tag, socket] : plan_.virtiofsd_sockets) {
    std::string name = socket;
    std::replace(name.begin(), name.end(), '/', '.');
    std::error_code error;
    fs::remove("/run/virtiofsd/" + name + ".pid", error);
  }
  return Status::Ok();
}

Status QemuVm::Pause() {
  if (!qmp_) return MakeError(ErrorCode::kFailedPrecondition, "the VM is not running");
  return qmp_->Execute("stop", 5s);
}

Status QemuVm::Resume() {
  if (!qmp_) return MakeError(ErrorCode::kFailedPrecondition, "the VM is not running");
  return qmp_->Execute("cont", 5s);
}

}  // namespace beaconbox::qemu
