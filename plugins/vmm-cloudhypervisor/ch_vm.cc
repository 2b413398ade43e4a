#include "plugins/vmm-cloudhypervisor/ch_vm.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/base/bounded_json.h"
#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "plugins/common/netns.h"
#include "plugins/common/virtiofsd.h"
#include "plugins/common/vm_files.h"

namespace beaconbox::cloudhv {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
using namespace std::chrono_literals;
using nlohmann::json;
using plugins::CheckReadable;
using plugins::ChildRunning;
using plugins::EndChild;
using plugins::WaitChildExit;
using plugins::WaitForPath;
using plugins::WriteAgentTokenFile;

Status AsStatus(const Result<std::string>& result) {
  return result.ok() ? Status::Ok() : Status(result.error());
}

int RemainingMs(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<int64_t>(left.count(), 0));
}

}  // namespace

std::string KvmProblem(const std::string& kvm_device) {
  UniqueFd fd(::open(kvm_device.c_str(), O_RDWR | O_CLOEXEC));
  if (fd) return "";
  return "no usable " + kvm_device + " (" + std::strerror(errno) +
         "): Cloud Hypervisor has no software fallback; use a KVM host or vmm = \"qemu\"";
}

Result<UniqueFd> ConnectHybridVsock(const std::string& path, uint32_t port,
                                    std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError("socket", path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return MakeError(ErrorCode::kInvalidArgument, "hybrid vsock path too long: " + path);
  }
  path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError("connecting to the hybrid vsock", path);
  }
  const std::string request = "CONNECT " + std::to_string(port) + "\n";
  if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return ErrnoError("sending CONNECT to the hybrid vsock", path);
  }
  constexpr size_t kMaxAnswer = 32;
  std::string answer;
  while (answer.size() < kMaxAnswer) {
    pollfd wait{fd.get(), POLLIN, 0};
    int ready = ::poll(&wait, 1, RemainingMs(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      return MakeError(ErrorCode::kTimeout,
                       "hybrid vsock " + path + ": no answer to CONNECT " + std::to_string(port));
    }
    char byte = 0;
    ssize_t n = ::read(fd.get(), &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return MakeError(ErrorCode::kUnavailable, "hybrid vsock " + path + ": closed after CONNECT " +
                                                    std::to_string(port) +
                                                    " (nothing listens on the port in the guest)");
    }
    if (byte == '\n') break;
    answer.push_back(byte);
  }
  if (answer.rfind("OK ", 0) != 0 || answer.size() < 4 ||
      !std::all_of(answer.begin() + 3, answer.end(),
                   [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    return MakeError(ErrorCode::kInternal, "hybrid vsock " + path + ": unexpected answer '" +
                                               PrintableOneLine(answer) + "' to CONNECT " +
                                               std::to_string(port) + " (want OK <port>)");
  }
  return fd;
}

std::string VmlinuxProblem(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return path + " is missing or unreadable (" + std::strerror(errno) + ")";
  char magic[4] = {};
  if (::read(fd.get(), magic, sizeof(magic)) != sizeof(magic) || std::memcmp(magic,
                                                                             "\x7f"
                                                                             "ELF",
                                                                             4) != 0) {
    return path + " is not an ELF vmlinux (a bzImage?)";
  }
  return "";
}

std::pair<std::string, std::string> KernelFor(const ChConfig& config,
                                              const pluginapi::VmSpec& spec) {
  if (config.kernel.empty()) return {spec.kernel_path(), "vm.kernel_path"};
  if (config.kernel != "auto")
    return {config.kernel, "kernel of [plugins.vmm.cloud-hypervisor.config]"};
  if (std::string vmlinux = plugins::VmlinuxNextTo(spec.kernel_path()); !vmlinux.empty()) {
    return {vmlinux, "kernel = \"auto\" (the vmlinux next to vm.kernel_path)"};
  }
  return {spec.kernel_path(), "vm.kernel_path"};
}

Result<std::unique_ptr<ChVm>> ChVm::Create(const pluginapi::VmSpec& requested,
                                           const ChConfig& config, plugins::Spawner& spawner) {
  pluginapi::VmSpec spec = requested;
  const auto [kernel, kernel_key] = KernelFor(config, requested);
  BBX_RETURN_IF_ERROR(CheckReadable(spec.kernel_path(), "kernel", "vm.kernel_path"));
  if (kernel != spec.kernel_path()) {
    BBX_RETURN_IF_ERROR(CheckReadable(kernel, "kernel", kernel_key));
    spec.set_kernel_path(kernel);
  }
  BBX_RETURN_IF_ERROR(CheckReadable(spec.initrd_path(), "initrd", "vm.initrd_path"));
  if (config.binary.empty() || config.binary[0] != '/' ||
      ::access(config.binary.c_str(), X_OK) != 0) {
    return MakeError(ErrorCode::kNotFound,
                     "cloud-hypervisor binary " +
                         (config.binary.empty() ? std::string("(unset)") : config.binary) +
                         " is missing or not executable (config key binary of "
                         "[plugins.vmm.cloud-hypervisor.config], env CLOUD_HYPERVISOR_PATH): "
                         "install Cloud Hypervisor v" +
                         std::to_string(kMinVersionMajor) + "+ or fix the path");
  }
  if (spec.id().empty()) return MakeError(ErrorCode::kInvalidArgument, "VmSpec.id is empty");
  auto vm = std::unique_ptr<ChVm>(new ChVm(config, spawner));
  vm->spec_ = spec;
  BBX_ASSIGN_OR_RETURN(vm->plan_, PlanLaunch(spec));
  vm->vcpus_ = std::max<uint32_t>(spec.vcpus(), 1);
  vm->memory_mib_ = spec.memory_mib() == 0 ? 512 : spec.memory_mib();
  // From here a failure destroys `vm`, whose destructor ends what was started and
  // removes the runtime files.
  BBX_RETURN_IF_ERROR(vm->Launch());
  return vm;
}

Status ChVm::Launch() {
  BBX_ASSIGN_OR_RETURN(json config, BuildVmConfig(spec_, plan_));
  size_t share = 0;
  for (const auto& device : spec_.devices()) {
    if (!device.has_share()) continue;
    const std::string& socket = plan_.virtiofsd_sockets[share++];
    auto pid = plugins::StartVirtiofsd(spawner_, config_.virtiofsd, device.share(), socket,
                                       plan_.virtiofsd_log, 10s);
    if (!pid.ok()) return pid.error().Wrap("config key virtiofsd");
    virtiofsd_pids_.push_back(*pid);
    virtiofsd_start_times_.push_back(plugins::ProcessStartTime(*pid));
    virtiofsd_sockets_.push_back(socket);
    ++shares_;
  }
  for (const auto& device : spec_.devices()) nets_ += device.has_net() ? 1 : 0;
  BBX_RETURN_IF_ERROR(WriteAgentTokenFile(plan_.agent_token_file, spec_.agent_token()));
  BBX_ASSIGN_OR_RETURN(auto console_log, qemu::CappedLog::Open(spec_.console_log_path(),
                                                               config_.console_log_max_bytes));
  BBX_ASSIGN_OR_RETURN(console_,
                       qemu::ConsolePump::Start(plan_.console_fifo, std::move(console_log)));
  for (const auto& stale : {plan_.api_socket, plan_.vsock_socket}) ::unlink(stale.c_str());
  plugins::SpawnOptions output;
  output.log_path = plan_.vmm_log;
  output.truncate_log = true;
  BBX_ASSIGN_OR_RETURN(
      vmm_pid_,
      spawner_.Spawn({config_.binary, "--api-socket", "path=" + plan_.api_socket}, output));
  vmm_start_time_ = plugins::ProcessStartTime(vmm_pid_);
  if (!WaitForPath(plan_.api_socket, vmm_pid_, config_.api_socket_timeout)) {
    return Died(ChildRunning(vmm_pid_)
                    ? "cloud-hypervisor did not open its API socket " + plan_.api_socket +
                          " within " + std::to_string(config_.api_socket_timeout.count()) + " ms"
                    : "cloud-hypervisor exited before it opened its API socket");
  }
  api_ = std::make_unique<ApiClient>(plan_.api_socket);

  // The socket file appears at bind(), a moment before listen(): a refused connect
  // is retried until the socket timeout.
  const auto ping_deadline = std::chrono::steady_clock::now() + config_.api_socket_timeout;
  auto ping = api_->Call("GET", "vmm.ping", std::nullopt, config_.api_call_timeout);
  while (!ping.ok() && ping.error().message.find("cannot connect") != std::string::npos &&
         std::chrono::steady_clock::now() < ping_deadline && ChildRunning(vmm_pid_)) {
    std::this_thread::sleep_for(20ms);
    ping = api_->Call("GET", "vmm.ping", std::nullopt, config_.api_call_timeout);
  }
  if (!ping.ok()) return Died(ping.error().message);
  auto pong = ParseBoundedJson(*ping, "vmm.ping answer");
  if (!pong.ok() || !pong->is_object() || !pong->contains("version") ||
      !(*pong)["version"].is_string()) {
    return Died("cloud-hypervisor API vmm.ping: answer without a version");
  }
  version_ = (*pong)["version"].get<std::string>();
  auto major = VersionMajor(version_);
  if (!major.ok()) return Died(major.error().message);
  if (*major < kMinVersionMajor) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "cloud-hypervisor " + config_.binary + " is " + PrintableOneLine(version_) +
                         ", too old: this plugin needs v" + std::to_string(kMinVersionMajor) +
                         "+ (fw_cfg for the agent token); upgrade it");
  }
  if (auto created = Put("vm.create", config.dump()); !created.ok()) {
    return Died(created.error().message);
  }
  // TAPs in a CNI sandbox: cold-plugged with their descriptors before the boot.
  size_t net_index = 0;
  for (const auto& device : spec_.devices()) {
    if (!device.has_net()) continue;
    const size_t index = net_index++;
    if (device.net().netns_path().empty()) continue;
    if (Status added = AddNetFromNetns(device.net(), index); !added.ok()) {
      return added.error().code == ErrorCode::kUnavailable ? Died(added.error().message) : added;
    }
  }
  if (auto booted = Put("vm.boot", std::nullopt); !booted.ok()) {
    return Died(booted.error().message);
  }
  // CH ignores fields it does not know: a binary built without the `fw_cfg` feature
  // would boot a guest without its token, whose agent then refuses every call.
  BBX_ASSIGN_OR_RETURN(std::string info_text, VmmInfo());
  auto info = ParseBoundedJson(info_text, "vm.info answer");
  const json* fw_cfg = nullptr;
  if (info.ok() && info->is_object() && info->contains("config") && (*info)["config"].is_object() &&
      (*info)["config"].contains("payload") && (*info)["config"]["payload"].is_object() &&
      (*info)["config"]["payload"].contains("fw_cfg_config")) {
    fw_cfg = &(*info)["config"]["payload"]["fw_cfg_config"];
  }
  if (fw_cfg == nullptr || fw_cfg->is_null()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "cloud-hypervisor " + PrintableOneLine(version_) +
                         " was built without the fw_cfg feature, so it cannot hand the guest its "
                         "agent token: use a build with --features fw_cfg");
  }
  // CH opened the token file while booting; it need not stay on disk.
  ::unlink(plan_.agent_token_file.c_str());
  return Status::Ok();
}

ChVm::~ChVm() {
  (void)Stop(0ms);
  std::error_code error;
  for (const auto& path : {plan_.api_socket, plan_.vsock_socket, plan_.vmm_log, plan_.virtiofsd_log,
                           plan_.agent_token_file}) {
    if (!path.empty()) fs::remove(path, error);
  }
  for (const auto& socket : virtiofsd_sockets_) fs::remove(socket, error);
  for (const auto& socket : plan_.virtiofsd_sockets) fs::remove(socket, error);
}

Error ChVm::Died(const std::string& what) const {
  std::string kvm = KvmProblem(config_.kvm_device);
  return MakeError(ErrorCode::kUnavailable,
                   what + " -- cloud-hypervisor log: " + ReadFileTail(plan_.vmm_log, 512) +
                       " -- console tail: " + ReadFileTail(spec_.console_log_path(), 512) +
                       (kvm.empty() ? "" : " -- " + kvm));
}

Result<std::string> ChVm::Put(const std::string& call, const std::optional<std::string>& body) {
  if (!api_) return MakeError(ErrorCode::kFailedPrecondition, "the VM is not running");
  return api_->Call("PUT", call, body, config_.api_call_timeout);
}

Status ChVm::AddNetFromNetns(const pluginapi::NetDevice& net, size_t index) {
  if (!api_) return MakeError(ErrorCode::kFailedPrecondition, "the VM is not running");
  BBX_ASSIGN_OR_RETURN(json body, NetFdConfigOf(net, index));
  BBX_ASSIGN_OR_RETURN(UniqueFd tap, plugins::OpenTapInNetns(net.netns_path(), net.tap_name()));
  auto added = api_->Call("PUT", "vm.add-net", body.dump(), config_.api_call_timeout, {tap.get()});
  if (!added.ok()) {
    return added.error().Wrap("TAP " + net.tap_name() + " of " + net.netns_path());
  }
  return Status::Ok();  // CH holds its own copy now; `tap` closes here
}

Result<std::string> ChVm::VmmInfo() {
  if (!api_) return MakeError(ErrorCode::kFailedPrecondition, "the VM is not running");
  return api_->Call("GET", "vm.info", std::nullopt, config_.api_call_timeout);
}

Result<UniqueFd> ChVm::ConnectGuest(std::chrono::milliseconds timeout) {
  if (stopped_) return MakeError(ErrorCode::kFailedPrecondition, "the VM is stopped");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last_error = "the hybrid vsock socket did not appear";
  while (true) {
    if (!ChildRunning(vmm_pid_)) return Died("the VM exited before its agent connected");
    auto fd = ConnectHybridVsock(
        plan_.vsock_socket, plan_.agent_port,
        std::min<std::chrono::milliseconds>(
            std::max(std::chrono::milliseconds(RemainingMs(deadline)), 100ms), 5s));
    if (fd.ok()) return fd;
    last_error = fd.error().message;
    if (std::chrono::steady_clock::now() >= deadline) {
      return MakeError(ErrorCode::kTimeout,
                       "no guest agent on the hybrid vsock within " +
                           std::to_string(timeout.count()) + " ms (" + last_error +
                           ") -- console tail: " + ReadFileTail(spec_.console_log_path(), 1024));
    }
    std::this_thread::sleep_for(20ms);
  }
}

pluginapi::VmInfo ChVm::Info() const {
  pluginapi::VmInfo info;
  info.set_id(spec_.id());
  info.set_namespace_(spec_.namespace_());
  if (vmm_pid_ > 0) {
    info.add_pids(vmm_pid_);
    info.add_pid_start_times(vmm_start_time_);
  }
  for (size_t i = 0; i < virtiofsd_pids_.size(); ++i) {
    info.add_pids(virtiofsd_pids_[i]);
    info.add_pid_start_times(i < virtiofsd_start_times_.size() ? virtiofsd_start_times_[i] : 0);
  }
  info.set_accelerator("kvm");
  info.set_accelerator_reason("cloud-hypervisor " + PrintableOneLine(version_) +
                              " runs only on KVM (no software fallback)");
  info.set_console_log_path(spec_.console_log_path());
  info.set_guest_channel("hybrid-vsock:" + plan_.vsock_socket + ":" +
                         std::to_string(plan_.agent_port));
  info.set_run_dir(spec_.run_dir());
  info.set_vmm_pid(vmm_pid_ > 0 ? vmm_pid_ : 0);
  return info;
}

Status ChVm::Stop(std::chrono::milliseconds timeout) {
  if (stopped_) return Status::Ok();
  stopped_ = true;
  // The guest's state is disposable: tear the VM down, then end the VMM.
  if (api_ && vmm_pid_ > 0 && ChildRunning(vmm_pid_)) {
    auto budget = std::clamp<std::chrono::milliseconds>(timeout / 2, 100ms, 5s);
    (void)api_->Call("PUT", "vm.shutdown", std::nullopt, budget);
    (void)api_->Call("PUT", "vmm.shutdown", std::nullopt, budget);
  }
  if (vmm_pid_ > 0 && !WaitChildExit(vmm_pid_, timeout)) EndChild(vmm_pid_, 0ms);
  vmm_pid_ = -1;
  if (console_) console_->Stop();  // copies the last output; the log stays
  for (size_t i = 0; i < virtiofsd_sockets_.size(); ++i) {
    plugins::StopVirtiofsd(i < virtiofsd_pids_.size() ? virtiofsd_pids_[i] : -1,
                           virtiofsd_sockets_[i], 500ms);
  }
  virtiofsd_pids_.clear();
  return Status::Ok();
}

Status ChVm::Pause() { return AsStatus(Put("vm.pause", std::nullopt)); }

Status ChVm::Resume() { return AsStatus(Put("vm.resume", std::nullopt)); }

Status ChVm::Resize(uint32_t vcpus, uint64_t memory_mib) {
  const uint32_t max_vcpus = std::max(spec_.max_vcpus(), std::max<uint32_t>(spec_.vcpus(), 1));
  const uint64_t base = spec_.memory_mib() == 0 ? 512 : spec_.memory_mib();
  const uint64_t max_memory = std::max(spec_.max_memory_mib(), base);
  if (vcpus > max_vcpus) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "vcpus " + std::to_string(vcpus) + " exceeds max_vcpus " + std::to_string(max_vcpus));
  }
  if (memory_mib > max_memory) {
    return MakeError(ErrorCode::kInvalidArgument, "memory " + std::to_string(memory_mib) +
                                                      " MiB exceeds max_memory_mib " +
                                                      std::to_string(max_memory));
  }
  if (memory_mib != 0 && memory_mib < base) {
    return MakeError(ErrorCode::kNotImplemented,
                     "memory below the boot size is not implemented (ACPI hotplug only adds)");
  }
  if ((vcpus == 0 || vcpus == vcpus_) && (memory_mib == 0 || memory_mib == memory_mib_)) {
    return Status::Ok();
  }
  BBX_RETURN_IF_ERROR(AsStatus(Put("vm.resize", ResizeBody(vcpus, memory_mib).dump())));
  if (vcpus != 0) vcpus_ = vcpus;
  if (memory_mib != 0) memory_mib_ = memory_mib;
  return Status::Ok();
}

Status ChVm::AddDevice(const pluginapi::Device& device) {
  if (!api_ || stopped_) return MakeError(ErrorCode::kFailedPrecondition, "the VM is not running");
  if (device.has_block()) {
    BBX_ASSIGN_OR_RETURN(json disk, DiskConfigOf(device.block()));
    return AsStatus(Put("vm.add-disk", disk.dump()));
  }
  if (device.has_net() && !device.net().netns_path().empty()) {
    BBX_RETURN_IF_ERROR(AddNetFromNetns(device.net(), nets_));
    ++nets_;
    return Status::Ok();
  }
  if (device.has_net()) {
    BBX_ASSIGN_OR_RETURN(json net, NetConfigOf(device.net(), nets_));
    BBX_RETURN_IF_ERROR(AsStatus(Put("vm.add-net", net.dump())));
    ++nets_;
    return Status::Ok();
  }
  if (device.has_share()) {
    BBX_ASSIGN_OR_RETURN(json share, FsConfigOf(device.share(), shares_));
    const std::string socket = device.share().vhost_user_socket();
    auto pid = plugins::StartVirtiofsd(spawner_, config_.virtiofsd, device.share(), socket,
                                       plan_.virtiofsd_log, 10s);
    if (!pid.ok()) return pid.error().Wrap("config key virtiofsd");
    auto added = Put("vm.add-fs", share.dump());
    if (!added.ok()) {
      plugins::StopVirtiofsd(*pid, socket, 500ms);
      return added.error();
    }
    virtiofsd_pids_.push_back(*pid);
    virtiofsd_start_times_.push_back(plugins::ProcessStartTime(*pid));
    virtiofsd_sockets_.push_back(socket);
    ++shares_;
    return Status::Ok();
  }
  return MakeError(ErrorCode::kInvalidArgument, "Device without a kind");
}

Status ChVm::RemoveDevice(const std::string& device_id) {
  return AsStatus(Put("vm.remove-device", json{{"id", device_id}}.dump()));
}

}  // namespace beaconbox::cloudhv
