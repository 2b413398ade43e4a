#include "host/shim/plugin_backends.h"

#include "host/plugin_host/vm_resources.h"

namespace beaconbox::shim {

namespace {

class PluginVm final : public VmHandle {
 public:
  PluginVm(std::unique_ptr<plugin_host::Vm> vm, std::string agent_token,
           pluginapi::Capabilities capabilities)
      : vm_(std::move(vm)),
        agent_token_(std::move(agent_token)),
        capabilities_(std::move(capabilities)) {}
  Result<UniqueFd> ConnectGuest(std::chrono::milliseconds timeout) override {
    return vm_->ConnectGuest(timeout);
  }
  Result<pluginapi::VmInfo> Info() override { return vm_->Info(); }
  Status Stop(std::chrono::milliseconds timeout) override { return vm_->Stop(timeout); }
  Status Pause() override { return vm_->Pause(); }
  Status Resume() override { return vm_->Resume(); }
  std::string AgentToken() const override { return agent_token_; }
  // The plugin's Capabilities say whether it can hot-add vCPUs and memory; one that
  // cannot is not asked (vm_resize would not be there or would fail).
  Status Resize(uint32_t vcpus, uint64_t memory_mib) override {
    if (vcpus != 0 && !capabilities_.resize_vcpus()) {
      return MakeError(ErrorCode::kNotImplemented,
                       "the vmm plugin cannot hot-add vCPUs (Capabilities.resize_vcpus is false)");
    }
    if (memory_mib != 0 && !capabilities_.resize_memory()) {
      return MakeError(
          ErrorCode::kNotImplemented,
          "the vmm plugin cannot hot-add memory (Capabilities.resize_memory is false)");
    }
    return vm_->Resize(vcpus, memory_mib);
  }
  Result<pluginapi::VmSaved> SaveVm(const std::string& dir) override {
    if (!capabilities_.save()) {
      return MakeError(ErrorCode::kNotImplemented,
                       "the vmm plugin cannot save a running VM (Capabilities.save is false; "
                       "of the in-tree plugins only qemu can)");
    }
    return vm_->Save(dir);
  }

 private:
  std::unique_ptr<plugin_host::Vm> vm_;
  const std::string agent_token_;
  const pluginapi::Capabilities capabilities_;
};

}  // namespace

// Completes the VmSpec with what the host decides for every VMM plugin alike (the
// agent channel, its token and the guest CID, the guest's kernel arguments, each
// share's vhost-user socket), so no VMM plugin decides them on its own.
class PluginBackends::Vmm final : public VmmBackend {
 public:
  Vmm(plugin_host::VmmPlugin& plugin, const config::Config& config)
      : plugin_(plugin), config_(config) {}
  Result<std::unique_ptr<VmHandle>> CreateVm(const pluginapi::VmSpec& spec) override {
    pluginapi::VmSpec complete = spec;
    BBX_ASSIGN_OR_RETURN(pluginapi::Capabilities capabilities, plugin_.Capabilities());
    BBX_ASSIGN_OR_RETURN(plugin_host::AgentChannelPlan channel,
                         plugin_host::PlanAgentChannel(capabilities, plugin_host::HostHasVsock(),
                                                       config_.paths.run_dir, spec.run_dir()));
    *complete.mutable_agent_channel() = channel.channel;
    complete.set_agent_token(channel.token);
    for (const auto& arg :
         plugin_host::GuestKernelArgs(channel.channel, spec.memory_mib(), spec.max_memory_mib())) {
      complete.add_guest_kernel_args(arg);
    }
    BBX_RETURN_IF_ERROR(plugin_host::AssignShareSockets(complete, spec.run_dir()));
    BBX_ASSIGN_OR_RETURN(std::unique_ptr<plugin_host::Vm> vm,
                         plugin_.CreateVm(complete, std::move(channel.guest_cid.lock)));
    return std::unique_ptr<VmHandle>(
        std::make_unique<PluginVm>(std::move(vm), channel.token, std::move(capabilities)));
  }
  Status CleanupStale(const pluginapi::VmInfo& info) override { return plugin_.CleanupStale(info); }

 private:
  plugin_host::VmmPlugin& plugin_;
  const config::Config& config_;
};

class PluginBackends::Storage final : public StorageBackend {
 public:
  explicit Storage(plugin_host::StoragePlugin& plugin) : plugin_(plugin) {}
  Result<pluginapi::MountPlan> Prepare(const ContainerKey&,
                                       const pluginapi::StoragePrepareRequest& request) override {
    return plugin_.Prepare(request);
  }
  Status Release(const ContainerKey& key, const std::string& bundle) override {
    return plugin_.Release(key.namespace_name, key.id, bundle);
  }

 private:
  plugin_host::StoragePlugin& plugin_;
};

class PluginBackends::Network final : public NetworkBackend {
 public:
  explicit Network(plugin_host::NetworkPlugin& plugin) : plugin_(plugin) {}
  Result<pluginapi::NetworkAttachment> Attach(
      const ContainerKey& key, const pluginapi::NetworkAttachRequest& request) override {
    pluginapi::NetworkAttachRequest keyed = request;
    keyed.set_namespace_(key.namespace_name);
    keyed.set_container_id(key.id);
    return plugin_.Attach(keyed);
  }
  Status Detach(const ContainerKey& key) override {
    return plugin_.Detach(key.namespace_name, key.id);
  }

 private:
  plugin_host::NetworkPlugin& plugin_;
};

PluginBackends::PluginBackends(std::unique_ptr<plugin_host::PluginHost> host)
    : host_(std::move(host)),
      vmm_(std::make_unique<Vmm>(host_->vmm(), host_->config())),
      storage_(std::make_unique<Storage>(host_->storage())),
      network_(host_->network() ? std::make_unique<Network>(*host_->network()) : nullptr) {}

PluginBackends::~PluginBackends() = default;

SandboxBackends PluginBackends::backends() {
  const config::VmConfig& vm = host_->config().vm;
  SandboxBackends backends;
  backends.vmm = vmm_.get();
  backends.storage = storage_.get();
  backends.network = network_.get();
  backends.vm.vmm_plugin = vm.vmm;
  backends.vm.kernel_path = vm.kernel_path;
  backends.vm.initrd_path = vm.initrd_path;
  backends.vm.kernel_cmdline = vm.kernel_cmdline;
  backends.vm.vcpus = vm.vcpus;
  backends.vm.max_vcpus = vm.max_vcpus;
  backends.vm.memory_mib = vm.memory_mib;
  backends.vm.max_memory_mib = vm.max_memory_mib;
  backends.vm.guest_overhead_mib = vm.guest_overhead_mib;
  backends.vm.guest_connect_timeout = std::chrono::milliseconds(vm.guest_connect_timeout_ms);
  backends.vm.guest_call_timeout = std::chrono::milliseconds(vm.guest_call_timeout_ms);
  backends.vm.kill_timeout = std::chrono::milliseconds(vm.kill_timeout_ms);
  return backends;
}

RuntimeLayout PluginBackends::layout() const { return LayoutFromConfig(host_->config()); }

const std::string& PluginBackends::config_source() const { return host_->config().source; }

Result<std::unique_ptr<PluginBackends>> LoadPlugins() {
  BBX_ASSIGN_OR_RETURN(std::unique_ptr<plugin_host::PluginHost> host,
                       plugin_host::LoadFromDefaultConfig());
  // Only the picked VMM, network and storage plugins serve; the others would stay
  // mapped for the shim's life (issue 16: shim RSS).
  host->UnloadUnpicked();
  return std::make_unique<PluginBackends>(std::move(host));
}

RuntimeLayout LayoutFromConfig(const config::Config& config) {
  return RuntimeLayout(config.paths.run_dir, config.paths.log_dir,
                       std::chrono::seconds(config.vm.console_log_retention_s),
                       config.paths.state_dir);
}

}  // namespace beaconbox::shim
