// What PID 1 does before serving: filesystems, kernel modules, hostname, loopback,
// and the small file helpers the rest of vminitd uses.
#pragma once

#include <string>
#include <vector>

#include "common/base/file_util.h"
#include "common/base/result.h"

namespace beaconbox::guest {

// Mounts proc, sys, dev (devtmpfs), /dev/pts, /dev/shm, cgroup2 (all controllers
// enabled for children), /run and /tmp. Continues past failures, logging each.
void MountBaseFilesystems();

// Points stdin/stdout/stderr at /dev/console when the kernel could not (the initrd
// carries no device nodes; devtmpfs provides them).
void OpenConsole();

// Loads each module path listed in `order_file` with finit_module. A module already
// loaded or built in is not an error; other failures are logged and skipped.
void LoadModules(const std::string& order_file);

// The kernel's module loader helper in the guest: vminitd run as kModprobeHelper
// (a link to /init). Loads a module the kernel asks for only if it is on the on-demand
// list (kernel_modules.h), its dependencies first; returns the exit status (0 loaded
// or already there, 1 refused or failed).
inline constexpr char kModprobeHelper[] = "/usr/sbin/bbx-modprobe";
int ModprobeMain(int argc, char** argv);
// Points /proc/sys/kernel/modprobe at kModprobeHelper.
void SetModprobeHelper();

// Sets the free page reporting order (/sys/module/page_reporting/parameters), once
// virtio_balloon is loaded; logs a failure.
void SetPageReportingOrder(int order);

void SetHostname(const std::string& hostname);
void BringUpLoopback();

// Mounts `mount` with its target relative to `base` unless absolute; creates the
// target directory.
Status MountOne(const std::string& type, const std::string& source, const std::string& target,
                const std::vector<std::string>& options);

// ReadSmallFile and WriteFileAtomic: common/base/file_util.h.
Status MakeDirs(const std::string& path, unsigned mode = 0755);
// Removes a directory tree without crossing into mounts (unmounts what it finds).
Status RemoveTree(const std::string& path);

}  // namespace beaconbox::guest
