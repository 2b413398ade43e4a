// Fuzz target: the bytes are a checkpoint's beaconbox-checkpoint.json as restore reads
// it (host/shim/checkpoint_manifest.h; the checkpoint comes from containerd's image,
// i.e. from outside). ParseCheckpointManifest must answer every input with a manifest
// or one line, and a manifest it accepts must keep its bounds and format again.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "host/shim/checkpoint_manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace beaconbox::shim;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto manifest = ParseCheckpointManifest(text);
  if (!manifest.ok()) {
    if (manifest.error().message.find('\n') != std::string::npos) {
      std::fprintf(stderr, "refusal of more than one line: %s\n",
                   manifest.error().message.c_str());
      std::abort();
    }
    return 0;
  }
  if (manifest->files.empty() || manifest->files.size() > kMaxCheckpointFiles) std::abort();
  for (const auto& file : manifest->files) {
    if (file.name.find('/') != std::string::npos || file.name == "." || file.name == "..") {
      std::abort();
    }
  }
  auto again = ParseCheckpointManifest(FormatCheckpointManifest(*manifest));
  if (!again.ok() || again->files.size() != manifest->files.size()) std::abort();
  return 0;
}
