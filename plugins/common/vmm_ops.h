// The ABI's per-VM ops of an in-tree VMM plugin, written once. A plugin whose
// `struct bbx_vm` holds `std::unique_ptr<V> vm` (V with ConnectGuest, Info, Stop,
// Pause, Resume, Resize returning beaconbox Results) puts these templates in its
// bbx_vmm_ops table, e.g. `.vm_stop = beaconbox::plugins::VmStopOp<bbx_vm>`; only what
// differs between VMMs (create, destroy, device hotplug, stale cleanup's binaries)
// stays in its plugin.cc.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "beaconbox/plugin/v1/plugin.pb.h"
#include "beaconbox/plugin/v1/vmm.pb.h"
#include "beaconbox/plugin_abi.h"
#include "beaconbox/plugin_support.hpp"
#include "plugins/common/abi_error.h"
#include "plugins/common/check_report.h"
#include "plugins/common/child_process.h"
#include "plugins/common/virtiofsd.h"

namespace beaconbox::plugins {

// Parses a protobuf message the host passed in; false when it does not parse.
template <typename Message>
bool ParseAbiMessage(bbx_bytes bytes, Message& message) {
  return message.ParseFromArray(bytes.data, static_cast<int>(bytes.len));
}

template <typename Handle>
bbx_status VmConnectGuestOp(Handle* vm, uint32_t timeout_ms, int* fd_out, bbx_error* error) {
  auto fd = vm->vm->ConnectGuest(std::chrono::milliseconds(timeout_ms));
  if (!fd.ok()) return Fail(fd.error(), error);
  *fd_out = fd->Release();
  return BBX_OK;
}

template <typename Handle>
bbx_status VmInfoOp(Handle* vm, bbx_sink info, bbx_error* error) {
  return bbx::WriteSink(info, vm->vm->Info().SerializeAsString(), error);
}

template <typename Handle>
bbx_status VmStopOp(Handle* vm, uint32_t timeout_ms, bbx_error* error) {
  auto status = vm->vm->Stop(std::chrono::milliseconds(timeout_ms));
  return status.ok() ? BBX_OK : Fail(status.error(), error);
}

template <typename Handle>
bbx_status VmPauseOp(Handle* vm, bbx_error* error) {
  auto status = vm->vm->Pause();
  return status.ok() ? BBX_OK : Fail(status.error(), error);
}

template <typename Handle>
bbx_status VmResumeOp(Handle* vm, bbx_error* error) {
  auto status = vm->vm->Resume();
  return status.ok() ? BBX_OK : Fail(status.error(), error);
}

template <typename Handle>
bbx_status VmResizeOp(Handle* vm, uint32_t vcpus, uint64_t memory_mib, bbx_error* error) {
  auto status = vm->vm->Resize(vcpus, memory_mib);
  return status.ok() ? BBX_OK : Fail(status.error(), error);
}

template <typename Handle>
bbx_status VmSaveOp(Handle* vm, const char* dir, bbx_sink saved, bbx_error* error) {
  if (dir == nullptr || dir[0] != '/') {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "vm_save needs an absolute directory");
  }
  auto message = vm->vm->Save(dir);
  if (!message.ok()) return Fail(message.error(), error);
  return bbx::WriteSink(saved, message->SerializeAsString(), error);
}

// Ends what a dead shim's VM left, but only the processes that are provably the
// recorded ones (pid, start time, running one of `binaries`): a recycled pid is never
// killed, and a VmInfo without start times (an older shim's state) kills nothing. Then
// removes virtiofsd's lock files for the VM's sockets.
inline bbx_status CleanupStaleVm(bbx_bytes info_bytes, const std::vector<std::string>& binaries,
                                 bbx_error* error) {
  beaconbox::plugin::v1::VmInfo info;
  if (!ParseAbiMessage(info_bytes, info)) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "unparsable VmInfo");
  }
  std::vector<RecordedProcess> processes;
  for (int i = 0; i < info.pids_size(); ++i) {
    processes.push_back(
        {info.pids(i), i < info.pid_start_times_size() ? info.pid_start_times(i) : 0});
  }
  KillStaleProcesses(processes, binaries);
  RemoveVirtiofsdLockFilesUnder(info.run_dir());
  return BBX_OK;
}

// The ops table of a VMM plugin whose bbx_vm has the members the templates above
// call: the plugin gives only the ops that differ per VMM (`save`: VmSaveOp<Handle>
// when V has Save(dir) -> Result<VmSaved>, else nullptr).
template <typename Handle>
constexpr bbx_vmm_ops VmmOpsTable(decltype(bbx_vmm_ops::vm_create) create,
                                  decltype(bbx_vmm_ops::vm_destroy) destroy,
                                  decltype(bbx_vmm_ops::vm_add_device) add_device,
                                  decltype(bbx_vmm_ops::vm_cleanup_stale) cleanup_stale,
                                  decltype(bbx_vmm_ops::vm_save) save) {
  return bbx_vmm_ops{
      .struct_size = sizeof(bbx_vmm_ops),
      .vm_create = create,
      .vm_connect_guest = VmConnectGuestOp<Handle>,
      .vm_info = VmInfoOp<Handle>,
      .vm_stop = VmStopOp<Handle>,
      .vm_destroy = destroy,
      .vm_pause = VmPauseOp<Handle>,
      .vm_resume = VmResumeOp<Handle>,
      .vm_add_device = add_device,
      .vm_resize = VmResizeOp<Handle>,
      .vm_cleanup_stale = cleanup_stale,
      .vm_save = save,
  };
}

// The check line every VMM plugin that starts virtiofsd gives for it.
inline void AddVirtiofsdCheck(beaconbox::plugin::v1::CheckReport& report,
                              const std::string& virtiofsd) {
  if (::access(virtiofsd.c_str(), X_OK) == 0) {
    AddCheckLine(report, beaconbox::plugin::v1::CHECK_OK, "virtiofsd", virtiofsd);
  } else {
    AddCheckLine(report, beaconbox::plugin::v1::CHECK_FAIL, "virtiofsd",
                 virtiofsd +
                     " is not executable (config key virtiofsd): apt-get install "
                     "qemu-system-x86 (Debian 12 ships it in /usr/lib/qemu), or fix the key");
  }
}

}  // namespace beaconbox::plugins
