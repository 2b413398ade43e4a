// virtiofsd (the C daemon of Debian's QEMU 7.2): one process per virtio-fs share.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "beaconbox/plugin/v1/vmm.pb.h"
#include "common/base/result.h"
#include "plugins/vmm-qemu/process.h"

namespace beaconbox::qemu {

// The daemon's argv for `share` listening on `socket_path`; pure, for tests.
std::vector<std::string> BuildVirtiofsdCommand(const std::string& binary,
                                               const beaconbox::plugin::v1::Share& share,
                                               const std::string& socket_path);

// Starts virtiofsd for `share` and waits until its socket exists. A read-only share
// is exported from a read-only bind mount in the daemon's own mount namespace,
// because this virtiofsd has no read-only option.
Result<pid_t> StartVirtiofsd(Spawner& spawner, const std::string& binary,
                             const beaconbox::plugin::v1::Share& share,
                             const std::string& socket_path, const std::string& log_path,
                             std::chrono::milliseconds timeout);

// virtiofsd keeps a lock file per socket in /run/virtiofsd, named after the socket
// path with '/' turned into '.', and leaves it when killed. Removes the one of
// `socket_path`.
void RemoveVirtiofsdLockFile(const std::string& socket_path);
// Removes the lock files of every socket under `dir` (stale cleanup).
void RemoveVirtiofsdLockFilesUnder(const std::string& dir);

}  // namespace beaconbox::qemu
