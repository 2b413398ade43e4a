// bbx-guest-module-order: prints, one per line, the kernel module files to load in
// the guest, dependencies first. Used by build-image.sh at image build time.
//   bbx-guest-module-order /lib/modules/<version> virtio_pci virtio_console ...
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "guest/vminitd/kernel_modules.h"

namespace {

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream buffer;
  buffer << in.rdbuf();
  *out = buffer.str();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s /lib/modules/<version> MODULE...\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  std::string dep_text, builtin_text;
  if (!ReadFile(dir + "/modules.dep", &dep_text)) {
    std::fprintf(stderr,
                 "bbx-guest-module-order: cannot read %s/modules.dep: is the kernel installed?\n",
                 dir.c_str());
    return 1;
  }
  ReadFile(dir + "/modules.builtin", &builtin_text);  // absent means nothing built in
  std::vector<std::string> wanted(argv + 2, argv + argc);
  auto order =
      beaconbox::guest::ResolveModuleOrder(wanted, beaconbox::guest::ParseModulesDep(dep_text),
                                           beaconbox::guest::ParseModulesBuiltin(builtin_text));
  if (!order.ok()) {
    std::fprintf(stderr, "bbx-guest-module-order: %s\n", order.error().message.c_str());
    return 1;
  }
  for (const std::string& path : *order) std::printf("%s\n", path.c_str());
  return 0;
}
