#include "host/shim/sandbox.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <fstream>
#include <sstream>

#include "beaconbox/plugin/v1/storage.pb.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "host/shim/shim_state.h"
#include "host/shim/spec_adapter.h"

namespace beaconbox::shim {
namespace {

namespace pluginapi = ::beaconbox::plugin::v1;
using namespace std::chrono_literals;

// The guest protocol version this shim speaks (beaconbox.guest.v1.Hello).
constexpr uint32_t kGuestProtocolVersion = 1;
// After a process exits, how long its output may still drain before the exit is
// reported anyway (a background child can hold the pipe open forever).
constexpr auto kOutputDrainTimeout = 2s;
constexpr auto kVmStopTimeout = 5s;

google::protobuf::Timestamp Now() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(std::chrono::duration_cast<std::chrono::seconds>(now).count());
  timestamp.set_nanos(static_cast<int32_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now).count() % 1000000000));
  return timestamp;
}

Result<std::string> ReadSmallFile(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return MakeError(ErrorCode::kNotFound, "cannot read " + path);
  std::string content(limit + 1, '\0');
  in.read(content.data(), static_cast<std::streamsize>(content.size()));
  content.resize(static_cast<size_t>(in.gcount()));
  if (content.size() > limit) {
    return MakeError(ErrorCode::kInvalidArgument, path + " is larger than " +
                                                      std::to_string(limit) + " bytes");
  }
  return content;
}

}  // namespace

Sandbox::Sandbox(plugin_host::PluginHost* plugins, Status load_status, EventPublisher& events,
                 SandboxOptions options)
    : plugins_(plugins),
      load_status_(std::move(load_status)),
      events_(events),
      options_(std::move(options)) {}

Sandbox::~Sandbox() { Teardown(); }

Sandbox::Process* Sandbox::Find(const std::string& exec_id) {
  auto it = processes_.find(exec_id);
  return it == processes_.end() ? nullptr : it->second.get();
}

uint32_t Sandbox::init_pid() const {
  std::lock_guard lock(mutex_);
  auto it = processes_.find("");
  return it == processes_.end() ? 0 : it->second->pid;
}

bool Sandbox::has_container() const {
  std::lock_guard lock(mutex_);
  return !processes_.empty();
}

namespace {
// Milliseconds since `start`, for the one timing line Create and Delete log.
long ElapsedMs(std::chrono::steady_clock::time_point start) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count());
}
}  // namespace

Result<uint32_t> Sandbox::Create(const task::CreateTaskRequest& request) {
  if (!load_status_.ok()) return load_status_.error();
  const auto started = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    if (!processes_.empty()) {
      return MakeError(ErrorCode::kAlreadyExists, "container " + request.id() + " already exists");
    }
  }
  BBX_ASSIGN_OR_RETURN(std::string host_spec,
                       ReadSmallFile(options_.bundle + "/config.json", 16 << 20));
  BBX_ASSIGN_OR_RETURN(AdaptedSpec spec,
                       AdaptSpecForGuest(host_spec, /*share_vm_dns=*/plugins_->network() != nullptr));
  for (const auto& warning : spec.warnings) spdlog::warn("{}", warning);

  // Whatever fails from here on undoes what was done before it.
  bool created = false;
  struct Undo {
    Sandbox* sandbox;
    bool* created;
    ~Undo() {
      if (!*created) sandbox->Teardown();
    }
  } undo{this, &created};

  pluginapi::StoragePrepareRequest storage_request;
  storage_request.set_container_id(request.id());
  storage_request.set_bundle(options_.bundle);
  storage_request.set_rootfs_read_only(spec.root_read_only);
  for (const auto& mount : request.rootfs()) {
    auto* host_mount = storage_request.add_rootfs();
    host_mount->set_type(mount.type());
    host_mount->set_source(mount.source());
    host_mount->set_target(mount.target());
    for (const auto& option : mount.options()) host_mount->add_options(option);
  }
  // `ctr run --rootfs DIR`: no mounts, the spec's root is a host directory of its own.
  if (request.rootfs().empty() && spec.host_root_path.starts_with("/") &&
      spec.host_root_path != options_.bundle + "/rootfs") {
    auto* host_mount = storage_request.add_rootfs();
    host_mount->set_type("bind");
    host_mount->set_source(spec.host_root_path);
    host_mount->add_options("rbind");
  }
  BBX_ASSIGN_OR_RETURN(pluginapi::MountPlan plan, plugins_->storage().Prepare(storage_request));
  storage_prepared_ = true;

  std::optional<pluginapi::NetworkAttachment> attachment;
  if (plugins_->network() != nullptr) {
    pluginapi::NetworkAttachRequest network_request;
    network_request.set_container_id(request.id());
    network_request.set_namespace_(options_.namespace_name);
    network_request.set_owner_pid(::getpid());
    BBX_ASSIGN_OR_RETURN(attachment, plugins_->network()->Attach(network_request));
    network_attached_ = true;
  }

  const long host_setup_ms = ElapsedMs(started);
  BBX_RETURN_IF_ERROR(BootVm(plan, attachment ? &*attachment : nullptr));
  const long vm_ready_ms = ElapsedMs(started);
  if (attachment) BBX_RETURN_IF_ERROR(ConfigureGuestNetwork(*attachment));

  guestapi::CreateBundleRequest bundle_request;
  bundle_request.set_container_id(request.id());
  bundle_request.set_config_json(spec.config_json);
  for (const auto& planned : plan.guest_mounts()) {
    auto* mount = bundle_request.add_mounts();
    mount->set_type(planned.type());
    mount->set_source(planned.source());
    mount->set_target(planned.target());
    for (const auto& option : planned.options()) mount->add_options(option);
  }
  guestapi::CreateBundleResponse bundle_response;
  BBX_RETURN_IF_ERROR(guest_->CallGuest("CreateBundle", bundle_request, &bundle_response));
  guest_bundle_ = bundle_response.bundle();

  task::CreateTaskRequest guest_request;
  guest_request.set_id(request.id());
  guest_request.set_bundle(guest_bundle_);
  guest_request.set_terminal(request.terminal());
  // In the guest these only say which streams exist; the data flows over the
  // ReadOutput/WriteInput streams.
  guest_request.set_stdin(request.stdin().empty() ? "" : "stdin");
  guest_request.set_stdout(request.stdout().empty() ? "" : "stdout");
  guest_request.set_stderr(request.stderr().empty() ? "" : "stderr");
  task::CreateTaskResponse guest_response;
  BBX_RETURN_IF_ERROR(guest_->CallTask("Create", guest_request, &guest_response));

  auto process = std::make_unique<Process>();
  process->pid = guest_response.pid();
  process->stdio = {request.stdin(), request.stdout(), request.stderr(), request.terminal()};
  process->io = std::make_unique<IoRelay>(*guest_, request.id(), "", process->stdio);
  process->io->Start();
  uint32_t pid = process->pid;
  {
    std::lock_guard lock(mutex_);
    processes_[""] = std::move(process);
  }
  created = true;
  spdlog::info(
      "container {} created in the VM, pid {}: host setup {} ms, VMM start to agent ready {} ms "
      "(VMM start {} ms), container create {} ms",
      request.id(), pid, host_setup_ms, vm_ready_ms - host_setup_ms, vmm_start_ms_,
      ElapsedMs(started) - vm_ready_ms);
  return pid;
}

Status Sandbox::ConfigureGuestNetwork(const pluginapi::NetworkAttachment& attachment) {
  guestapi::NetworkConfig config;
  auto* interface = config.add_interfaces();
  interface->set_mac(attachment.mac());
  interface->set_name("eth0");
  interface->set_mtu(attachment.mtu());
  for (const auto& address : attachment.addresses()) {
    interface->add_addresses(address.address() + "/" + std::to_string(address.prefix_length()));
  }
  for (const auto& route : attachment.routes()) {
    auto* guest_route = config.add_routes();
    guest_route->set_destination(route.destination());
    guest_route->set_gateway(route.gateway());
    guest_route->set_device("eth0");
  }
  for (const auto& server : attachment.dns_servers()) config.add_dns_servers(server);
  for (const auto& domain : attachment.dns_search()) config.add_dns_search(domain);
  guestapi::Empty empty;
  return guest_->CallGuest("ConfigureNetwork", config, &empty, 30s);
}

Status Sandbox::BootVm(const pluginapi::MountPlan& plan,
                       const pluginapi::NetworkAttachment* attachment) {
  const config::Config& cfg = plugins_->config();
  pluginapi::VmSpec vm_spec;
  vm_spec.set_id(options_.container_id);
  vm_spec.set_kernel_path(cfg.vm.kernel_path);
  vm_spec.set_initrd_path(cfg.vm.initrd_path);
  vm_spec.set_kernel_cmdline(cfg.vm.kernel_cmdline);
  vm_spec.set_vcpus(cfg.vm.vcpus);
  vm_spec.set_max_vcpus(cfg.vm.max_vcpus);
  vm_spec.set_memory_mib(cfg.vm.memory_mib);
  vm_spec.set_max_memory_mib(cfg.vm.max_memory_mib);
  vm_spec.set_owner_pid(::getpid());
  vm_spec.set_guest_port(1024);
  for (const auto& device : plan.devices()) *vm_spec.add_devices() = device;
  if (attachment != nullptr) {
    auto* net = vm_spec.add_devices()->mutable_net();
    net->set_id("eth0");
    net->set_tap_name(attachment->tap_name());
    net->set_mac(attachment->mac());
    net->set_mtu(attachment->mtu());
  }

  // A short, unique per-VM directory: socket paths must fit in sun_path.
  std::string run_dir = cfg.paths.run_dir + "/vm/" + std::to_string(::getpid());
  std::error_code error;
  std::filesystem::create_directories(run_dir, error);
  if (error) {
    return MakeError(ErrorCode::kPermission,
                     "creating " + run_dir + ": " + error.message() + " (config key paths.run_dir)");
  }
  vm_spec.set_run_dir(run_dir);
  std::filesystem::create_directories(cfg.paths.log_dir, error);
  vm_spec.set_console_log_path(cfg.paths.log_dir + "/vm-" + options_.container_id + ".log");

  const auto vmm_started = std::chrono::steady_clock::now();
  BBX_ASSIGN_OR_RETURN(vm_, plugins_->vmm().CreateVm(vm_spec));
  vmm_start_ms_ = ElapsedMs(vmm_started);
  if (auto info = vm_->Info(); info.ok()) {
    (void)SaveVmState(options_.bundle, *info);
    spdlog::info("VM {} uses {}: {}", options_.container_id, info->accelerator(),
                 info->accelerator_reason().substr(0, 600));
  }
  return ConnectGuest();
}

Status Sandbox::ConnectGuest() {
  const config::Config& cfg = plugins_->config();
  auto timeout = std::chrono::milliseconds(cfg.vm.guest_connect_timeout_ms);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  BBX_ASSIGN_OR_RETURN(UniqueFd channel, vm_->ConnectGuest(timeout));
  guest_ = std::make_unique<GuestClient>(std::move(channel));
  auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  guestapi::HelloRequest hello;
  hello.set_protocol_version(kGuestProtocolVersion);
  guestapi::HelloResponse reply;
  Status status = guest_->CallGuest("Hello", hello, &reply, std::max(remaining, 1ms));
  if (!status.ok()) {
    return MakeError(status.error().code == ErrorCode::kTimeout ? ErrorCode::kTimeout
                                                                : status.error().code,
                     "guest agent did not answer within " + std::to_string(timeout.count()) +
                         " ms (config key vm.guest_connect_timeout_ms): " +
                         status.error().message + "; console: " + vm_->ConsoleTail(2048));
  }
  spdlog::info("guest agent {} ready: kernel {}", reply.agent_version().substr(0, 64),
               reply.kernel_release().substr(0, 64));
  return Status::Ok();
}

Result<uint32_t> Sandbox::Start(const std::string& exec_id) {
  Process* process = nullptr;
  {
    std::lock_guard lock(mutex_);
    process = Find(exec_id);
    if (process == nullptr) {
      return MakeError(ErrorCode::kNotFound, "process '" + exec_id + "' does not exist");
    }
    if (process->state != ProcessState::kCreated) {
      return MakeError(ErrorCode::kFailedPrecondition, "process '" + exec_id + "' already started");
    }
  }
  task::StartRequest request;
  request.set_id(options_.container_id);
  request.set_exec_id(exec_id);
  task::StartResponse response;
  BBX_RETURN_IF_ERROR(guest_->CallTask("Start", request, &response));
  std::lock_guard lock(mutex_);
  process->pid = response.pid() != 0 ? response.pid() : process->pid;
  process->state = ProcessState::kRunning;
  process->waiter = std::thread([this, process] { WatchExit(process); });
  return process->pid;
}

void Sandbox::WatchExit(Process* process) {
  task::WaitRequest request;
  request.set_id(options_.container_id);
  request.set_exec_id(process->exec_id);
  task::WaitResponse response;
  Status status = guest_->CallTask("Wait", request, &response);
  ExitInfo exit;
  if (status.ok()) {
    exit.exit_status = response.exit_status();
    exit.exited_at = response.has_exited_at() ? response.exited_at() : Now();
  } else {
    // The VM or its agent is gone: the process is gone with it.
    spdlog::warn("waiting for process '{}': {}", process->exec_id, status.error().message);
    exit.exit_status = 128 + SIGKILL;
    exit.exited_at = Now();
  }
  // Report the exit only once its output reached containerd, as runc's shim does.
  if (process->io && !process->io->WaitOutputDrained(kOutputDrainTimeout)) {
    spdlog::warn("process '{}' exited but its output is still open", process->exec_id);
  }
  {
    std::lock_guard lock(mutex_);
    exit.pid = process->pid;
    process->exit = exit;
    process->state = ProcessState::kStopped;
  }
  PublishExit(*process);
  exited_.notify_all();
}

void Sandbox::PublishExit(const Process& process) {
  ::containerd::events::TaskExit event;
  event.set_container_id(options_.container_id);
  event.set_id(process.exec_id.empty() ? options_.container_id : process.exec_id);
  event.set_pid(process.exit.pid);
  event.set_exit_status(process.exit.exit_status);
  *event.mutable_exited_at() = process.exit.exited_at;
  events_.Publish("/tasks/exit", event);
}

Status Sandbox::Exec(const task::ExecProcessRequest& request) {
  {
    std::lock_guard lock(mutex_);
    if (Find("") == nullptr) {
      return MakeError(ErrorCode::kFailedPrecondition, "container has no init process");
    }
    if (request.exec_id().empty() || Find(request.exec_id()) != nullptr) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "exec id '" + request.exec_id() + "' is empty or already used");
    }
  }
  BBX_ASSIGN_OR_RETURN(std::string process_json, AdaptProcessForGuest(request.spec().value()));
  task::ExecProcessRequest guest_request;
  guest_request.set_id(request.id());
  guest_request.set_exec_id(request.exec_id());
  guest_request.set_terminal(request.terminal());
  guest_request.set_stdin(request.stdin().empty() ? "" : "stdin");
  guest_request.set_stdout(request.stdout().empty() ? "" : "stdout");
  guest_request.set_stderr(request.stderr().empty() ? "" : "stderr");
  guest_request.mutable_spec()->set_type_url(request.spec().type_url());
  guest_request.mutable_spec()->set_value(process_json);
  google::protobuf::Empty empty;
  BBX_RETURN_IF_ERROR(guest_->CallTask("Exec", guest_request, &empty));
  auto process = std::make_unique<Process>();
  process->exec_id = request.exec_id();
  process->stdio = {request.stdin(), request.stdout(), request.stderr(), request.terminal()};
  process->io =
      std::make_unique<IoRelay>(*guest_, request.id(), request.exec_id(), process->stdio);
  process->io->Start();
  std::lock_guard lock(mutex_);
  processes_[request.exec_id()] = std::move(process);
  return Status::Ok();
}

Status Sandbox::Kill(const std::string& exec_id, uint32_t signal, bool all) {
  {
    std::lock_guard lock(mutex_);
    Process* process = Find(exec_id);
    if (process == nullptr) {
      return MakeError(ErrorCode::kNotFound, "process '" + exec_id + "' does not exist");
    }
    if (process->state == ProcessState::kStopped) {
      return MakeError(ErrorCode::kNotFound, "process '" + exec_id + "' already exited");
    }
  }
  task::KillRequest request;
  request.set_id(options_.container_id);
  request.set_exec_id(exec_id);
  request.set_signal(signal);
  request.set_all(all);
  google::protobuf::Empty empty;
  return guest_->CallTask("Kill", request, &empty, 10s);
}

Result<ExitInfo> Sandbox::Wait(const std::string& exec_id) {
  std::unique_lock lock(mutex_);
  Process* process = Find(exec_id);
  if (process == nullptr) {
    return MakeError(ErrorCode::kNotFound, "process '" + exec_id + "' does not exist");
  }
  exited_.wait(lock, [process] { return process->state == ProcessState::kStopped; });
  return process->exit;
}

Result<ExitInfo> Sandbox::Delete(const std::string& exec_id) {
  std::unique_ptr<Process> process;
  {
    std::lock_guard lock(mutex_);
    Process* found = Find(exec_id);
    if (found == nullptr) {
      return MakeError(ErrorCode::kNotFound, "process '" + exec_id + "' does not exist");
    }
    if (found->state == ProcessState::kRunning || found->state == ProcessState::kPaused) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "process '" + exec_id + "' is still running: kill it first");
    }
    if (!exec_id.empty()) {
      process = std::move(processes_[exec_id]);
      processes_.erase(exec_id);
    }
  }
  if (!exec_id.empty()) {
    if (process->waiter.joinable()) process->waiter.join();
    process->io->Stop();
    task::DeleteRequest request;
    request.set_id(options_.container_id);
    request.set_exec_id(exec_id);
    task::DeleteResponse response;
    (void)guest_->CallTask("Delete", request, &response, 10s);
    return process->exit;
  }
  // The init process: the container, and with it the VM, goes.
  ExitInfo exit;
  {
    std::lock_guard lock(mutex_);
    Process* init = Find("");
    exit = init->exit;
    if (init->state == ProcessState::kCreated) exit.exited_at = Now();
  }
  if (guest_) {
    task::DeleteRequest request;
    request.set_id(options_.container_id);
    task::DeleteResponse response;
    (void)guest_->CallTask("Delete", request, &response, 10s);
  }
  const auto teardown_started = std::chrono::steady_clock::now();
  Teardown();
  spdlog::info("container {} deleted: teardown {} ms", options_.container_id,
               ElapsedMs(teardown_started));
  {
    std::lock_guard lock(mutex_);
    processes_.clear();
  }
  return exit;
}

Result<ProcessView> Sandbox::State(const std::string& exec_id) {
  std::lock_guard lock(mutex_);
  Process* process = Find(exec_id);
  if (process == nullptr) {
    return MakeError(ErrorCode::kNotFound, "process '" + exec_id + "' does not exist");
  }
  return ProcessView{process->pid, process->state, process->exit.exit_status,
                     process->exit.exited_at, process->stdio};
}

Result<std::vector<uint32_t>> Sandbox::Pids() {
  if (!guest_) return MakeError(ErrorCode::kNotFound, "no container");
  task::PidsRequest request;
  request.set_id(options_.container_id);
  task::PidsResponse response;
  BBX_RETURN_IF_ERROR(guest_->CallTask("Pids", request, &response, 10s));
  std::vector<uint32_t> pids;
  for (const auto& info : response.processes()) pids.push_back(info.pid());
  return pids;
}

Status Sandbox::CloseIo(const std::string& exec_id) {
  std::lock_guard lock(mutex_);
  Process* process = Find(exec_id);
  if (process == nullptr) {
    return MakeError(ErrorCode::kNotFound, "process '" + exec_id + "' does not exist");
  }
  process->io->CloseStdin();
  return Status::Ok();
}

Status Sandbox::ResizePty(const std::string& exec_id, uint32_t width, uint32_t height) {
  if (!guest_) return MakeError(ErrorCode::kNotFound, "no container");
  task::ResizePtyRequest request;
  request.set_id(options_.container_id);
  request.set_exec_id(exec_id);
  request.set_width(width);
  request.set_height(height);
  google::protobuf::Empty empty;
  return guest_->CallTask("ResizePty", request, &empty, 10s);
}

Status Sandbox::Pause() {
  if (!vm_) return MakeError(ErrorCode::kNotFound, "no container");
  BBX_RETURN_IF_ERROR(vm_->Pause());
  std::lock_guard lock(mutex_);
  if (Process* init = Find(""); init && init->state == ProcessState::kRunning) {
    init->state = ProcessState::kPaused;
  }
  return Status::Ok();
}

Status Sandbox::Resume() {
  if (!vm_) return MakeError(ErrorCode::kNotFound, "no container");
  BBX_RETURN_IF_ERROR(vm_->Resume());
  std::lock_guard lock(mutex_);
  if (Process* init = Find(""); init && init->state == ProcessState::kPaused) {
    init->state = ProcessState::kRunning;
  }
  return Status::Ok();
}

void Sandbox::Teardown() {
  // Closing the guest connection first fails every call still waiting on the guest,
  // so the waiter and I/O threads end promptly.
  if (guest_) guest_->Close();
  if (vm_) {
    if (Status stopped = vm_->Stop(kVmStopTimeout); !stopped.ok()) {
      spdlog::warn("stopping the VM: {}", stopped.error().message);
    }
  }
  std::vector<Process*> processes;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, process] : processes_) processes.push_back(process.get());
  }
  for (Process* process : processes) {
    if (process->waiter.joinable()) process->waiter.join();
    if (process->io) process->io->Stop();
  }
  vm_.reset();
  guest_.reset();
  if (storage_prepared_ && plugins_ != nullptr) {
    if (Status released = plugins_->storage().Release(options_.container_id, options_.bundle);
        !released.ok()) {
      spdlog::warn("releasing storage: {}", released.error().message);
    }
    storage_prepared_ = false;
  }
  if (network_attached_ && plugins_ != nullptr && plugins_->network() != nullptr) {
    (void)plugins_->network()->Detach(options_.container_id);
    network_attached_ = false;
  }
  std::error_code error;
  std::filesystem::remove(options_.bundle + "/" + kVmStateFile, error);
  if (plugins_ != nullptr) {
    std::filesystem::remove_all(
        plugins_->config().paths.run_dir + "/vm/" + std::to_string(::getpid()), error);
  }
}

}  // namespace beaconbox::shim
