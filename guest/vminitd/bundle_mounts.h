// Mounts the shim asks for in a container's guest bundle, whose paths are relative to
// the bundle (the host does not know where the guest keeps it).
#pragma once

#include <string>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::guest {

struct OverlayMount {
  std::vector<std::string> options;      // to mount with, every path absolute
  std::vector<std::string> directories;  // upperdir and workdir: created before mounting
};

// An overlay mount's options with each relative lowerdir (':'-separated), upperdir
// and workdir resolved against `bundle`; absolute ones are kept. A relative path
// with an empty, "." or ".." component is refused. Other options are kept as given.
Result<OverlayMount> ResolveOverlayOptions(const std::string& bundle,
                                           const std::vector<std::string>& options);

}  // namespace beaconbox::guest
