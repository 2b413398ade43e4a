// A FAKE guest for the vmm-qemu tests that boot real QEMU and the real guest kernel:
// a test-only initrd whose /init is a busybox shell script. No container user can
// boot it.
#pragma once

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/plugins/common/temp_dir.h"

namespace beaconbox::plugins::testing {

// Where the built kernel is (ctest sets BEACONBOX_OUTPUT_DIR).
inline std::string OutputDir() {
  const char* dir = std::getenv("BEACONBOX_OUTPUT_DIR");
  return dir ? dir : "_output";
}

// Writes <dir>/<name>: busybox, /bin/sh, /dev, and `init_script` (after a shebang line
// and the devtmpfs mount) as /init. Empty when cpio failed.
inline std::string BuildBusyboxInitrd(const TempDir& dir, const std::string& name,
                                      const std::string& init_script) {
  namespace fs = std::filesystem;
  const std::string root = dir / (name + "-root");
  fs::create_directories(root + "/bin");
  fs::create_directories(root + "/dev");
  fs::copy_file("/bin/busybox", root + "/bin/busybox");
  fs::create_symlink("busybox", root + "/bin/sh");
  std::ofstream(root + "/init") << "#!/bin/sh\n"
                                   "/bin/busybox mount -t devtmpfs devtmpfs /dev\n"
                                << init_script;
  ::chmod((root + "/init").c_str(), 0755);
  const std::string initrd = dir / name;
  const std::string command =
      "cd '" + root + "' && find . | cpio -o -H newc --quiet > '" + initrd + "'";
  if (std::system(command.c_str()) != 0) return "";
  return initrd;
}

}  // namespace beaconbox::plugins::testing
