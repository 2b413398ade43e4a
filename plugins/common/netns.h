// Network namespaces for plugins: doing work inside one from a thread of its own
// (the shim's other threads never change namespace), making and removing a named one
// (a bind mount of the namespace onto a file, as `ip netns add` does), and opening a
// TAP that lives in one, so that a VMM outside it gets the device as a descriptor.
#pragma once

#include <functional>
#include <string>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox::plugins {

// Runs `work` on a new thread that first joins the network namespace at
// `netns_path` (setns), and waits for it. The thread ends with the work, so nothing
// else of the process ever runs in that namespace.
Status RunInNetns(const std::string& netns_path, const std::function<Status()>& work);

// Creates a new network namespace and pins it at `path` (a new file, bind-mounted;
// its directory must exist), with lo up. kAlreadyExists when `path` exists.
Status CreateNetns(const std::string& path);

// Unmounts and removes a namespace made by CreateNetns; a missing one is fine.
Status RemoveNetns(const std::string& path);

// Opens the TAP `tap_name` that exists in the namespace at `netns_path`, as QEMU
// would (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), and returns the queue's descriptor
// (close-on-exec). The device stays in its namespace; whoever holds the descriptor
// sends and receives its frames from anywhere.
Result<UniqueFd> OpenTapInNetns(const std::string& netns_path, const std::string& tap_name);

}  // namespace beaconbox::plugins
