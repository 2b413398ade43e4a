// The QEMU version a checkpoint needs (issue 19): VmSaved.vmm_version names the QEMU
// that saved a VM, VmSpec.restore_vmm_version brings it back, and a restore refuses,
// before anything starts, a QEMU binary that names itself otherwise. QEMU's migration
// stream is only promised to load into the same version; another one would fail deep
// in the load with a message naming a device section, not the versions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "beaconbox/plugin/v1/vmm.pb.h"
#include "common/base/result.h"

namespace beaconbox::qemu {

// "QEMU emulator version 7.2.22": how a save names its QEMU (from QMP query-version)
// and what a restore compares with.
std::string VmmVersionText(uint64_t major, uint64_t minor, uint64_t micro);

// The same text from the first line of `qemu-system-x86_64 --version` ("QEMU emulator
// version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)": the package suffix is dropped).
// Anything else is refused in one line: the output is a program's, bounded by the caller.
Result<std::string> ParseQemuVersionOutput(std::string_view output);

// The version `binary` (absolute) names itself with. Cached under `cache_dir` (the
// plugin's <state_dir>/vmm-qemu/cache; empty: not cached) keyed by the binary's path,
// size, mtime, inode and device, so `binary --version` runs once per installed QEMU,
// not once per restore; an upgraded binary is another key. A cache file that does not
// hold its key and a well-formed version is ignored and rewritten.
Result<std::string> QemuBinaryVersion(const std::string& binary, const std::string& cache_dir);

// Before a restore starts anything: `binary_version` (QemuBinaryVersion of `binary`)
// must be spec.restore_vmm_version, the QEMU that saved the VM. A mismatch is one line
// naming both versions and what to do. Ok for a spec without restore_dir.
Status CheckRestoreVmmVersion(const beaconbox::plugin::v1::VmSpec& spec, const std::string& binary,
                              const std::string& binary_version);

}  // namespace beaconbox::qemu
