// Fuzz target: the bytes are a config.toml (host/config). ParseConfig must answer
// every input with a Config or one error, never crash; and a plugin table it
// accepted must survive the round trip ApplyPluginEnvOverride makes (the table is
// re-serialized as TOML and parsed again, which "cannot fail").
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "host/config/config.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // The BEACON* overrides win over the file: none, so that the file alone decides.
  for (const char* name : {"BEACONBOX_CONFIG", "BEACON_SHARE_DIR", "BEACON_STATE_DIR",
                           "BEACON_LOG_DIR", "BEACONBOX_LOG_LEVEL", "BEACON_CNI_MODE"}) {
    ::unsetenv(name);
  }
  ::setenv("BBX_FUZZ_OVERRIDE", "from-the-environment", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace beaconbox::config;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = ParseConfig(text, "/etc/beaconbox/config.toml");
  if (!config.ok()) {
    if (config.error().message.empty()) {
      std::fprintf(stderr, "fuzz: ParseConfig failed without a message\n");
      std::abort();
    }
    return 0;
  }
  for (auto& plugin : config->plugins) {
    if (!ApplyPluginEnvOverride(plugin, "fuzz_key", "BBX_FUZZ_OVERRIDE")) {
      std::fprintf(stderr, "fuzz: plugin %s/%s: its config table does not parse again:\n%s\n",
                   plugin.kind.c_str(), plugin.name.c_str(), plugin.config_toml.c_str());
      std::abort();
    }
  }
  return 0;
}
