// SandboxBackends over the plugin host: the one file of the shim core that knows the
// plugin host's C++ API (host/plugin_host/plugin_host.h). A change of that API, or of
// the C ABI under it, is absorbed here.
#pragma once

#include <memory>

#include "host/config/config.h"
#include "host/plugin_host/plugin_host.h"
#include "host/shim/runtime_layout.h"
#include "host/shim/sandbox_backends.h"

namespace beaconbox::shim {

class PluginBackends {
 public:
  explicit PluginBackends(std::unique_ptr<plugin_host::PluginHost> host);
  ~PluginBackends();

  SandboxBackends backends();
  RuntimeLayout layout() const;
  // The config file the plugins were loaded from ("" for the built-in defaults).
  const std::string& config_source() const;

 private:
  class Vmm;
  class Storage;
  class Network;

  std::unique_ptr<plugin_host::PluginHost> host_;
  std::unique_ptr<Vmm> vmm_;
  std::unique_ptr<Storage> storage_;
  std::unique_ptr<Network> network_;  // null for network.mode = "none"
};

// Loads the configuration (BEACONBOX_CONFIG, /etc/beaconbox/config.toml, or the one
// next to the shim) and the plugins it declares; keeps loaded only the ones it picks
// (PluginHost::UnloadUnpicked).
Result<std::unique_ptr<PluginBackends>> LoadPlugins();

// The paths of a configuration (paths.run_dir, paths.log_dir, paths.state_dir).
RuntimeLayout LayoutFromConfig(const config::Config& config);

}  // namespace beaconbox::shim
