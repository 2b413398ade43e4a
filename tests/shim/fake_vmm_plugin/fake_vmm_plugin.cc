// fake-vmm-guest.so: a VMM plugin of ABI v2 that starts no VM. Each "VM" is a
// FakeGuestAgent (tests/shim/fake_guest_agent.h) inside this .so: vm_connect_guest
// returns one end of a new socketpair and a thread of the agent serves vminitd's API
// (Guest + Task over ttrpc) on the other. The shim's unit tests load it through the
// real plugin host and plugin_backends (shim_plugin_test), so the path they cover is
// the one containerd drives, minus QEMU and the guest.
//
// Config keys (its [plugins.vmm.<name>.config] table), for fault injection:
//   fail_create        vm_create fails (BBX_ERR_UNAVAILABLE)
//   guest_exit_status  >= 0: a container's init process exits with it as soon as it
//                      starts (as /bin/true would); -1: it runs until killed
//   fail_guest_method  "Service.Method" (e.g. "Task.Create"): the guest fails the
//                      first such call of each VM
//   record_path        a file each hook appends one line to ("vm_create ns/id", ...)
//
// It carries its C++ dependencies (the agent, ttrpc, the generated protobuf code and
// a static libprotobuf) with every symbol hidden: its descriptor pool is its own, so
// the host's copies of the same messages do not clash with it.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "beaconbox/plugin/v1/plugin.pb.h"
#include "beaconbox/plugin/v1/vmm.pb.h"
#include "beaconbox/plugin_support.hpp"
#include "tests/shim/fake_guest_agent.h"

namespace {

namespace pluginapi = ::beaconbox::plugin::v1;
using beaconbox::shim::testing::FakeGuestAgent;

struct Settings {
  bool fail_create = false;
  int64_t guest_exit_status = -1;
  std::string fail_guest_method;
  std::string record_path;
};

}  // namespace

struct bbx_plugin {
  const bbx_host_services* host;
  Settings settings;
  std::mutex record_mutex;
};

struct bbx_vm {
  bbx_plugin* plugin;
  pluginapi::VmSpec spec;
  FakeGuestAgent agent;
};

namespace {

const bbx_config_key kConfigKeys[] = {
    bbx::ConfigKey("fail_create", BBX_CONFIG_BOOLEAN, "false", "vm_create fails"),
    bbx::ConfigKey("guest_exit_status", BBX_CONFIG_INTEGER, "-1",
                   "an init process exits with this status when it starts; -1: never"),
    bbx::ConfigKey("fail_guest_method", BBX_CONFIG_STRING, "\"\"",
                   "the guest fails the first call of this Service.Method in each VM"),
    bbx::ConfigKey("record_path", BBX_CONFIG_STRING, "\"\"",
                   "a file every hook appends one line to"),
};

void Record(bbx_plugin* plugin, const std::string& line) {
  bbx::Log(plugin->host, BBX_LOG_DEBUG, line);
  if (plugin->settings.record_path.empty()) return;
  std::lock_guard lock(plugin->record_mutex);
  int fd =
      ::open(plugin->settings.record_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  std::string text = line + "\n";
  (void)!::write(fd, text.data(), text.size());
  ::close(fd);
}

std::string Key(const pluginapi::VmSpec& spec) { return spec.namespace_() + "/" + spec.id(); }

// The host hands over its table as TOML checked against the schema above (toml++
// writes strings as '...' when they need no escapes); each key is one `name = value`
// line, which is all this fake needs to read.
std::string Unquote(std::string value) {
  if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
      value.back() == value.front()) {
    return value.substr(1, value.size() - 2);
  }
  return value;
}

Settings ParseSettings(std::string_view toml) {
  Settings settings;
  size_t start = 0;
  while (start < toml.size()) {
    size_t end = toml.find('\n', start);
    if (end == std::string_view::npos) end = toml.size();
    std::string line(toml.substr(start, end - start));
    start = end + 1;
    size_t equals = line.find('=');
    if (equals == std::string::npos) continue;
    auto trim = [](std::string text) {
      size_t first = text.find_first_not_of(" \t");
      size_t last = text.find_last_not_of(" \t\r");
      return first == std::string::npos ? std::string() : text.substr(first, last - first + 1);
    };
    std::string name = trim(line.substr(0, equals));
    std::string value = trim(line.substr(equals + 1));
    if (name == "fail_create") settings.fail_create = value == "true";
    if (name == "guest_exit_status") settings.guest_exit_status = std::stoll(value);
    if (name == "fail_guest_method") settings.fail_guest_method = Unquote(value);
    if (name == "record_path") settings.record_path = Unquote(value);
  }
  return settings;
}

bbx_status Init(const bbx_host_services* host, bbx_bytes config_toml, bbx_plugin** out,
                bbx_error* error) {
  if (host == nullptr) return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "no host services");
  auto* plugin = new (std::nothrow) bbx_plugin{host, {}, {}};
  if (plugin == nullptr) return bbx::Fail(error, BBX_ERR_INTERNAL, "out of memory");
  bbx::Log(host, BBX_LOG_DEBUG, "fake vmm config: " + std::string(bbx::View(config_toml)));
  try {
    plugin->settings = ParseSettings(bbx::View(config_toml));
  } catch (const std::exception&) {
    delete plugin;
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "fake vmm: guest_exit_status not a number");
  }
  *out = plugin;
  return BBX_OK;
}

void Fini(bbx_plugin* plugin) { delete plugin; }

// Pause, and the virtio-serial agent channel: the host then plans a unix socket under
// the VM's run dir and reserves no vsock CID.
bbx_status Capabilities(bbx_plugin*, bbx_sink sink, bbx_error* error) {
  pluginapi::Capabilities capabilities;
  capabilities.set_pause(true);
  capabilities.add_agent_channels(pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
  capabilities.set_agent_token(true);
  return bbx::WriteSink(sink, capabilities.SerializeAsString(), error);
}

bbx_status VmCreate(bbx_plugin* plugin, bbx_bytes spec_bytes, bbx_vm** out, bbx_error* error) {
  pluginapi::VmSpec spec;
  if (!spec.ParseFromArray(spec_bytes.data, static_cast<int>(spec_bytes.len))) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "fake vmm: VmSpec does not parse");
  }
  if (plugin->settings.fail_create) {
    Record(plugin, "vm_create refused " + Key(spec));
    return bbx::Fail(error, BBX_ERR_UNAVAILABLE, "fake vmm: create refused (fail_create)");
  }
  // As a real VMM plugin must: never a VM whose agent channel is not sealed.
  if (spec.agent_token().empty()) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "fake vmm: VmSpec.agent_token is empty");
  }
  auto* vm = new (std::nothrow) bbx_vm{plugin, spec, {}};
  if (vm == nullptr) return bbx::Fail(error, BBX_ERR_INTERNAL, "out of memory");
  vm->agent.RequireToken(spec.agent_token());
  if (plugin->settings.guest_exit_status >= 0) {
    vm->agent.ExitOnStart(static_cast<uint32_t>(plugin->settings.guest_exit_status));
  }
  if (!plugin->settings.fail_guest_method.empty()) {
    vm->agent.FailNext(plugin->settings.fail_guest_method, beaconbox::ttrpc::Code::kInternal);
  }
  // The console log a real guest would write, so tests see the host's name for it.
  if (!spec.console_log_path().empty()) {
    int fd =
        ::open(spec.console_log_path().c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
      std::string line = "fake guest " + Key(spec) + " booted\n";
      (void)!::write(fd, line.data(), line.size());
      ::close(fd);
    }
  }
  Record(plugin, "vm_create " + Key(spec));
  *out = vm;
  return BBX_OK;
}

bbx_status VmConnectGuest(bbx_vm* vm, uint32_t, int* fd_out, bbx_error* error) {
  Record(vm->plugin, "vm_connect_guest " + Key(vm->spec));
  auto fd = vm->agent.Connect();
  if (!fd.ok()) return bbx::Fail(error, BBX_ERR_INTERNAL, fd.error().message);
  *fd_out = fd->Release();
  return BBX_OK;
}

bbx_status VmInfo(bbx_vm* vm, bbx_sink sink, bbx_error* error) {
  pluginapi::VmInfo info;
  info.set_id(vm->spec.id());
  info.set_namespace_(vm->spec.namespace_());
  info.set_accelerator("fake");
  info.set_console_log_path(vm->spec.console_log_path());
  info.set_run_dir(vm->spec.run_dir());
  // No pids: a stale cleanup must never signal a real process.
  return bbx::WriteSink(sink, info.SerializeAsString(), error);
}

bbx_status VmStop(bbx_vm* vm, uint32_t, bbx_error*) {
  Record(vm->plugin, "vm_stop " + Key(vm->spec));
  vm->agent.Disconnect();
  return BBX_OK;
}

void VmDestroy(bbx_vm* vm) {
  Record(vm->plugin, "vm_destroy " + Key(vm->spec));
  delete vm;  // the agent's destructor ends its connections and joins their threads
}

bbx_status VmPause(bbx_vm* vm, bbx_error*) {
  Record(vm->plugin, "vm_pause " + Key(vm->spec));
  return BBX_OK;
}

bbx_status VmResume(bbx_vm* vm, bbx_error*) {
  Record(vm->plugin, "vm_resume " + Key(vm->spec));
  return BBX_OK;
}

bbx_status VmCleanupStale(bbx_plugin* plugin, bbx_bytes info_bytes, bbx_error* error) {
  pluginapi::VmInfo info;
  if (!info.ParseFromArray(info_bytes.data, static_cast<int>(info_bytes.len))) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "fake vmm: VmInfo does not parse");
  }
  Record(plugin, "vm_cleanup_stale " + info.namespace_() + "/" + info.id() + " " + info.run_dir());
  return BBX_OK;
}

const bbx_plugin_common_ops kCommonOps = {
    .struct_size = sizeof(bbx_plugin_common_ops),
    .init = Init,
    .fini = Fini,
    .check = nullptr,
    .capabilities = Capabilities,
};

const bbx_vmm_ops kVmmOps = {
    .struct_size = sizeof(bbx_vmm_ops),
    .vm_create = VmCreate,
    .vm_connect_guest = VmConnectGuest,
    .vm_info = VmInfo,
    .vm_stop = VmStop,
    .vm_destroy = VmDestroy,
    .vm_pause = VmPause,
    .vm_resume = VmResume,
    .vm_add_device = nullptr,
    .vm_resize = nullptr,
    .vm_cleanup_stale = VmCleanupStale,
    .vm_save = nullptr,  // no Capabilities.save
};

}  // namespace

extern "C" BBX_EXPORT bbx_status bbx_plugin_entry(const bbx_entry_request* request,
                                                  bbx_entry_response* response, bbx_error* error) {
  const bbx_entry_response mine = {
      .struct_size = sizeof(bbx_entry_response),
      .abi_version = BBX_ABI_VERSION_CURRENT,
      .kind = BBX_PLUGIN_KIND_VMM,
      .name = "fake-guest",
      .version = "0.0.0",
      .config_keys = kConfigKeys,
      .config_key_count = sizeof(kConfigKeys) / sizeof(kConfigKeys[0]),
      .common_ops = &kCommonOps,
      .kind_ops = &kVmmOps,
  };
  return bbx::Negotiate(request, response, mine, error);
}
