// The vmm-qemu plugin's C entry: ops table, config parsing, and translation to
// QemuVm. The logic lives in qemu_vm.cc, qmp.cc and accelerator.cc; child processes,
// virtiofsd and PATH search in plugins/common.
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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
#include "plugins/vmm-qemu/qemu_vm.h"

struct bbx_plugin {
  const bbx_host_services* host;
  beaconbox::qemu::QemuConfig config;
  beaconbox::plugins::Spawner spawner;  // forks qemu and virtiofsd; lives until fini
  std::atomic<bool> accelerator_logged = false;
};

struct bbx_vm {
  std::unique_ptr<beaconbox::qemu::QemuVm> vm;
};

namespace {

namespace pluginapi = ::beaconbox::plugin::v1;
using beaconbox::Error;
using beaconbox::plugins::Fail;
using beaconbox::plugins::IntegerInRange;
using namespace std::chrono_literals;

const bbx_config_key kConfigKeys[] = {
    bbx::ConfigKey("binary", BBX_CONFIG_STRING,
                   "\"<share_dir>/bin/qemu-system-x86_64, else from PATH\"", "the QEMU binary"),
    bbx::ConfigKey("virtiofsd", BBX_CONFIG_STRING, "\"/usr/lib/qemu/virtiofsd\"",
                   "the virtio-fs daemon"),
    bbx::ConfigKey("accelerator", BBX_CONFIG_STRING, "\"auto\"",
                   "\"auto\" (KVM if a probe boots the guest under it, else TCG; verdict cached "
                   "in <state_dir>/vmm-qemu), \"kvm\" (never falls back) or \"tcg\" (never "
                   "opens KVM)"),
    bbx::ConfigKey("kvm_device", BBX_CONFIG_STRING, "\"/dev/kvm\"",
                   "opened to see whether KVM is there at all (QEMU itself always uses /dev/kvm)"),
    bbx::ConfigKey(
        "kvm_probe_timeout_ms", BBX_CONFIG_INTEGER, "10000",
        "how long the KVM probe waits for the guest kernel to reach init (100 to 600000)"),
    bbx::ConfigKey("machine", BBX_CONFIG_STRING, "\"q35\"",
                   "QEMU machine type (-M); q35 keeps ACPI hotplug and boots as fast as pc or "
                   "microvm"),
    bbx::ConfigKey("extra_args", BBX_CONFIG_STRING_ARRAY, "[]",
                   "arguments appended to QEMU's command line"),
    bbx::ConfigKey("kernel", BBX_CONFIG_STRING, "\"auto\"",
                   "the kernel QEMU boots: \"auto\" = the uncompressed PVH vmlinux the guest "
                   "image build writes next to vm.kernel_path (no decompression) when it is "
                   "there, else vm.kernel_path; \"\" = vm.kernel_path; else that file"),
    bbx::ConfigKey("console_log_max_bytes", BBX_CONFIG_INTEGER, "4194304",
                   "disk a VM's console log takes at most: the log and its one rotated "
                   "predecessor (<log>.1) hold half each, the newest output is kept"),
    bbx::ConfigKey("template", BBX_CONFIG_BOOLEAN, "false",
                   "VM templating: boot a template VM once per kernel/initrd/QEMU/machine "
                   "config and start each VM from it (copy-on-write memory, devices hot-added); "
                   "clones share the template's kernel address layout (README)"),
    bbx::ConfigKey("template_dir", BBX_CONFIG_STRING, "\"<run_dir>/vmm-qemu/templates\"",
                   "where templates (guest memory and device state) live; tmpfs is fastest"),
    bbx::ConfigKey("template_boot_timeout_ms", BBX_CONFIG_INTEGER, "300000",
                   "how long building a template waits for its guest agent (1000 to 3600000)"),
    bbx::ConfigKey("tcg_tb_size_mib", BBX_CONFIG_INTEGER, "32",
                   "under TCG, QEMU's translation cache in MiB (-accel tcg,tb-size; 0 to 4096); 0: "
                   "QEMU's default (1 GiB in QEMU 7.2, touched as used)"),
    bbx::ConfigKey("free_page_reporting", BBX_CONFIG_BOOLEAN, "true",
                   "a virtio-balloon with free page reporting: memory the guest frees goes "
                   "back to the host"),
    bbx::ConfigKey("guest_swiotlb", BBX_CONFIG_BOOLEAN, "false",
                   "keep the guest kernel's 64 MiB swiotlb bounce buffer (false: swiotlb=noforce; "
                   "virtio devices never use it)"),
};

bbx_status Init(const bbx_host_services* host, bbx_bytes config_toml, bbx_plugin** out,
                bbx_error* error) {
  beaconbox::qemu::QemuConfig config;
  try {
    toml::table table = toml::parse(bbx::View(config_toml));
    std::string share_dir = host && host->share_dir ? host->share_dir : "/usr/share/beacon";
    std::string bundled = share_dir + "/bin/qemu-system-x86_64";
    config.binary = beaconbox::plugins::FindInPath(table["binary"].value_or(
        ::access(bundled.c_str(), X_OK) == 0 ? bundled : std::string("qemu-system-x86_64")));
    config.virtiofsd = table["virtiofsd"].value_or(config.virtiofsd);
    config.accelerator = table["accelerator"].value_or(config.accelerator);
    config.kvm_device = table["kvm_device"].value_or(config.kvm_device);
    auto kvm_probe_timeout = IntegerInRange(table, "kvm_probe_timeout_ms", 10000, 100, 600000);
    if (!kvm_probe_timeout.ok()) return Fail(kvm_probe_timeout.error(), error);
    config.kvm_probe_timeout = std::chrono::milliseconds(*kvm_probe_timeout);
    if (host && host->state_dir && host->state_dir[0]) {
      config.verdict_dir = std::string(host->state_dir) + "/vmm-qemu/cache";
    }
    config.machine = table["machine"].value_or(config.machine);
    config.kernel = table["kernel"].value_or(config.kernel);
    auto console_log_max_bytes = beaconbox::plugins::ConsoleLogMaxBytes(table);
    if (!console_log_max_bytes.ok()) return Fail(console_log_max_bytes.error(), error);
    config.console_log_max_bytes = *console_log_max_bytes;
    config.use_template = table["template"].value_or(false);
    std::string run_dir = host && host->run_dir && host->run_dir[0] ? host->run_dir : "/run/beacon";
    config.template_dir = table["template_dir"].value_or(run_dir + "/vmm-qemu/templates");
    auto template_boot_timeout =
        IntegerInRange(table, "template_boot_timeout_ms", 300000, 1000, 3600000);
    if (!template_boot_timeout.ok()) return Fail(template_boot_timeout.error(), error);
    config.template_boot_timeout = std::chrono::milliseconds(*template_boot_timeout);
    auto tb_size = IntegerInRange(
        table, "tcg_tb_size_mib", static_cast<int64_t>(beaconbox::qemu::kDefaultTcgTbSizeMib), 0,
        static_cast<int64_t>(beaconbox::qemu::kMaxTcgTbSizeMib), " (QEMU's default)");
    if (!tb_size.ok()) return Fail(tb_size.error(), error);
    config.tcg_tb_size_mib = static_cast<uint64_t>(*tb_size);
    config.guest_swiotlb = table["guest_swiotlb"].value_or(config.guest_swiotlb);
    config.free_page_reporting = table["free_page_reporting"].value_or(config.free_page_reporting);
    if (auto* args = table["extra_args"].as_array()) {
      for (auto& arg : *args) config.extra_args.push_back(arg.value_or(std::string()));
    }
  } catch (const toml::parse_error& parse_error) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                     std::string("config: ") + std::string(parse_error.description()));
  }
  if (config.accelerator != "auto" && config.accelerator != "kvm" && config.accelerator != "tcg") {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                     "accelerator = \"" + config.accelerator + "\": use auto, kvm or tcg");
  }
  auto* plugin = new (std::nothrow) bbx_plugin{host, config, {}, false};
  if (plugin == nullptr) return bbx::Fail(error, BBX_ERR_INTERNAL, "out of memory");
  *out = plugin;
  return BBX_OK;
}

void Fini(bbx_plugin* plugin) { delete plugin; }

// One line per VM that falls back although KVM is there (with QEMU's reason); the
// plain "no KVM device" case once per plugin instance.
void LogAccelerator(bbx_plugin* plugin, const beaconbox::qemu::LaunchPlan& plan) {
  if (plan.kvm_broken) {
    bbx::Log(plugin->host, BBX_LOG_WARN,
             "QEMU uses TCG software emulation (slow): " + plan.accelerator_reason +
                 "; set accelerator = \"tcg\" to skip the check, see beaconbox-ctl check");
    return;
  }
  if (plugin->accelerator_logged.exchange(true)) return;
  bool chosen = plan.accelerator == "kvm" || plugin->config.accelerator == "tcg";
  bbx::Log(plugin->host, chosen ? BBX_LOG_INFO : BBX_LOG_WARN,
           plan.accelerator == "kvm"
               ? "QEMU uses KVM: " + plan.accelerator_reason
               : "QEMU uses TCG software emulation (slow): " + plan.accelerator_reason);
}

bbx_status VmCreate(bbx_plugin* plugin, bbx_bytes spec_bytes, bbx_vm** out, bbx_error* error) {
  pluginapi::VmSpec spec;
  if (!spec.ParseFromArray(spec_bytes.data, static_cast<int>(spec_bytes.len))) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "unparsable VmSpec");
  }
  auto vm = beaconbox::qemu::QemuVm::Create(
      spec, plugin->config, plugin->spawner,
      [plugin](const std::string& line) { bbx::Log(plugin->host, BBX_LOG_INFO, line); });
  if (!vm.ok()) return Fail(vm.error(), error);
  LogAccelerator(plugin, (*vm)->plan());
  // A VM dying by itself leaves its evidence in the shim's log before its files go.
  auto host = plugin->host;
  auto watched =
      (*vm)->WatchExit([host](const std::string& line) { bbx::Log(host, BBX_LOG_WARN, line); });
  if (!watched.ok()) {
    bbx::Log(host, BBX_LOG_WARN,
             "VM " + spec.id() + ": QEMU's exit is not watched: " + watched.error().message);
  }
  *out = new bbx_vm{std::move(vm).value()};
  return BBX_OK;
}

void VmDestroy(bbx_vm* vm) { delete vm; }

bbx_status VmAddDevice(bbx_vm*, bbx_bytes, bbx_error* error) {
  return bbx::Fail(error, BBX_ERR_NOT_IMPLEMENTED,
                   "vmm-qemu: device hotplug is not implemented yet; declare devices in the "
                   "VmSpec at create");
}

// Ends only the recorded processes of a dead shim's VM (plugins/common/vmm_ops.h).
bbx_status VmCleanupStale(bbx_plugin* plugin, bbx_bytes info, bbx_error* error) {
  return beaconbox::plugins::CleanupStaleVm(info, {plugin->config.binary, plugin->config.virtiofsd},
                                            error);
}

// Its own prerequisites: the QEMU binary, virtiofsd (its own `virtiofsd` key), the
// accelerator and vsock devices. Kernel, initrd and directories are the host's checks.
bbx_status Check(bbx_plugin* plugin, bbx_sink report_sink, bbx_error* error) {
  pluginapi::CheckReport report;
  auto line = [&](pluginapi::CheckLevel level, const std::string& what, const std::string& detail) {
    beaconbox::plugins::AddCheckLine(report, level, what, detail);
  };
  const beaconbox::qemu::QemuConfig& config = plugin->config;
  if (::access(config.binary.c_str(), X_OK) == 0) {
    line(pluginapi::CHECK_OK, "qemu", config.binary);
  } else {
    line(pluginapi::CHECK_FAIL, "qemu",
         config.binary +
             " is not executable (config key binary): apt-get install "
             "qemu-system-x86, or set binary in [plugins.vmm.qemu.config]");
  }
  beaconbox::plugins::AddVirtiofsdCheck(report, config.virtiofsd);
  // The accelerator VMs will get and why, from the verdict the KVM probe cached.
  const beaconbox::qemu::CheckLine kvm = beaconbox::qemu::CachedAcceleratorCheck(
      beaconbox::qemu::AcceleratorSettingsOf(config), config.binary);
  line(kvm.level == beaconbox::qemu::CheckLine::Level::kOk     ? pluginapi::CHECK_OK
       : kvm.level == beaconbox::qemu::CheckLine::Level::kWarn ? pluginapi::CHECK_WARN
                                                               : pluginapi::CHECK_FAIL,
       "kvm", kvm.text);
  if (::access("/dev/vhost-vsock", R_OK | W_OK) == 0) {
    line(pluginapi::CHECK_OK, "vsock", "/dev/vhost-vsock usable: the guest agent uses vsock");
  } else {
    line(pluginapi::CHECK_OK, "vsock",
         "/dev/vhost-vsock absent: the guest agent uses virtio-serial (modprobe vhost_vsock "
         "for vsock)");
  }
  return bbx::WriteSink(report_sink, report.SerializeAsString(), error);
}

bbx_status Capabilities(bbx_plugin*, bbx_sink sink, bbx_error* error) {
  pluginapi::Capabilities capabilities;
  capabilities.set_pause(true);
  capabilities.set_resize_vcpus(true);
  capabilities.set_resize_memory(true);
  capabilities.set_read_only_shares(true);
  // vm_add_device is not implemented yet: no hotplug_* capability.
  capabilities.add_agent_channels(pluginapi::AGENT_CHANNEL_VSOCK);
  capabilities.add_agent_channels(pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
  capabilities.set_agent_token(true);  // through fw_cfg, see QemuVm::Launch
  capabilities.set_save(true);         // vm_save (QemuVm::Save) and VmSpec.restore_dir
  return bbx::WriteSink(sink, capabilities.SerializeAsString(), error);
}

const bbx_plugin_common_ops kCommonOps = {
    .struct_size = sizeof(bbx_plugin_common_ops),
    .init = Init,
    .fini = Fini,
    .check = Check,
    .capabilities = Capabilities,
};

constexpr bbx_vmm_ops kOps = beaconbox::plugins::VmmOpsTable<bbx_vm>(
    VmCreate, VmDestroy, VmAddDevice, VmCleanupStale, beaconbox::plugins::VmSaveOp<bbx_vm>);

}  // namespace

extern "C" BBX_EXPORT bbx_status bbx_plugin_entry(const bbx_entry_request* request,
                                                  bbx_entry_response* response, bbx_error* error) {
  return bbx::AnswerEntry(request, response, error, "qemu", BEACONBOX_PLUGIN_VERSION, kConfigKeys,
                          kCommonOps, kOps);
}
