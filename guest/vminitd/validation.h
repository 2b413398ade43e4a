// What vminitd checks before a name from the shim becomes a guest path.
#pragma once

#include <string_view>

#include "common/base/result.h"

namespace beaconbox::guest {

// A container or exec id becomes a path component in the guest: 1..128 characters of
// [A-Za-z0-9_.-], starting with a letter or digit (so never "." or "..").
Status ValidateId(std::string_view id, std::string_view what);

// A path relative to the bundle (a mount target, the rootfs): no empty, "." or ".."
// components. `what` names it in the error.
Status ValidateRelativePath(std::string_view path, std::string_view what = "mount target");

}  // namespace beaconbox::guest
