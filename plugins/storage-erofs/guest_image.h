// Whether the guest can mount EROFS, read from the guest image guest/build-image.sh
// made: the initrd (a newc cpio, plain or gzip'd) lists the kernel modules vminitd loads in
// /etc/beaconbox/modules.order and the wanted ones built into the kernel in
// /etc/beaconbox/builtin-modules; /etc/beaconbox/kernel-release names the kernel.
#pragma once

#include <string>

#include "common/base/result.h"

namespace beaconbox::storage {

// The contents of `name` (a path inside the archive, without a leading "/") in the
// newc cpio (plain or gzip'd) `initrd`, at most `max_bytes`. kNotFound when it is not there.
Result<std::string> ReadInitrdFile(const std::string& initrd, const std::string& name,
                                   size_t max_bytes);

// One line saying how the guest gets erofs ("erofs module .../erofs.ko, kernel 6.1.0-...",
// "erofs built into kernel ..."), or an error naming the initrd and what to do.
Result<std::string> GuestErofsSupport(const std::string& initrd);

// The initrd the host boots by default, found as the host finds it: share_dir's
// kernel/beacon-initrd, else beaconbox-initrd next to the running program.
std::string DefaultGuestInitrd(const std::string& share_dir);

}  // namespace beaconbox::storage
