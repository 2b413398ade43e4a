#include "guest/vminitd/mount_options.h"

#include <sys/mount.h>

namespace beaconbox::guest {
MountOptions ParseMountOptions(const std::vector<std::string>& options) {
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
      {"relatime", false, MS_RELATIME},
      {"strictatime", false, MS_STRICTATIME},
      {"dirsync", false, MS_DIRSYNC},
      {"remount", false, MS_REMOUNT},
  };
  static constexpr Flag kPropagation[] = {
      {"shared", false, MS_SHARED},         {"rshared", false, MS_SHARED | MS_REC},
      {"private", false, MS_PRIVATE},       {"rprivate", false, MS_PRIVATE | MS_REC},
      {"slave", false, MS_SLAVE},           {"rslave", false, MS_SLAVE | MS_REC},
      {"unbindable", false, MS_UNBINDABLE}, {"runbindable", false, MS_UNBINDABLE | MS_REC},
  };
  MountOptions out;
  for (const std::string& option : options) {
    if (option == "bind") {
      out.bind = true;
      out.flags |= MS_BIND;
      continue;
    }
    if (option == "rbind") {
      out.bind = true;
      out.flags |= MS_BIND | MS_REC;
      continue;
    }
    if (option == "defaults" || option.empty()) continue;
    bool matched = false;
    for (const Flag& f : kFlags) {
      if (option == f.name) {
        if (f.clear) {
          out.flags &= ~f.flag;
        } else {
          out.flags |= f.flag;
        }
        matched = true;
        break;
      }
    }
    for (const Flag& f : kPropagation) {
      if (!matched && option == f.name) {
        out.propagation |= f.flag;
        matched = true;
      }
    }
    if (matched) continue;
    if (!out.data.empty()) out.data += ',';
    out.data += option;
  }
  // The kernel ignores MS_RDONLY on the first bind mount; it takes a remount.
  out.remount_readonly = out.bind && (out.flags & MS_RDONLY);
  return out;
}

}  // namespace beaconbox::guest
