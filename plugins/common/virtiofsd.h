// virtiofsd (the C daemon of Debian's QEMU 7.2): one process per virtio-fs share, for
// any VMM plugin that exports shares over vhost-user-fs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "beaconbox/plugin/v1/vmm.pb.h"
#include "common/base/result.h"
#include "plugins/common/child_process.h"

namespace beaconbox::plugins {

// The daemon's argv for `share` listening on `socket_path`; pure, for tests.
std::vector<std::string> BuildVirtiofsdCommand(const std::string& binary,
                                               const beaconbox::plugin::v1::Share& share,
                                               const std::string& socket_path);

// Starts virtiofsd for `share` and waits until its socket exists. A read-only share
// is exported from a read-only bind mount in the daemon's own mount namespace,
// because this virtiofsd has no read-only option. On failure nothing is left running
// and the error carries the tail of `log_path`.
Result<pid_t> StartVirtiofsd(Spawner& spawner, const std::string& binary,
                             const beaconbox::plugin::v1::Share& share,
                             const std::string& socket_path, const std::string& log_path,
                             std::chrono::milliseconds timeout);

// Ends the daemon of `socket_path` (it exits by itself once the VMM is gone; SIGKILL
// after `grace`) and removes its lock file.
void StopVirtiofsd(pid_t pid, const std::string& socket_path, std::chrono::milliseconds grace);

// virtiofsd keeps a lock file per socket in /run/virtiofsd, named after the socket
// path with '/' turned into '.', and leaves it when killed. Removes the one of
// `socket_path`.
void RemoveVirtiofsdLockFile(const std::string& socket_path);
// Removes the lock files of every socket under `dir`: the stale cleanup of a VM whose
// shim died (the daemons themselves die with it, PR_SET_PDEATHSIG).
void RemoveVirtiofsdLockFilesUnder(const std::string& dir);
// Where the lock file of `socket_path` is (exposed for tests).
std::string VirtiofsdLockFilePath(const std::string& socket_path);

}  // namespace beaconbox::plugins
