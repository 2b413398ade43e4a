// Which accelerator a QEMU VM gets, and why.
//
// A /dev/kvm that opens is not a KVM that boots the guest: a nested, paravirtual KVM
// (kvm_pvm) runs a tiny guest, but QEMU with `-cpu host` aborts on MSR 0x10a and other
// CPU models leave Debian's kernel silent. So "auto" verifies KVM once per (host boot,
// QEMU binary, kernel, initrd, KVM device): a probe boots the real guest kernel under
// `-accel kvm -cpu host` with nothing but a serial console and waits for the kernel
// to reach init. The verdict and its reason are cached as JSON under the plugin's
// state directory, so later VMs pay nothing; a cached "usable" that later fails is
// invalidated by the VM that saw it fail, and the next VM probes again.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::qemu {

struct AcceleratorSettings {
  std::string mode = "auto";  // auto | kvm | tcg
  // Opened to decide whether KVM is there at all; tests point it at a stand-in
  // (/dev/null) so that the probe path runs on a host without KVM. QEMU itself
  // always opens /dev/kvm.
  std::string kvm_device = "/dev/kvm";
  std::chrono::milliseconds probe_timeout{10000};
  // Where verdicts are cached ("<state_dir>/vmm-qemu"); empty: probe every time.
  std::string cache_dir;
};

// What the probe boots: the binary, machine, kernel and initrd of the real VMs.
struct ProbeTarget {
  std::string binary;
  std::string machine = "q35";
  std::string kernel;
  std::string initrd;
  uint64_t memory_mib = 512;
};

// The outcome of one probe, as cached.
struct KvmVerdict {
  bool usable = false;
  // One sanitized line: QEMU's own error, "guest kernel printed nothing in N ms", or
  // for a usable KVM how it was verified.
  std::string reason;
  int64_t probe_ms = 0;
  int64_t probed_at = 0;  // unix seconds
  // What it was measured for (informational, and for `beaconbox-ctl check`).
  std::string boot_id;
  std::string kvm_device;
  std::string binary;
  std::string kernel;
  std::string initrd;
};

enum class AcceleratorSource {
  kConfig,         // accelerator = "tcg"
  kNoDevice,       // the KVM device does not open
  kCachedVerdict,  // a verdict file answered
  kProbe,          // this call probed
};

struct AcceleratorChoice {
  std::string accelerator;  // "kvm" or "tcg"
  std::string why;          // one line, for logs and VmInfo.accelerator_reason
  AcceleratorSource source = AcceleratorSource::kConfig;
  bool kvm_broken = false;   // the device opens but KVM cannot boot the guest
  std::string verdict_path;  // the verdict file consulted or written, "" if none
};

// The kernel prints this (at KERN_INFO, shown with loglevel=7) when it starts init.
inline constexpr char kProbeInitMarker[] = "Run /init as init process";

// `text` as one printable line of at most `max_bytes`: newlines become " | ", other
// control and non-ASCII bytes '?'. QEMU's and the guest's output are untrusted.
std::string SanitizeLine(std::string_view text, size_t max_bytes);

// The text the verdict key is hashed from: host boot id, and path, size and mtime of
// the QEMU binary, kernel and initrd, the KVM device and its device number, and the
// probe's machine and CPU. Fails when one of the files cannot be stat'ed.
Result<std::string> VerdictKeyText(const ProbeTarget& target, const std::string& kvm_device);
// "<path> size=N mtime=NS ino=N dev=N" ("<path> missing"): a file's part of a cache
// key (templates, the QEMU version); a replaced or rewritten file gives another one.
std::string FileIdentity(const std::string& path);
// 16 hex digits (FNV-1a 64 of the key text): stable across processes and builds.
std::string VerdictKey(std::string_view key_text);
std::string VerdictPath(const std::string& cache_dir, const std::string& key);

std::string SerializeVerdict(const KvmVerdict& verdict);
Result<KvmVerdict> ParseVerdict(std::string_view json);
// nullopt when the file does not exist; an unreadable or corrupt file is an error.
Result<std::optional<KvmVerdict>> ReadVerdict(const std::string& path);
// Written to a temporary file and renamed over `path`.
Status WriteVerdict(const std::string& path, const KvmVerdict& verdict);
void InvalidateVerdict(const std::string& path);

// The probe's QEMU argv: KVM, -cpu host, the guest kernel and initrd, the serial
// console into `console_path`, no other device; the guest panics into an exit.
std::vector<std::string> BuildProbeCommand(const ProbeTarget& target,
                                           const std::string& console_path);

// Boots `target` under KVM until the kernel reaches init (usable), QEMU exits
// (unusable, QEMU's stderr is the reason) or `timeout` passes (unusable). Probe
// files live in `scratch_dir` and are removed; the probe is killed by its pid.
KvmVerdict ProbeKvm(const ProbeTarget& target, std::chrono::milliseconds timeout,
                    const std::string& scratch_dir);

// The decision for one VM: "tcg" touches nothing; otherwise the KVM device is opened,
// and when it opens the cached verdict answers, or a probe (under an flock, so that
// concurrent shims probe once) whose verdict is then cached. With mode "kvm" an
// unusable KVM is an error carrying the reason; with "auto" it is TCG.
Result<AcceleratorChoice> ChooseAccelerator(const AcceleratorSettings& settings,
                                            const ProbeTarget& target,
                                            const std::string& scratch_dir);

// The `beaconbox-ctl check` line for the accelerator.
struct CheckLine {
  enum class Level { kOk, kWarn, kFail };
  Level level = Level::kOk;
  std::string text;
};
// From a decision (or the error ChooseAccelerator returned).
CheckLine CheckLineFor(const AcceleratorSettings& settings,
                       const Result<AcceleratorChoice>& choice);
// What `beaconbox-ctl check` says (the plugin's check hook) without probing: the
// config, whether the KVM device opens, and the newest cached verdict of this host
// boot for that device (and `binary`); "not verified yet" when no VM has probed.
CheckLine CachedAcceleratorCheck(const AcceleratorSettings& settings, const std::string& binary);
// Decides as a VM would (may probe, and then caches the verdict).
CheckLine AcceleratorCheck(const AcceleratorSettings& settings, const ProbeTarget& target,
                           const std::string& scratch_dir);

}  // namespace beaconbox::qemu
