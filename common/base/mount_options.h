// fstab/containerd-style mount options ("ro", "nosuid", "rbind", "rprivate",
// "size=64m") to mount(2) flags, propagation and filesystem data. One parser for the
// host (the storage plugin mounting a container's rootfs) and the guest (vminitd's
// every mount). Header-only, so that the static guest agent compiles it in as well.
#pragma once

#include <sys/mount.h>

#include <string>
#include <string_view>
#include <vector>

namespace beaconbox {

struct MountOptions {
  unsigned long flags = 0;        // MS_* passed to mount(2); "rbind" is MS_BIND | MS_REC
  unsigned long propagation = 0;  // MS_SHARED/MS_PRIVATE/... applied by a second call
  bool bind = false;
  bool remount_readonly = false;  // "ro" with bind needs a second, remounting call
  std::string data;               // filesystem-specific options, comma separated
};

// Unknown words are passed to the filesystem as data; "defaults" and "" are ignored.
inline MountOptions ParseMountOptions(const std::vector<std::string>& options) {
  struct Flag {
    std::string_view name;
    bool clear;
    unsigned long flag;
  };
  static constexpr Flag kFlags[] = {
      {"ro", false, MS_RDONLY},
      {"rw", true, MS_RDONLY},
      {"nosuid", false, MS_NOSUID},
      {"suid", true, MS_NOSUID},
      {"nodev", false, MS_NODEV},
      {"dev", true, MS_NODEV},
      {"noexec", false, MS_NOEXEC},
      {"exec", true, MS_NOEXEC},
      {"sync", false, MS_SYNCHRONOUS},
      {"async", true, MS_SYNCHRONOUS},
      {"noatime", false, MS_NOATIME},
      {"atime", true, MS_NOATIME},
      {"nodiratime", false, MS_NODIRATIME},
      {"diratime", true, MS_NODIRATIME},
      {"relatime", false, MS_RELATIME},
      {"norelatime", true, MS_RELATIME},
      {"strictatime", false, MS_STRICTATIME},
      {"dirsync", false, MS_DIRSYNC},
      {"remount", false, MS_REMOUNT},
      {"bind", false, MS_BIND},
      {"rbind", false, MS_BIND | MS_REC},
  };
  static constexpr Flag kPropagation[] = {
      {"shared", false, MS_SHARED},         {"rshared", false, MS_SHARED | MS_REC},
      {"private", false, MS_PRIVATE},       {"rprivate", false, MS_PRIVATE | MS_REC},
      {"slave", false, MS_SLAVE},           {"rslave", false, MS_SLAVE | MS_REC},
      {"unbindable", false, MS_UNBINDABLE}, {"runbindable", false, MS_UNBINDABLE | MS_REC},
  };
  MountOptions out;
  for (const std::string& option : options) {
    if (option == "defaults" || option.empty()) continue;
    bool matched = false;
    for (const Flag& f : kFlags) {
      if (option != f.name) continue;
      if (f.clear) {
        out.flags &= ~f.flag;
      } else {
        out.flags |= f.flag;
      }
      matched = true;
      break;
    }
    for (const Flag& f : kPropagation) {
      if (matched || option != f.name) continue;
      out.propagation |= f.flag;
      matched = true;
    }
    if (matched) continue;
    if (!out.data.empty()) out.data += ',';
    out.data += option;
  }
  out.bind = (out.flags & MS_BIND) != 0;
  // The kernel ignores MS_RDONLY on the first bind mount; it takes a remount.
  out.remount_readonly = out.bind && (out.flags & MS_RDONLY);
  return out;
}

}  // namespace beaconbox
