#include "host/shim/sandbox.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>

#include "common/base/file_util.h"
#include "host/shim/pod_grouping.h"
#include "host/shim/port_forward.h"
#include "host/shim/spec_adapter.h"
#include "host/shim/translate.h"

namespace beaconbox::shim {
namespace {

using namespace std::chrono_literals;

// The guest protocol version this shim speaks (beaconbox.guest.v1.Hello).
constexpr uint32_t kGuestProtocolVersion = 1;
constexpr size_t kMaxSpecSize = 16 << 20;
constexpr auto kGuestNetworkTimeout = 30s;
constexpr auto kGuestPauseTimeout = 10s;
constexpr auto kVmStopTimeout = 5s;

// Milliseconds since `start`, for the one timing line Create and Delete log.
long ElapsedMs(std::chrono::steady_clock::time_point start) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count());
}

Status MakeDirectory(const std::string& path, std::string_view config_key) {
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) {
    return MakeError(ErrorCode::kPermission, "creating " + path + ": " + error.message() +
                                                 " (config key " + std::string(config_key) + ")");
  }
  return Status::Ok();
}

}  // namespace

Sandbox::Sandbox(SandboxBackends backends, Status load_status, RuntimeLayout layout,
                 EventSink& events, SandboxOptions options)
    : backends_(std::move(backends)),
      load_status_(std::move(load_status)),
      layout_(std::move(layout)),
      events_(events),
      options_(std::move(options)),
      state_path_(options_.state_path.empty() ? RuntimeLayout::StateFilePath(options_.bundle)
                                              : options_.state_path) {}

Sandbox::~Sandbox() { Teardown(); }

bool Sandbox::empty() const {
  std::lock_guard lock(mutex_);
  return containers_.empty();
}

Result<std::shared_ptr<Container>> Sandbox::Find(const ContainerKey& key) const {
  std::lock_guard lock(mutex_);
  auto it = containers_.find(key);
  if (it == containers_.end()) {
    return MakeError(ErrorCode::kNotFound, "container " + key.id + " in namespace " +
                                               key.namespace_name + " does not exist");
  }
  return it->second;
}

Status Sandbox::SaveState() {
  Status saved = SaveRecord(state_path_, record_);
  if (!saved.ok()) return saved.error().Wrap("recording the sandbox state");
  return saved;
}

void Sandbox::Reached(std::string_view step,
                      const std::map<std::string, std::string>& annotations) {
  spdlog::debug("{}: {}", options_.key.ToString(), step);
  if (options_.after_step) options_.after_step(step, annotations);
}

Result<std::shared_ptr<Container>> Sandbox::CreateContainer(
    const ContainerKey& key, const task::CreateTaskRequest& request) {
  if (!load_status_.ok()) return load_status_.error();
  std::lock_guard lifecycle(lifecycle_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (containers_.count(key)) {
      return MakeError(ErrorCode::kAlreadyExists, "container " + key.id + ": already exists");
    }
  }
  if (!vm_stopped_because_.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the sandbox's VM was stopped (" + vm_stopped_because_ +
                         "): delete its containers and create the container again");
  }
  // Before anything is made: the shim opens these as root.
  BBX_RETURN_IF_ERROR(CheckStdioFifos(request.stdin(), request.stdout(), request.stderr()));
  const auto started = std::chrono::steady_clock::now();
  // A restore (ctr c restore --live): the checkpoint is read and checked in full before
  // anything is made (sandbox_restore.cc).
  restore_.reset();
  if (!request.checkpoint().empty()) {
    BBX_ASSIGN_OR_RETURN(restore_, ValidateRestore(key, request));
  }
  const long validated_ms = ElapsedMs(started);
  struct ClearRestore {
    std::optional<CheckpointManifest>& restore;
    ~ClearRestore() { restore.reset(); }
  } clear_restore{restore_};
  const std::string bundle = request.bundle().empty() ? options_.bundle : request.bundle();
  BBX_ASSIGN_OR_RETURN(std::string host_spec, ReadSmallFile(bundle + "/config.json", kMaxSpecSize));
  const bool share_vm_dns = backends_.network != nullptr;
  BBX_ASSIGN_OR_RETURN(AdaptedSpec spec, AdaptSpecForGuest(host_spec, share_vm_dns));
  for (const auto& warning : spec.warnings) spdlog::warn("{}: {}", key.ToString(), warning);

  const bool boots_vm = vm_ == nullptr;
  // Before anything is made: a size out of range leaves nothing behind.
  BBX_ASSIGN_OR_RETURN(ContainerResources resources, ResourcesOfSpec(host_spec));
  VmSize joined_size;
  if (boots_vm && restore_) {
    // The saved VM's size: QEMU loads a save only into the VM it was.
    vm_size_ = VmSize{static_cast<uint32_t>(restore_->vcpus), restore_->memory_mib};
    container_resources_.clear();
  } else if (boots_vm) {
    // A CRI pod's sandbox: the VM holds the pod's containers' limits (vm_sizing.h).
    BBX_ASSIGN_OR_RETURN(std::optional<ContainerResources> pod, PodResourcesOf(spec.annotations));
    if (pod) {
      BBX_ASSIGN_OR_RETURN(vm_size_, PodBootSizeFor(*pod, spec.annotations, backends_.vm));
      spdlog::info("VM {}: the pod's resources ({}, from containerd's CRI annotations) size it",
                   options_.key.ToString(), DescribeNeeds(*pod));
      if (VcpusNeeded(*pod) > vm_size_.vcpus ||
          MemoryNeededMib(*pod, backends_.vm) > vm_size_.memory_mib) {
        spdlog::warn(
            "VM {}: the pod's resources need more than vm.max_vcpus/vm.max_memory_mib; it boots "
            "at the maxima and a container that does not fit is refused",
            options_.key.ToString());
      }
    } else {
      BBX_ASSIGN_OR_RETURN(vm_size_, BootSizeFor(resources, spec.annotations, backends_.vm));
    }
    container_resources_.clear();
  } else {
    // A pod's app container: the VM grows by its limits (once it is known to join).
    BBX_ASSIGN_OR_RETURN(joined_size, GrownSizeWith(key, resources));
  }
  if (boots_vm) {
    record_ = SandboxRecord{};
    record_.sandbox = options_.key;
    record_.shim_pid = ::getpid();
    BBX_ASSIGN_OR_RETURN(record_.vm_dir, layout_.VmDir(options_.key));
    record_.console_log_path = layout_.ConsoleLogPath(options_.key);
  }
  record_.containers.push_back({key, bundle, Step::kStarted});

  // Whatever fails from here on undoes what this call did, from the record.
  bool created = false;
  struct Undo {
    Sandbox* sandbox;
    const ContainerKey& key;
    bool boots_vm;
    bool* created;
    ~Undo() {
      if (*created) return;
      if (boots_vm) {
        sandbox->TeardownLocked();
      } else {
        sandbox->ReleaseContainer(key);
      }
    }
  } undo{this, key, boots_vm, &created};

  BBX_RETURN_IF_ERROR(SaveState());
  pluginapi::StoragePrepareRequest storage_request =
      StorageRequestFor(key, bundle, request.rootfs(), spec);
  storage_request.set_vm_run_dir(record_.vm_dir);
  // A pod's containers (CRI's sandbox and app containers) share the VM: their storage
  // goes into one share per VM where the plugin can (pod_grouping.h).
  storage_request.set_pod_share(spec.annotations.contains(kCriContainerType) ||
                                spec.annotations.contains(kCrioContainerType));
  BBX_ASSIGN_OR_RETURN(pluginapi::MountPlan plan, backends_.storage->Prepare(key, storage_request));
  record_.FindContainer(key)->rootfs = Step::kDone;
  BBX_RETURN_IF_ERROR(SaveState());
  Reached("rootfs-prepared", spec.annotations);
  BBX_ASSIGN_OR_RETURN(std::string guest_rootfs, GuestRootfsFor(plan));
  BBX_ASSIGN_OR_RETURN(std::vector<std::string> guest_volumes,
                       GuestVolumePathsFor(plan, spec.volumes.size()));

  // A further container of the VM (a pod's app container) gets nothing hot-added yet:
  // what its plan needs beyond the guest mounts must already be in the VM.
  if (!boots_vm) BBX_RETURN_IF_ERROR(CheckJoinsRunningVm(key, plan));
  const long host_setup_ms = ElapsedMs(started);
  if (boots_vm) BBX_RETURN_IF_ERROR(BootVm(plan, spec.annotations, spec.network_namespace_path));

  std::shared_ptr<GuestClient> guest;
  {
    std::lock_guard lock(mutex_);
    guest = guest_;
  }
  if (!boots_vm) {
    const VmSize before = vm_size_;
    BBX_RETURN_IF_ERROR(GrowVm(joined_size, key.id));
    if (vm_size_ != before) {
      // The guest onlines what was added before the container starts: an Update that
      // carries only the VM's new size (no resources) changes no cgroup.
      task::UpdateTaskRequest online;
      online.set_id(options_.key.id);
      (*online.mutable_annotations())[kVcpusAnnotation] = std::to_string(vm_size_.vcpus);
      (*online.mutable_annotations())[kMemoryAnnotation] = std::to_string(vm_size_.memory_mib);
      google::protobuf::Empty empty;
      Status onlined = guest->CallTask("Update", online, &empty, backends_.vm.guest_call_timeout);
      if (!onlined.ok()) {
        return onlined.error().Wrap("onlining the vCPUs and memory added to the VM for " + key.id);
      }
    }
  }
  const long vm_ready_ms = ElapsedMs(started);
  uint32_t guest_pid = 0;
  std::shared_ptr<const ContainerHooks> hooks;
  if (restore_) {
    // The guest runs the container since the VM was loaded: adopt it, create nothing.
    BBX_ASSIGN_OR_RETURN(guest_pid, AdoptRestoredInit(*guest, key, request));
    Reached("task-created", spec.annotations);
  } else {
    BBX_ASSIGN_OR_RETURN(AdaptedSpec guest_spec,
                         AdaptSpecForGuest(host_spec, share_vm_dns, guest_rootfs, &guest_volumes));
    if (!boots_vm) {
      // A pod's app container: the sandbox container's namespaces, as the guest has them.
      BBX_ASSIGN_OR_RETURN(guest_spec.config_json,
                           JoinPodNamespaces(guest_spec.config_json, HostPid(), first_guest_pid_));
    }
    BBX_ASSIGN_OR_RETURN(guestapi::CreateBundleRequest bundle_request,
                         BundleRequestFor(key, plan, guest_spec.config_json));
    guestapi::CreateBundleResponse bundle_response;
    BBX_RETURN_IF_ERROR(guest->CallGuest("CreateBundle", bundle_request, &bundle_response,
                                         backends_.vm.guest_call_timeout));
    Reached("bundle-created", spec.annotations);
    // prestart and createRuntime run on the host once the VM exists, before the
    // container is created in it; a failure fails the Create (runc's `create`).
    hooks = spec.hooks.empty() ? nullptr
                               : std::make_shared<const ContainerHooks>(spec.hooks, key.id, bundle,
                                                                        spec.annotations);
    if (hooks) BBX_RETURN_IF_ERROR(hooks->RunCreate(HostPid()));

    task::CreateTaskRequest guest_request;
    guest_request.set_id(key.id);
    guest_request.set_bundle(bundle_response.bundle());
    guest_request.set_terminal(request.terminal());
    // In the guest these only say which streams exist; the data flows over the
    // ReadOutput/WriteInput streams.
    guest_request.set_stdin(request.stdin().empty() ? "" : "stdin");
    guest_request.set_stdout(request.stdout().empty() ? "" : "stdout");
    guest_request.set_stderr(request.stderr().empty() ? "" : "stderr");
    task::CreateTaskResponse guest_response;
    BBX_RETURN_IF_ERROR(
        guest->CallTask("Create", guest_request, &guest_response, backends_.vm.guest_call_timeout));
    Reached("task-created", spec.annotations);
    guest_pid = guest_response.pid();
  }
  if (boots_vm) first_guest_pid_ = guest_pid;

  Container::Options container_options;
  container_options.host_pid = HostPid();
  container_options.guest_call_timeout = backends_.vm.guest_call_timeout;
  container_options.kill_timeout = backends_.vm.kill_timeout;
  container_options.pause = [this, key](bool pause) { return PauseFor(key, pause); };
  container_options.stop_vm = [this](const std::string& why) { StopVm(why); };
  container_options.hooks = hooks;
  if (restore_) {
    container_options.guest_id = restore_->guest_container_id;
    container_options.init_running_in_guest = true;
  }
  auto container = std::make_shared<Container>(key, guest, events_, std::move(container_options),
                                               request, guest_pid);
  {
    std::lock_guard lock(mutex_);
    containers_[key] = container;
  }
  container_resources_[key] = resources;
  created = true;
  spdlog::info(
      "container {} created in the VM (pid {}, {} in the guest): host setup {} ms, VMM start to "
      "agent ready {} ms (VMM start {} ms), container create {} ms",
      key.ToString(), container->host_pid(), guest_pid, host_setup_ms, vm_ready_ms - host_setup_ms,
      vmm_start_ms_, ElapsedMs(started) - vm_ready_ms);
  if (restore_) {
    // e2e_beaconbox_checkpoint prints this line (README "Checkpoint and restore").
    spdlog::info(
        "restore of {}: {} ms (checkpoint validated {} ms, VMM start and load {} ms, network, "
        "agent ready and guest refreshed {} ms, adopted container {} of the guest {} ms)",
        key.ToString(), ElapsedMs(started), validated_ms, vmm_start_ms_,
        vm_ready_ms - host_setup_ms - vmm_start_ms_, restore_->guest_container_id,
        ElapsedMs(started) - vm_ready_ms);
  }
  return container;
}

Result<VmSize> Sandbox::GrownSizeWith(const ContainerKey& key,
                                      const ContainerResources& resources) const {
  // The VM booted holding the first container's (or the pod's declared) limits; what
  // its containers' limits need together, counting the guest overhead once, is what it
  // must have now.
  ContainerResources together = resources;
  bool shared = false;
  for (const auto& [other, other_resources] : container_resources_) {
    if (other == key) continue;
    together = AddResources(together, other_resources);
    shared = true;
  }
  auto grown = GrownSizeFor(together, vm_size_, backends_.vm);
  if (grown.ok() || !shared) return grown;
  return MakeError(grown.error().code, "container " + key.id + " (" + DescribeNeeds(resources) +
                                           ") does not fit in the VM of " + options_.key.id +
                                           " beside its other containers (together " +
                                           DescribeNeeds(together) + "): " + grown.error().message);
}

Status Sandbox::GrowVm(VmSize grown, const std::string& for_whom) {
  // One resource at a time, so that vm_size_ stays what the VM really has.
  const VmSize before = vm_size_;
  auto grow = [&](const char* what, uint32_t vcpus, uint64_t memory_mib) -> Status {
    const auto started = std::chrono::steady_clock::now();
    Status resized = vm_->Resize(vcpus, memory_mib);
    if (resized.ok()) {
      if (vcpus != 0) vm_size_.vcpus = vcpus;
      if (memory_mib != 0) vm_size_.memory_mib = memory_mib;
      spdlog::info("VM {}: {} hot-added for {} in {} ms (now {} vCPUs, {} MiB)",
                   options_.key.ToString(), what, for_whom, ElapsedMs(started), vm_size_.vcpus,
                   vm_size_.memory_mib);
      return resized;
    }
    if (resized.error().code == ErrorCode::kNotImplemented) {
      // The limits still apply, within the VM as it is.
      spdlog::warn("VM {} stays at {} vCPUs, {} MiB ({}): the limits of {} apply within it",
                   options_.key.ToString(), vm_size_.vcpus, vm_size_.memory_mib,
                   resized.error().message, for_whom);
      return Status::Ok();
    }
    return resized.error().Wrap(std::string("hot-adding ") + what + " to the VM for " + for_whom);
  };
  if (!vm_) return MakeError(ErrorCode::kFailedPrecondition, "the sandbox has no VM");
  if (grown.vcpus > before.vcpus) BBX_RETURN_IF_ERROR(grow("vCPUs", grown.vcpus, 0));
  if (grown.memory_mib > before.memory_mib) {
    BBX_RETURN_IF_ERROR(grow("memory", 0, grown.memory_mib));
  }
  return Status::Ok();
}

Status Sandbox::CheckJoinsRunningVm(const ContainerKey& key, const pluginapi::MountPlan& plan) {
  // Shares the VM already has (same tag, same host directory: a pod share, whose
  // virtiofsd sees what the plugin mounted below it since) need nothing added.
  auto in_vm = [this](const pluginapi::Device& device) {
    if (!device.has_share()) return false;
    for (const auto& booted : boot_devices_) {
      if (booted.has_share() && booted.share().tag() == device.share().tag() &&
          booted.share().host_path() == device.share().host_path() &&
          booted.share().read_only() == device.share().read_only()) {
        return true;
      }
    }
    return false;
  };
  std::string needs;
  for (const auto& device : plan.devices()) {
    if (in_vm(device)) continue;
    if (!needs.empty()) needs += ", ";
    if (device.has_share()) {
      needs += "virtio-fs share '" + device.share().tag().substr(0, 64) + "'";
    } else if (device.has_block()) {
      needs += "disk '" + device.block().id().substr(0, 64) + "'";
    } else {
      needs += "a device";
    }
  }
  if (needs.empty()) return Status::Ok();
  // Hot-adding them (VMM vm_add_device, per-container share tags) is what is missing;
  // until then the container is refused rather than given the first container's rootfs.
  // The storage plugins plan a pod's containers on the shares the VM boots with; what
  // still needs a device is a disk (storage-erofs' scratch disk) or a share of the
  // container's own (its writable_layer = "host").
  return MakeError(ErrorCode::kNotImplemented,
                   "container " + key.id + " would join the running VM of " + options_.key.id +
                       " but its storage needs " + needs +
                       " added to that VM: adding a disk or share to a running VM "
                       "(vm_add_device) is not implemented; with storage.driver = \"erofs\" "
                       "set scratch_size_mib = 0 and writable_layer = \"vm\" for pods");
}

Status Sandbox::BootVm(const pluginapi::MountPlan& plan,
                       const std::map<std::string, std::string>& annotations,
                       const std::string& netns_path) {
  if (backends_.network != nullptr) {
    record_.network = Step::kStarted;
    BBX_RETURN_IF_ERROR(SaveState());
    pluginapi::NetworkAttachRequest request;
    request.set_container_id(options_.key.id);
    request.set_namespace_(options_.key.namespace_name);
    request.set_owner_pid(::getpid());
    request.set_netns_path(netns_path);
    for (const auto& [name, value] : annotations) (*request.mutable_annotations())[name] = value;
    BBX_ASSIGN_OR_RETURN(attachment_, backends_.network->Attach(options_.key, request));
    record_.network = Step::kDone;
    BBX_RETURN_IF_ERROR(SaveState());
    Reached("network-attached", annotations);
  }

  record_.vm = Step::kStarted;
  BBX_RETURN_IF_ERROR(SaveState());
  BBX_RETURN_IF_ERROR(MakeDirectory(record_.vm_dir, "paths.run_dir"));
  BBX_RETURN_IF_ERROR(MakeDirectory(layout_.log_dir(), "paths.log_dir"));
  VmPlacement placement{options_.key, record_.vm_dir, record_.console_log_path, ::getpid()};
  // The boot size follows the container (vm_sizing.h); the maxima stay the hotplug
  // ceiling.
  VmSettings sized = backends_.vm;
  sized.vcpus = vm_size_.vcpus;
  sized.memory_mib = vm_size_.memory_mib;
  sized.max_vcpus = std::max(sized.max_vcpus, sized.vcpus);
  sized.max_memory_mib = std::max(sized.max_memory_mib, sized.memory_mib);
  pluginapi::VmSpec spec = VmSpecFor(sized, placement, plan, attachment_ ? &*attachment_ : nullptr);
  if (restore_) {
    spec.set_restore_dir(restore_dir_);
    for (const auto& file : restore_->files) spec.add_restore_files(file.name);
    spec.set_restore_vmm_version(restore_->vmm_version);
  }
  boot_devices_.assign(plan.devices().begin(), plan.devices().end());
  boot_size_ = vm_size_;
  const auto vmm_started = std::chrono::steady_clock::now();
  BBX_ASSIGN_OR_RETURN(vm_, backends_.vmm->CreateVm(spec));
  vmm_start_ms_ = ElapsedMs(vmm_started);
  if (auto info = vm_->Info(); info.ok()) {
    record_.vm_info = *info;
    spdlog::info("VM {} uses {} ({} vCPUs, {} MiB): {}", options_.key.ToString(),
                 info->accelerator(), vm_size_.vcpus, vm_size_.memory_mib,
                 info->accelerator_reason().substr(0, 600));
  } else {
    spdlog::warn("VM info of {}: {}", options_.key.ToString(), info.error().message);
  }
  record_.vm = Step::kDone;
  BBX_RETURN_IF_ERROR(SaveState());
  Reached("vm-created", annotations);

  BBX_RETURN_IF_ERROR(ConnectGuest());
  Reached("guest-connected", annotations);

  if (attachment_) {
    std::shared_ptr<GuestClient> guest;
    {
      std::lock_guard lock(mutex_);
      guest = guest_;
    }
    guestapi::Empty empty;
    guestapi::NetworkConfig network = GuestNetworkFor(*attachment_);
    // A restored guest still has the saved VM's MAC, addresses and routes on its NIC.
    network.set_restored(restore_.has_value());
    BBX_RETURN_IF_ERROR(
        guest->CallGuest("ConfigureNetwork", network, &empty, kGuestNetworkTimeout));
    Reached("guest-network-configured", annotations);
  }
  StartPortForward(annotations, netns_path);
  return Status::Ok();
}

void Sandbox::StartPortForward(const std::map<std::string, std::string>& annotations,
                               const std::string& netns_path) {
  // CRI's port-forward dials localhost in the pod's namespace (port_forward.h): only a
  // CRI pod sandbox with that namespace gets the relay.
  auto type = annotations.find(kCriContainerType);
  if (netns_path.empty() || type == annotations.end() || type->second != "sandbox") return;
  std::shared_ptr<GuestClient> guest;
  {
    std::lock_guard lock(mutex_);
    guest = guest_;
  }
  if (!guest) return;
  auto relay = PortForwardRelay::Start(netns_path, std::move(guest), options_.key.ToString());
  if (!relay.ok()) {
    // The pod runs without it: port-forward fails as if nothing listened.
    spdlog::warn("{}: port-forward into the VM is unavailable: {}", options_.key.ToString(),
                 relay.error().message);
    return;
  }
  port_forward_ = std::move(*relay);
}

Status Sandbox::ConnectGuest() {
  const auto timeout = backends_.vm.guest_connect_timeout;
  const auto connect_started = std::chrono::steady_clock::now();
  const auto deadline = connect_started + timeout;
  BBX_ASSIGN_OR_RETURN(UniqueFd channel, vm_->ConnectGuest(timeout));
  const long channel_ms = ElapsedMs(connect_started);
  auto guest = std::make_shared<GuestClient>(
      std::move(channel), vm_->AgentToken(),
      restore_ ? static_cast<uint32_t>(restore_->guest_stream_id) : 1);
  {
    std::lock_guard lock(mutex_);
    guest_ = guest;
  }
  auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  guestapi::HelloRequest hello;
  hello.set_protocol_version(kGuestProtocolVersion);
  guestapi::HelloResponse reply;
  Status status = guest->CallGuest("Hello", hello, &reply, std::max(remaining, 1ms));
  if (!status.ok()) {
    return MakeError(status.error().code,
                     "guest agent did not answer within " + std::to_string(timeout.count()) +
                         " ms (config key vm.guest_connect_timeout_ms): " + status.error().message +
                         "; console: " + ReadFileTail(record_.console_log_path, 2048));
  }
  spdlog::info("guest agent {} ready: kernel {}", reply.agent_version().substr(0, 64),
               reply.kernel_release().substr(0, 64));
  // A VM restored from a template starts with the template's random pool and clock;
  // a cold boot has its own (and skips the call: 6-7 ms under TCG).
  if (record_.vm_info.restored_from_template() || restore_) {
    bool refreshed = false;
    uint64_t refreshed_at_us = 0;
    remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    Status refresh =
        RefreshGuest(*guest, std::max(remaining, 1000ms), &refreshed, &refreshed_at_us);
    if (!refresh.ok()) return refresh.error().Wrap("refreshing the guest's random pool and clock");
    if (!refreshed)
      spdlog::info("guest agent has no Refresh call: random pool and clock not refreshed");
    // The guest's own "refreshed" step joins its timeline below (e2e_beaconbox_template
    // reads it back for each clone; DescribeGuestBoot checks it like the others).
    if (refreshed_at_us != 0) {
      guestapi::BootStep* step = reply.add_boot_steps();
      step->set_name("refreshed");
      step->set_at_us(refreshed_at_us);
    }
  }
  // bench/boot reads this line: the host's view (from the VMM's start until the agent
  // answers) beside the guest's own clock (from its kernel's clock start).
  spdlog::info(
      "guest boot of {}: agent channel {} ms, Hello answered {} ms after the VMM started; guest "
      "clock: {}",
      options_.key.ToString(), channel_ms, ElapsedMs(connect_started), DescribeGuestBoot(reply));
  return Status::Ok();
}

uint32_t Sandbox::HostPid() const {
  // The VMM's pid; the shim's own when the VMM plugin did not say (then the shim is
  // still a host process that holds the container, never someone else's).
  const int64_t vmm_pid = record_.vm_info.vmm_pid();
  if (vmm_pid > 0 && vmm_pid <= std::numeric_limits<int32_t>::max()) {
    return static_cast<uint32_t>(vmm_pid);
  }
  return static_cast<uint32_t>(::getpid());
}

void Sandbox::StopVm(const std::string& why) {
  std::lock_guard lifecycle(lifecycle_mutex_);
  std::shared_ptr<GuestClient> guest;
  {
    std::lock_guard lock(mutex_);
    guest = guest_;
  }
  if (vm_stopped_because_.empty()) {
    spdlog::warn("{}: stopping the VM of {}", why, options_.key.ToString());
    vm_stopped_because_ = why;
  }
  // The VMM backend, not the guest: a hostile guest cannot keep its VM running. The
  // handle stays for teardown (stopping twice is a no-op); the connection is closed
  // whatever the VMM did, so that every call on the guest ends now.
  if (vm_) {
    if (Status stopped = vm_->Stop(kVmStopTimeout); !stopped.ok()) {
      spdlog::warn("stopping the VM of {}: {}", options_.key.ToString(), stopped.error().message);
    }
  }
  if (guest) guest->Close();
}

Status Sandbox::PauseFor(const ContainerKey& key, bool pause) {
  std::lock_guard lifecycle(lifecycle_mutex_);
  size_t containers = 0;
  std::shared_ptr<GuestClient> guest;
  {
    std::lock_guard lock(mutex_);
    containers = containers_.size();
    guest = guest_;
  }
  // Alone in its VM, a container is paused with the whole VM (nothing else runs
  // there); sharing it, only its own processes are, by the guest.
  if (containers <= 1 && vm_) return pause ? vm_->Pause() : vm_->Resume();
  if (!guest) return MakeError(ErrorCode::kFailedPrecondition, "the sandbox has no VM");
  google::protobuf::Empty empty;
  if (pause) {
    task::PauseRequest request;
    request.set_id(key.id);
    return guest->CallTask("Pause", request, &empty, kGuestPauseTimeout);
  }
  task::ResumeRequest request;
  request.set_id(key.id);
  return guest->CallTask("Resume", request, &empty, kGuestPauseTimeout);
}

Result<ExitInfo> Sandbox::DeleteContainer(const ContainerKey& key) {
  std::shared_ptr<Container> container;
  ExitInfo exit;
  {
    std::lock_guard lifecycle(lifecycle_mutex_);
    BBX_ASSIGN_OR_RETURN(container, Find(key));
    BBX_RETURN_IF_ERROR(CheckDeletesLast(key));
    BBX_ASSIGN_OR_RETURN(exit, container->BeginDelete());
    const auto teardown_started = std::chrono::steady_clock::now();
    bool last = false;
    {
      std::lock_guard lock(mutex_);
      containers_.erase(key);
      last = containers_.empty();
    }
    if (last) {
      TeardownLocked();
    } else {
      ReleaseContainer(key);
    }
    spdlog::info("container {} deleted: teardown {} ms", key.ToString(),
                 ElapsedMs(teardown_started));
  }
  // runc runs the poststop hooks in `runc delete`, once the container is gone.
  if (container->hooks()) container->hooks()->RunPoststop(exit.pid);
  container->FinishDelete(exit);
  return exit;
}

Status Sandbox::CheckDeletesLast(const ContainerKey& key) const {
  if (key != options_.key) return Status::Ok();
  std::string others;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [other, container] : containers_) {
      if (other == key) continue;
      if (!others.empty()) others += ", ";
      others += other.id;
    }
  }
  if (others.empty()) return Status::Ok();
  // Its bundle holds the state file, and the shim serves from it; containerd's CRI
  // deletes a pod's app containers before its sandbox.
  return MakeError(ErrorCode::kFailedPrecondition, "container " + key.id + " started the VM that " +
                                                       others.substr(0, 400) +
                                                       " run in: delete those first");
}

void Sandbox::ReleaseContainer(const ContainerKey& key) {
  ContainerRecord* record = record_.FindContainer(key);
  if (record == nullptr) return;
  if (record->rootfs != Step::kNone && backends_.storage != nullptr) {
    if (Status released = backends_.storage->Release(key, record->bundle); !released.ok()) {
      spdlog::warn("releasing the rootfs of {}: {}", key.ToString(), released.error().message);
    }
  }
  std::erase_if(record_.containers, [&key](const ContainerRecord& c) { return c.key == key; });
  // The VM keeps its size (no hot-remove); the next container fits in what it freed.
  container_resources_.erase(key);
  if (Status saved = SaveState(); !saved.ok()) spdlog::warn("{}", saved.error().message);
}

void Sandbox::Teardown() {
  std::lock_guard lifecycle(lifecycle_mutex_);
  TeardownLocked();
}

void Sandbox::TeardownLocked() {
  if (port_forward_) {
    port_forward_->Stop();
    port_forward_.reset();
  }
  std::shared_ptr<GuestClient> guest;
  std::map<ContainerKey, std::shared_ptr<Container>> containers;
  {
    std::lock_guard lock(mutex_);
    guest = std::move(guest_);
    containers.swap(containers_);
  }
  // Closing the guest connection first fails every call still waiting on the guest,
  // so the waiter and I/O threads end promptly.
  if (guest) guest->Close();
  for (auto& [key, container] : containers) container->Shutdown();
  if (record_.containers.empty() && record_.vm == Step::kNone && record_.network == Step::kNone &&
      !vm_) {
    return;  // nothing was ever set up (or it is gone already)
  }
  TeardownFromRecord(record_, backends_, layout_, std::move(vm_), state_path_);
  record_ = SandboxRecord{};
  container_resources_.clear();
  attachment_.reset();
}

}  // namespace beaconbox::shim
