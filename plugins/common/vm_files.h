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

// Writes `token` to `path`: readable by this user only (0600), never through a symlink
// planted in run_dir (O_NOFOLLOW after unlinking), and never a leftover file's content
// (O_EXCL).
Status WriteAgentTokenFile(const std::string& path, const std::string& token);

}  // namespace beaconbox::plugins
