#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "host/ctl/ctl.h"
#include "host/log/log.h"
#include "host/plugin_host/plugin_host.h"
#include "host/plugin_host/plugin_loader.h"

namespace beaconbox::ctl {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

int ConfigValidate(const Args& args) {
  if (args.rest.size() > 1) {
    std::cerr << "usage: beaconbox-ctl config validate [FILE]\n";
    return kExitUsage;
  }
  Args with_file = args;
  if (!args.rest.empty()) with_file.config_path = args.rest[0];
  auto config = LoadConfigFor(with_file);
  if (!config.ok()) {
    std::cerr << config.error().message << "\n";
    return kExitFailed;
  }
  auto host = plugin_host::PluginHost::Load(std::move(config).value());
  if (!host.ok()) {
    std::cerr << host.error().message << "\n";
    return kExitFailed;
  }
  std::cout << "OK\n";
  return kExitOk;
}

std::string Join(const std::vector<std::string>& items, const char* separator) {
  std::string joined;
  for (const auto& item : items) joined += (joined.empty() ? "" : separator) + item;
  return joined;
}

// The capabilities a plugin reports, by name; "none" when it reports none.
std::vector<std::string> CapabilityNames(const plugin_host::pluginapi::Capabilities& caps) {
  std::vector<std::string> names;
  auto add = [&](bool has, const char* name) {
    if (has) names.push_back(name);
  };
  add(caps.pause(), "pause");
  add(caps.hotplug_disks(), "hotplug-disks");
  add(caps.hotplug_shares(), "hotplug-shares");
  add(caps.hotplug_nics(), "hotplug-nics");
  add(caps.resize_vcpus(), "resize-vcpus");
  add(caps.resize_memory(), "resize-memory");
  add(caps.read_only_shares(), "read-only-shares");
  add(caps.read_only_rootfs(), "read-only-rootfs");
  for (int kind : caps.agent_channels()) {
    names.push_back(
        kind == plugin_host::pluginapi::AGENT_CHANNEL_VSOCK           ? "agent-vsock"
        : kind == plugin_host::pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL ? "agent-virtio-serial"
        : kind == plugin_host::pluginapi::AGENT_CHANNEL_HYBRID_VSOCK  ? "agent-hybrid-vsock"
                                                                      : "agent-unknown");
  }
  if (names.empty()) names.push_back("none");
  return names;
}

// Lists every declared plugin: each is loaded and inited on its own, so the list
// shows even when the config's choice of plugins is incomplete.
int Plugins(const Args& args) {
  auto config = LoadConfigFor(args);
  if (!config.ok()) {
    std::cerr << config.error().message << "\n";
    return kExitFailed;
  }
  int exit_code = kExitOk;
  std::printf("%-8s %-18s %-10s %-4s %s\n", "KIND", "NAME", "VERSION", "ABI", "PATH");
  for (const config::PluginDecl& decl : config->plugins) {
    std::string context = "config " + config->source + ": plugin " + decl.kind + "/" + decl.name;
    auto plugin = plugin_host::LoadedPlugin::Open(decl.path, decl.kind, decl.name, context);
    Status ready = plugin.ok() ? (*plugin)->Configure(decl, config->paths) : plugin.error();
    if (!ready.ok()) {
      std::cerr << ready.error().message << "\n";
      exit_code = kExitFailed;
      continue;
    }
    const plugin_host::PluginInfo& info = (*plugin)->info();
    std::printf("%-8s %-18s %-10s %-4u %s\n", info.kind.c_str(), info.name.c_str(),
                info.version.c_str(), info.abi_version, info.path.c_str());
    std::printf("    ops: %s\n", Join(info.ops, ", ").c_str());
    auto capabilities = (*plugin)->Capabilities();
    if (capabilities.ok()) {
      std::printf("    capabilities: %s\n", Join(CapabilityNames(*capabilities), ", ").c_str());
    } else {
      std::cerr << capabilities.error().message << "\n";
      exit_code = kExitFailed;
    }
    for (const auto& key : info.config_keys) {
      std::printf("    config.%s (%s%s%s%s%s): %s\n", key.name.c_str(),
                  config::ValueTypeName(key.type), key.default_value.empty() ? "" : ", default ",
                  key.default_value.c_str(), key.env_var.empty() ? "" : ", env ",
                  key.env_var.c_str(), key.description.c_str());
    }
  }
  return exit_code;
}

struct Command {
  const char* words;  // "config validate"
  const char* usage;
  int (*run)(const Args& args);
};

constexpr Command kCommands[] = {
    {"check", "check                    prerequisites, one line each, with the fix", RunCheck},
    {"config validate", "config validate [FILE]   load FILE (or the default) and its plugins",
     ConfigValidate},
    {"plugins",
     "plugins                  declared plugins: version, ABI, path, ops, capabilities, config "
     "keys and their env vars",
     Plugins},
    {"net leases", "net leases               the network plugin's address leases", RunNetLeases},
    {"gc",
     "gc                       release leases and TAPs whose shim is gone; remove cached "
     "EROFS images no snapshot and no running container uses",
     RunGc},
    {"containerd-config",
     "containerd-config [--containerd BINARY | --version-of VERSION]\n"
     "                           the runtime entry for containerd's config.toml (1.6/1.7: "
     "version 2, 2.x: version 3)",
     RunContainerdConfig},
};

void Usage(FILE* out) {
  std::fprintf(out, "usage: beaconbox-ctl [--config FILE] COMMAND\n\ncommands:\n");
  for (const Command& command : kCommands) std::fprintf(out, "  %s\n", command.usage);
  std::fprintf(out,
               "\nThe configuration is --config FILE, else $BEACONBOX_CONFIG, else "
               "/etc/beaconbox/config.toml, else config.toml next to beaconbox-ctl.\n");
}

}  // namespace

Result<config::Config> LoadConfigFor(const Args& args) {
  if (args.config_path) return config::LoadConfigFile(*args.config_path);
  return config::LoadConfig();
}

int Main(int argc, char** argv) {
  std::vector<std::string> words(argv + 1, argv + argc);
  Args args;
  size_t index = 0;
  while (index < words.size() && words[index].starts_with("-")) {
    if ((words[index] == "--config" || words[index] == "-c") && index + 1 < words.size()) {
      args.config_path = words[index + 1];
      index += 2;
    } else if (words[index] == "--help" || words[index] == "-h") {
      Usage(stdout);
      return kExitOk;
    } else {
      std::fprintf(stderr, "beaconbox-ctl: unknown option %s\n", words[index].c_str());
      Usage(stderr);
      return kExitUsage;
    }
  }
  log::LogOptions log_options{"beaconbox-ctl", "warn", ""};
  if (Status logging = log::SetUpLogging(log_options); !logging.ok()) {
    std::fprintf(stderr, "beaconbox-ctl: %s\n", logging.error().message.c_str());
    return kExitUsage;
  }
  for (const Command& command : kCommands) {
    std::string_view want = command.words;
    size_t at = index;
    bool match = true;
    while (!want.empty()) {
      size_t space = want.find(' ');
      std::string_view word = want.substr(0, space);
      if (at >= words.size() || words[at] != word) {
        match = false;
        break;
      }
      ++at;
      want = space == std::string_view::npos ? std::string_view() : want.substr(space + 1);
    }
    if (!match) continue;
    args.rest.assign(words.begin() + static_cast<long>(at), words.end());
    return command.run(args);
  }
  Usage(stderr);
  return kExitUsage;
}

}  // namespace beaconbox::ctl

int main(int argc, char** argv) { return beaconbox::ctl::Main(argc, argv); }
