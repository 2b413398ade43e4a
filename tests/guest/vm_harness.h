// Boots the guest image (_output kernel + initrd) in QEMU with TCG for the guest
// tests: a virtio-serial port named beaconbox.agent on a unix socket, and a
// virtio-fs share (virtiofsd) of a static busybox rootfs under tag "rootfs".
// Everything it starts is ended by pid and its temp dir removed, also on failure.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox::guest::testing {

class GuestVm {
 public:
  GuestVm() = default;
  GuestVm(const GuestVm&) = delete;
  GuestVm& operator=(const GuestVm&) = delete;
  ~GuestVm() { Stop(); }

  // Prepares the rootfs, starts virtiofsd and QEMU. With `deliver_token`, a fresh
  // agent token reaches the guest as the QEMU plugin delivers it (fw_cfg from a 0600
  // file); without, the guest gets none (a VMM that does not seal the channel).
  Status Start(const std::string& output_dir, bool deliver_token = true);
  // The token vminitd requires with every call (empty when not delivered).
  const std::string& agent_token() const { return agent_token_; }
  // Connects to the agent socket (QEMU is the server end).
  Result<UniqueFd> ConnectAgent(std::chrono::milliseconds timeout);
  // Waits for QEMU to exit by itself (after PowerOff); true if it did.
  bool WaitForExit(std::chrono::milliseconds timeout);
  void Stop();

  std::string ConsoleLog() const;
  std::chrono::steady_clock::time_point started_at() const { return started_at_; }
  const std::string& work_dir() const { return work_dir_; }

 private:
  std::string work_dir_;
  std::string agent_token_;
  pid_t qemu_pid_ = -1;
  pid_t virtiofsd_pid_ = -1;
  std::chrono::steady_clock::time_point started_at_;
};

}  // namespace beaconbox::guest::testing
