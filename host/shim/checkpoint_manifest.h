// The manifest of a VM-level checkpoint (issue 19; README "Checkpoint and restore").
// A checkpoint directory comes from outside (containerd unpacks it from an image that
// may have been copied between hosts, truncated or forged), so restore reads it only
// through ValidateCheckpointDir: a bounded manifest, file names that stay inside the
// directory, sizes bounded by the guest memory before anything is read, SHA-256
// digests of every file, and the inputs the saved VM needs (beaconbox version, kernel
// and initrd digests, VMM and its version, guest memory size) equal to this host's.
// Each refusal is one line naming the mismatch. The digests catch corruption and
// truncation; they do not authenticate: whoever can hand containerd a checkpoint can
// write a matching manifest, so the VMM still loads the state as untrusted input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::shim {

// Format 2 adds what restore needs to adopt the saved guest's container (its guest id
// and pid, the containerd id it had, its stdio) and the VM's shape (vCPUs, hotplug
// maxima); format 1 checkpoints are refused (they cannot be adopted).
inline constexpr char kCheckpointFormat[] = "beaconbox-checkpoint 2";
inline constexpr char kCheckpointManifestName[] = "beaconbox-checkpoint.json";
inline constexpr size_t kMaxCheckpointManifestBytes = 64 * 1024;
inline constexpr size_t kMaxCheckpointFiles = 8;
// Device state and migration stream framing beyond the guest's RAM.
inline constexpr uint64_t kCheckpointStateSlackBytes = 64ull << 20;

struct CheckpointFile {
  std::string name;  // a plain name inside the checkpoint directory
  uint64_t size = 0;
  std::string sha256;  // 64 lowercase hex digits
};

struct CheckpointManifest {
  std::string format = kCheckpointFormat;
  std::string beaconbox_version;
  std::string kernel_sha256;
  std::string initrd_sha256;
  std::string vmm;          // the VMM plugin's name ("qemu")
  std::string vmm_version;  // the VMM binary's version ("QEMU emulator version 7.2.22 ...")
  uint64_t memory_mib = 0;
  // The VM's shape beyond its memory: QEMU loads a save only into the same vCPUs and
  // hotplug slots (-smp maxcpus, -m maxmem).
  uint64_t vcpus = 0;
  uint64_t max_vcpus = 0;
  uint64_t max_memory_mib = 0;
  // The container the saved guest runs: the containerd namespace and id it had, the
  // id the guest knows it by, its init's guest pid (logged only), and which stdio
  // streams the guest process has.
  std::string container_namespace;
  std::string container_id;
  std::string guest_container_id;
  uint64_t guest_pid = 0;
  // The next ttrpc stream id of the shim's guest connection when the VM was saved: the
  // restored guest's agent session has seen every id below it (ttrpc ids only grow).
  uint64_t guest_stream_id = 1;
  bool has_stdin = false;
  bool has_stdout = false;
  bool has_stderr = false;
  bool terminal = false;
  std::vector<CheckpointFile> files;
};

// What this host would restore with; ValidateCheckpointDir compares a manifest to it.
struct CheckpointHost {
  std::string beaconbox_version;
  std::string kernel_sha256;
  std::string initrd_sha256;
  std::string vmm;
  std::string vmm_version;  // empty: not known before the VMM runs (the plugin compares)
  uint64_t max_memory_mib = 0;
  // This host's hotplug maxima (vm.max_vcpus, vm.max_memory_mib; 0 = none): the VM
  // would boot with max(maximum, the saved size), which must be the saved VM's.
  // Compared only when compare_shape is set.
  bool compare_shape = false;
  uint64_t config_max_vcpus = 0;
  uint64_t config_max_memory_mib = 0;
};

std::string FormatCheckpointManifest(const CheckpointManifest& manifest);
// Structure only: format, types, bounds, names, digests' shape.
Result<CheckpointManifest> ParseCheckpointManifest(std::string_view text);
// The manifest's inputs against this host's.
Status CheckCheckpointHost(const CheckpointManifest& manifest, const CheckpointHost& host);
// Each listed file in `dir`: a regular file (no symlink), the listed size (at most the
// guest memory plus kCheckpointStateSlackBytes), the listed SHA-256.
Status VerifyCheckpointFiles(const CheckpointManifest& manifest, const std::string& dir);
// All of the above, in that order; nothing is read past the first refusal.
Result<CheckpointManifest> ValidateCheckpointDir(const std::string& dir,
                                                 const CheckpointHost& host);

// The SHA-256 of a file's contents as 64 lowercase hex digits.
Result<std::string> Sha256OfFile(const std::string& path);
// Describes `dir`/`name` for a manifest being written.
Result<CheckpointFile> DescribeCheckpointFile(const std::string& dir, const std::string& name);

}  // namespace beaconbox::shim
