// Files a VMM plugin hands its VMM: the guest's kernel and initrd, and the agent
// token the guest reads through fw_cfg. Shared so that every VMM plugin writes the
// token the same (safe) way.
#pragma once

#include <string>

#include "common/base/result.h"

namespace beaconbox::plugins {

// kNotFound naming `what`, the path and its config `key` when `path` is empty or not
// readable by this process.
Status CheckReadable(const std::string& path, const std::string& what, const std::string& key);

// The uncompressed PVH vmlinux the guest image build writes next to the bzImage
// (guest/extract-vmlinux.sh): _output/'s name, then the installed <share_dir>/kernel/ one.
inline constexpr const char* kVmlinuxNames[] = {"beaconbox-vmlinux-x86_64",
                                                "beacon-vmlinux-x86_64"};

// The first readable kVmlinuxNames file in the directory of `kernel_path` (the host's
// vm.kernel_path), "" when there is none: what a VMM plugin's kernel = "auto" boots.
std::string VmlinuxNextTo(const std::string& kernel_path);

// Writes `token` to `path`: readable by this user only (0600), never through a symlink
// planted in run_dir (O_NOFOLLOW after unlinking), and never a leftover file's content
// (O_EXCL).
Status WriteAgentTokenFile(const std::string& path, const std::string& token);

}  // namespace beaconbox::plugins
