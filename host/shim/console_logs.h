// Console logs of deleted containers. A VM's console log (RuntimeLayout::
// ConsoleLogPath, and the VMM plugin's one rotated <log>.1) outlives its container so
// that an operator can read why it failed, but not for ever: it is kept for the
// retention (config key vm.console_log_retention_s) counted from the container's
// delete, then removed by the next teardown on this host.
//
// A live VM's log is never removed: the VMM plugin writing it holds a shared flock on
// it (vmm-qemu's CappedLog), and the sweep skips a log it cannot lock exclusively.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace beaconbox::shim {

// The container of `log_path` is deleted: its retention starts now (the log's and
// <log>.1's modification time is set to now).
void MarkConsoleLogDeleted(const std::string& log_path);

// Removes from `log_dir` every console log (vm-*.log and vm-*.log.1) last modified
// more than `retention` ago and not held by a live VM. Returns how many files went.
size_t SweepConsoleLogs(const std::string& log_dir, std::chrono::seconds retention);

}  // namespace beaconbox::shim
