#include "plugins/common/netns.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "common/base/errno_error.h"

namespace beaconbox::plugins {
namespace {

// Runs `work` on a new thread after `enter` (which moves that thread somewhere).
Status OnOwnThread(const std::function<Status()>& enter, const std::function<Status()>& work) {
  Status result = Status::Ok();
  std::thread thread([&] {
    Status entered = enter();
    result = entered.ok() ? work() : entered;
  });
  thread.join();
  return result;
}

Status BringLoopbackUp() {
  UniqueFd socket(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!socket) return ErrnoError("socket", "for lo");
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(socket.get(), SIOCGIFFLAGS, &request) != 0) return ErrnoError("SIOCGIFFLAGS", "lo");
  request.ifr_flags |= IFF_UP;
  if (::ioctl(socket.get(), SIOCSIFFLAGS, &request) != 0) return ErrnoError("SIOCSIFFLAGS", "lo");
  return Status::Ok();
}

}  // namespace

Status RunInNetns(const std::string& netns_path, const std::function<Status()>& work) {
  UniqueFd netns(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!netns) return ErrnoError("open network namespace", netns_path);
  const int fd = netns.get();
  return OnOwnThread(
      [&]() -> Status {
        if (::setns(fd, CLONE_NEWNET) != 0) return ErrnoError("setns", netns_path);
        return Status::Ok();
      },
      work);
}

Status CreateNetns(const std::string& path) {
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  if (!file) return ErrnoError("create network namespace file", path);
  file.Reset();
  Status made = OnOwnThread(
      [&]() -> Status {
        if (::unshare(CLONE_NEWNET) != 0) return ErrnoError("unshare", "a network namespace");
        return Status::Ok();
      },
      [&]() -> Status {
        if (::mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0) {
          return ErrnoError("bind-mount a network namespace on", path);
        }
        return BringLoopbackUp();
      });
  if (!made.ok()) {
    (void)RemoveNetns(path);
    return made;
  }
  return Status::Ok();
}

Status RemoveNetns(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return ErrnoError("unmount network namespace", path);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("remove network namespace file", path);
  }
  return Status::Ok();
}

Result<UniqueFd> OpenTapInNetns(const std::string& netns_path, const std::string& tap_name) {
  if (tap_name.empty() || tap_name.size() >= IFNAMSIZ) {
    return MakeError(ErrorCode::kInvalidArgument, "bad TAP name \"" + tap_name + "\"");
  }
  UniqueFd tap;
  Status opened = RunInNetns(netns_path, [&]() -> Status {
    // The tun device looks the name up in the namespace of the thread that asks.
    tap.Reset(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!tap) return ErrnoError("open", "/dev/net/tun");
    ifreq request{};
    std::strncpy(request.ifr_name, tap_name.c_str(), IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(tap.get(), TUNSETIFF, &request) != 0) {
      return ErrnoError("TUNSETIFF", tap_name + " in " + netns_path);
    }
    return Status::Ok();
  });
  if (!opened.ok()) return opened.error().Wrap("open TAP");
  return tap;
}

}  // namespace beaconbox::plugins
