// containerd's names as the plugins take them: a namespace or container id checked
// before it goes into a path, the "<ns>--<id>" key of per-container records (both
// from common/base/containerd_name.h, which the shim uses too), and the check for a
// clean absolute path that came in a request or a record.
#pragma once

#include <string_view>

#include "common/base/containerd_name.h"

namespace beaconbox::plugins {

using ::beaconbox::ContainerKeyName;
using ::beaconbox::IsContainerdName;

// Whether `name` is a ContainerKeyName of two containerd names.
bool IsContainerKeyName(std::string_view name);

// An absolute path with no ".." component and no NUL.
bool IsAbsoluteClean(std::string_view path);

}  // namespace beaconbox::plugins
