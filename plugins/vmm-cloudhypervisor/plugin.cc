// The vmm-cloudhypervisor plugin's C entry: ops table, config parsing, and
// translation to ChVm. The logic lives in ch_vm.cc (the VM), ch_api.cc (the REST API)
// and vm_config.cc (VmSpec to VmConfig); child processes, virtiofsd and PATH search in
// plugins/common; the capped console log is vmm-qemu's.
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <new>

#include "beaconbox/plugin/v1/plugin.pb.h"
#include "beaconbox/plugin_support.hpp"
#include "plugins/common/abi_error.h"
#include "plugins/common/check_report.h"
#include "plugins/common/child_process.h"
#include "plugins/common/config_range.h"
#include "plugins/common/path_search.h"
#include "plugins/common/virtiofsd.h"
#include "plugins/common/vmm_ops.h"
#include "plugins/vmm-cloudhypervisor/ch_vm.h"

struct bbx_plugin {
  const bbx_host_services* host;
  beaconbox::cloudhv::ChConfig config;
  beaconbox::plugins::Spawner spawner;  // forks CH and virtiofsd; lives until fini
};

struct bbx_vm {
  std::unique_ptr<beaconbox::cloudhv::ChVm> vm;
  const bbx_host_services* host = nullptr;
};

namespace {

namespace pluginapi = ::beaconbox::plugin::v1;
using beaconbox::plugins::Fail;
using beaconbox::plugins::IntegerInRange;
using namespace std::chrono_literals;

const bbx_config_key kConfigKeys[] = {
    bbx::ConfigKey("binary", BBX_CONFIG_STRING, "\"cloud-hypervisor\"",
                   "the cloud-hypervisor binary (v48+, built with the fw_cfg feature); a name "
                   "without '/' is looked up in PATH",
                   "CLOUD_HYPERVISOR_PATH"),
    bbx::ConfigKey("virtiofsd", BBX_CONFIG_STRING, "\"/usr/lib/qemu/virtiofsd\"",
                   "the virtio-fs daemon"),
    bbx::ConfigKey("kvm_device", BBX_CONFIG_STRING, "\"/dev/kvm\"",
                   "checked by `beaconbox-ctl check` and named in boot errors (CH needs KVM)"),
    bbx::ConfigKey("kernel", BBX_CONFIG_STRING, "\"auto\"",
                   "the kernel cloud-hypervisor boots: \"auto\" = the uncompressed PVH vmlinux "
                   "the guest image build puts next to vm.kernel_path when there, else "
                   "vm.kernel_path; \"\" = vm.kernel_path; else that file"),
    bbx::ConfigKey("api_socket_timeout_ms", BBX_CONFIG_INTEGER, "10000",
                   "how long cloud-hypervisor may take to open its API socket (100 to 600000)"),
    bbx::ConfigKey("api_call_timeout_ms", BBX_CONFIG_INTEGER, "30000",
                   "how long one REST API call may take (100 to 600000)"),
    bbx::ConfigKey("console_log_max_bytes", BBX_CONFIG_INTEGER, "4194304",
                   "disk a VM's console log takes at most (the log and its one rotated "
                   "predecessor <log>.1; 65536 to 1073741824)"),
};

bbx_status Init(const bbx_host_services* host, bbx_bytes config_toml, bbx_plugin** out,
                bbx_error* error) {
  beaconbox::cloudhv::ChConfig config;
  try {
    toml::table table = toml::parse(bbx::View(config_toml));
    config.binary =
        beaconbox::plugins::FindInPath(table["binary"].value_or(std::string("cloud-hypervisor")));
    config.virtiofsd = table["virtiofsd"].value_or(config.virtiofsd);
    config.kvm_device = table["kvm_device"].value_or(config.kvm_device);
    config.kernel = table["kernel"].value_or(config.kernel);
    auto api_socket_timeout = IntegerInRange(table, "api_socket_timeout_ms", 10000, 100, 600000);
    if (!api_socket_timeout.ok()) return Fail(api_socket_timeout.error(), error);
    config.api_socket_timeout = std::chrono::milliseconds(*api_socket_timeout);
    auto api_call_timeout = IntegerInRange(table, "api_call_timeout_ms", 30000, 100, 600000);
    if (!api_call_timeout.ok()) return Fail(api_call_timeout.error(), error);
    config.api_call_timeout = std::chrono::milliseconds(*api_call_timeout);
    auto console_log_max_bytes = beaconbox::plugins::ConsoleLogMaxBytes(table);
    if (!console_log_max_bytes.ok()) return Fail(console_log_max_bytes.error(), error);
    config.console_log_max_bytes = *console_log_max_bytes;
  } catch (const toml::parse_error& parse_error) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                     std::string("config: ") + std::string(parse_error.description()));
  }
  if (!config.kernel.empty() && config.kernel != "auto" && config.kernel[0] != '/') {
    return bbx::Fail(
        error, BBX_ERR_INVALID_ARGUMENT,
        "kernel = \"" + config.kernel + "\": use \"auto\", \"\" or an absolute path to a vmlinux");
  }
  auto* plugin = new (std::nothrow) bbx_plugin{host, config, {}};
  if (plugin == nullptr) return bbx::Fail(error, BBX_ERR_INTERNAL, "out of memory");
  *out = plugin;
  return BBX_OK;
}

void Fini(bbx_plugin* plugin) { delete plugin; }

bbx_status VmCreate(bbx_plugin* plugin, bbx_bytes spec_bytes, bbx_vm** out, bbx_error* error) {
  pluginapi::VmSpec spec;
  if (!spec.ParseFromArray(spec_bytes.data, static_cast<int>(spec_bytes.len))) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "unparsable VmSpec");
  }
  if (!spec.restore_dir().empty()) {
    return bbx::Fail(error, BBX_ERR_NOT_IMPLEMENTED,
                     "the cloud-hypervisor plugin cannot save or restore a VM (no "
                     "Capabilities.save); use vmm = \"qemu\" for checkpoints");
  }
  auto vm = beaconbox::cloudhv::ChVm::Create(spec, plugin->config, plugin->spawner);
  if (!vm.ok()) return Fail(vm.error(), error);
  *out = new bbx_vm{std::move(vm).value(), plugin->host};
  return BBX_OK;
}

// The plugin's own host-side time per REST call for this VM, one INFO line (bench/
// reads it): "cloud-hypervisor API time: vm.create 1x 2.1 ms, ...".
void LogApiTimes(const bbx_host_services* host, const beaconbox::cloudhv::ChVm& vm) {
  std::string line = "cloud-hypervisor API time:";
  for (const auto& [call, timing] : vm.api_timings()) {
    char figure[96];
    std::snprintf(figure, sizeof(figure), " %s %llux %.2f ms,", call.c_str(),
                  static_cast<unsigned long long>(timing.calls),
                  std::chrono::duration<double, std::milli>(timing.total).count() /
                      static_cast<double>(std::max<uint64_t>(timing.calls, 1)));
    line += figure;
  }
  if (line.back() == ',') line.pop_back();
  bbx::Log(host, BBX_LOG_INFO, line + " (mean per call)");
}

void VmDestroy(bbx_vm* vm) {
  if (vm->host != nullptr) LogApiTimes(vm->host, *vm->vm);
  delete vm;
}

bbx_status VmAddDevice(bbx_vm* vm, bbx_bytes device_bytes, bbx_error* error) {
  pluginapi::Device device;
  if (!device.ParseFromArray(device_bytes.data, static_cast<int>(device_bytes.len))) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "unparsable Device");
  }
  auto status = vm->vm->AddDevice(device);
  return status.ok() ? BBX_OK : Fail(status.error(), error);
}

// Ends only the recorded processes of a dead shim's VM (plugins/common/vmm_ops.h).
bbx_status VmCleanupStale(bbx_plugin* plugin, bbx_bytes info, bbx_error* error) {
  return beaconbox::plugins::CleanupStaleVm(info, {plugin->config.binary, plugin->config.virtiofsd},
                                            error);
}

// Its own prerequisites: the binary, virtiofsd and KVM. The version and the fw_cfg
// feature show only once CH runs (vmm.ping, vm.info at create). The vmlinux is the
// host's check (vm.kernel_path).
bbx_status Check(bbx_plugin* plugin, bbx_sink report_sink, bbx_error* error) {
  pluginapi::CheckReport report;
  auto line = [&](pluginapi::CheckLevel level, const std::string& what, const std::string& detail) {
    beaconbox::plugins::AddCheckLine(report, level, what, detail);
  };
  const beaconbox::cloudhv::ChConfig& config = plugin->config;
  if (::access(config.binary.c_str(), X_OK) == 0) {
    line(pluginapi::CHECK_OK, "cloud-hypervisor",
         config.binary + " (needs v" + std::to_string(beaconbox::cloudhv::kMinVersionMajor) +
             "+ with the fw_cfg feature; checked at VM create)");
  } else {
    line(pluginapi::CHECK_FAIL, "cloud-hypervisor",
         config.binary +
             " is not executable (config key binary, env CLOUD_HYPERVISOR_PATH): install Cloud "
             "Hypervisor from its releases, or fix the path");
  }
  beaconbox::plugins::AddVirtiofsdCheck(report, config.virtiofsd);
  if (config.kernel == "auto") {
    line(pluginapi::CHECK_OK, "kernel",
         "auto: the PVH vmlinux the guest image build writes next to vm.kernel_path when "
         "there, else vm.kernel_path");
  } else if (config.kernel.empty()) {
    line(pluginapi::CHECK_WARN, "kernel",
         "vm.kernel_path as is: Cloud Hypervisor direct-boots an uncompressed PVH vmlinux; "
         "set kernel = \"auto\" or a vmlinux path");
  } else if (std::string problem = beaconbox::cloudhv::VmlinuxProblem(config.kernel);
             !problem.empty()) {
    line(pluginapi::CHECK_FAIL, "kernel",
         problem +
             " (config key kernel): use the beaconbox-vmlinux-x86_64 the guest image "
             "build writes, or kernel = \"auto\"");
  } else {
    line(pluginapi::CHECK_OK, "kernel", config.kernel + " (ELF vmlinux)");
  }
  std::string kvm = beaconbox::cloudhv::KvmProblem(config.kvm_device);
  if (kvm.empty()) {
    line(pluginapi::CHECK_OK, "kvm", config.kvm_device + " opens read-write");
  } else {
    line(pluginapi::CHECK_FAIL, "kvm", kvm);
  }
  return bbx::WriteSink(report_sink, report.SerializeAsString(), error);
}

bbx_status Capabilities(bbx_plugin*, bbx_sink sink, bbx_error* error) {
  pluginapi::Capabilities capabilities;
  capabilities.set_pause(true);
  capabilities.set_resize_vcpus(true);
  capabilities.set_resize_memory(true);
  capabilities.set_hotplug_disks(true);
  capabilities.set_hotplug_nics(true);
  capabilities.set_hotplug_shares(true);
  capabilities.set_read_only_shares(true);
  capabilities.add_agent_channels(pluginapi::AGENT_CHANNEL_HYBRID_VSOCK);
  capabilities.set_agent_token(true);  // through fw_cfg, see vm_config.h
  return bbx::WriteSink(sink, capabilities.SerializeAsString(), error);
}

const bbx_plugin_common_ops kCommonOps = {
    .struct_size = sizeof(bbx_plugin_common_ops),
    .init = Init,
    .fini = Fini,
    .check = Check,
    .capabilities = Capabilities,
};

constexpr bbx_vmm_ops kOps =
    beaconbox::plugins::VmmOpsTable<bbx_vm>(VmCreate, VmDestroy, VmAddDevice, VmCleanupStale,
                                            nullptr);  // no vm_save: see Capabilities

}  // namespace

extern "C" BBX_EXPORT bbx_status bbx_plugin_entry(const bbx_entry_request* request,
                                                  bbx_entry_response* response, bbx_error* error) {
  return bbx::AnswerEntry(request, response, error, "cloud-hypervisor", BEACONBOX_PLUGIN_VERSION,
                          kConfigKeys, kCommonOps, kOps);
}
