// fstab-style mount options to mount(2) flags and data, for every mount vminitd makes.
#pragma once

#include <string>
#include <vector>

namespace beaconbox::guest {

struct MountOptions {
  unsigned long flags = 0;        // MS_* passed to mount(2)
  unsigned long propagation = 0;  // MS_SHARED/MS_PRIVATE/... applied afterwards
  bool bind = false;
  bool remount_readonly = false;  // "ro" with bind needs a second remount
  std::string data;               // filesystem-specific options, comma separated
};

// Turns fstab-style options ("ro", "nosuid", "rbind", "size=64m") into mount(2) flags
// and the data string. Unknown words are passed to the filesystem as data.
MountOptions ParseMountOptions(const std::vector<std::string>& options);

}  // namespace beaconbox::guest
