// VM templating (config key template of [plugins.vmm.qemu.config], off by default).
//
// A template VM is booted once per key (kernel, initrd, QEMU binary, machine, memory,
// vCPUs, kernel command line, agent channel: TemplateKeyText) with its RAM in a file
// (memory-backend-file, share=on) until the guest agent serves, then paused and its
// device state saved (migrate with x-ignore-shared: the RAM stays in the file, only
// the devices go to the state file), and QEMU quits. A clone starts QEMU with the same
// machine, its RAM mapped from the template's memory file copy-on-write (share=off:
// pages shared between clones until a clone writes them), `-incoming defer`, loads
// the device state, continues, and gets its own disks, NICs and shares hot-added over
// QMP into the pcie-root-ports the template reserved. The guest then reads the
// clone's own agent token from fw_cfg at the first call (vminitd's KeptAgentToken)
// and the shim refreshes its random pool and clock (Guest.Refresh).
//
// A VM with virtio-fs shares cannot map the template's memory privately: virtiofsd
// needs guest memory shared with QEMU. Such a clone gets a private, shared copy of
// the template's memory (only the data extents are copied): it skips the boot but
// shares no pages with other clones.
//
// Trade-off (README): every clone has the template's kernel address layout (KASLR)
// and, until Refresh, its random state.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "beaconbox/plugin/v1/vmm.pb.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "plugins/common/child_process.h"
#include "plugins/vmm-qemu/qemu_vm.h"

namespace beaconbox::qemu {

// pcie-root-ports the template reserves for a clone's hot-added devices.
inline constexpr int kTemplateHotplugPorts = 8;

// The files of one template under QemuConfig.template_dir.
struct TemplateFiles {
  std::string dir;       // <template_dir>/<16 hex digits of the key's hash>
  std::string memory;    // the guest RAM (memory-backend-file)
  std::string state;     // the device state (QEMU's migration stream without RAM)
  std::string manifest;  // key text, sizes and checksums (FormatManifest)
  std::string lock;      // flock: exclusive while built, shared while a clone loads
};

// What a template was built from and what its files must be.
struct TemplateManifest {
  std::string key;  // TemplateKeyText, compared whole
  uint64_t memory_size = 0;
  int64_t memory_mtime_ns = 0;
  uint64_t state_size = 0;
  uint64_t state_checksum = 0;  // Checksum64 of the state file
};

// FNV-1a, 64 bits: catches a corrupt or truncated file, not a forger (whoever can
// write the template directory runs the VMs anyway).
uint64_t Checksum64(std::string_view data, uint64_t seed = 0xcbf29ce484222325ull);

// The template's command line and its clones': BuildQemuCommand of `spec` without
// its devices, the RAM from `memory_path` (shared, or private copy-on-write), and the
// hot-plug ports. `spec`'s devices are ignored. Never free page reporting (QEMU 7.2
// would punch holes into the shared template file from a copy-on-write clone).
Result<std::vector<std::string>> TemplateMachineCommand(const beaconbox::plugin::v1::VmSpec& spec,
                                                        const QemuConfig& config,
                                                        const LaunchPlan& plan,
                                                        const std::string& memory_path,
                                                        bool shared);

// Everything a template depends on, as text: the machine command line with the
// per-VM names normalised, and the identity (size, mtime, inode) of the kernel, the
// initrd and the QEMU binary. A change to any of them makes another key.
Result<std::string> TemplateKeyText(const beaconbox::plugin::v1::VmSpec& spec,
                                    const QemuConfig& config, const std::string& accelerator);

TemplateFiles TemplateFilesFor(const std::string& template_dir, const std::string& key_text);

std::string FormatManifest(const TemplateManifest& manifest);
Result<TemplateManifest> ParseManifest(std::string_view text);

// Checks a template before QEMU loads it: the manifest's key is `key_text`, the
// memory file has the manifest's size and mtime, the state file its size and
// checksum. One line naming what is wrong.
Status ValidateTemplate(const TemplateFiles& files, const std::string& key_text);

// One QMP command of a clone's device hot-add.
struct HotplugCommand {
  std::string command;
  std::string arguments;  // a JSON object as text
  int fd = -1;            // sent with it as SCM_RIGHTS (getfd), else -1
};

// The QMP commands that hot-add `spec`'s devices to a clone, one pcie-root-port each,
// in spec order. A TAP in another network namespace is handed over as the
// descriptor `plan.tap_fds` has for it (OpenNetnsTaps): getfd, then netdev_add
// naming it, as the cold boot's `-netdev tap,fd=`.
Result<std::vector<HotplugCommand>> HotplugCommands(const beaconbox::plugin::v1::VmSpec& spec,
                                                    const LaunchPlan& plan);

// Copies `from` to a new file `to` (mode 0600), only its data extents
// (SEEK_DATA/SEEK_HOLE): a clone's private guest RAM for virtio-fs.
Status CopySparse(const std::string& from, const std::string& to);

// A valid template, locked shared (no rebuild replaces its files) until `lock` is
// released; `in_use` (a shared flock on the template's directory) is held by the
// clone for its whole life: RemoveUnusedTemplates leaves the template alone while any
// clone holds it.
struct TemplateLease {
  TemplateFiles files;
  UniqueFd lock;
  UniqueFd in_use;
  bool built = false;  // this call booted the template
};

// Takes the "a clone uses this template" lock: a shared flock on `dir` (non-blocking
// fails only while RemoveUnusedTemplates is removing it).
Result<UniqueFd> LockTemplateInUse(const std::string& dir);

// Removes every template under `template_dir` but `keep` (a template directory name,
// may be empty) that no clone uses (LockTemplateInUse) and no shim builds or loads
// (its lock file), with its lock file and any half-built "<name>.new". Never waits
// for a lock. Returns the directories removed.
std::vector<std::string> RemoveUnusedTemplates(const std::string& template_dir,
                                               const std::string& keep,
                                               const std::function<void(const std::string&)>& log);

// Returns the template for `spec` (devices ignored), building it when it is missing,
// stale or fails ValidateTemplate (`log` says why). Concurrent callers build it once
// (flock). `boot_timeout` bounds the template's boot to "agent serving". After a
// build, templates of other keys that no clone uses are removed
// (RemoveUnusedTemplates).
Result<TemplateLease> EnsureTemplate(const beaconbox::plugin::v1::VmSpec& spec,
                                     const QemuConfig& config, const std::string& accelerator,
                                     plugins::Spawner& spawner,
                                     std::chrono::milliseconds boot_timeout,
                                     const std::function<void(const std::string&)>& log);

// Makes ValidateTemplate fail for this template (a clone could not load it): the next
// EnsureTemplate rebuilds it.
void InvalidateTemplate(const TemplateFiles& files);

}  // namespace beaconbox::qemu
