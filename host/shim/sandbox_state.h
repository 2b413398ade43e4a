// The one state file of a sandbox (RuntimeLayout::SandboxStatePath under the state dir,
// beside the shim record; RuntimeLayout::StateFilePath in the bundle without one): what
// the sandbox asked the plugins for, written atomically before and after each step of
// Create, so that whoever tears the sandbox down -- the serving shim, or the `delete`
// action after the shim died (kill -9) -- releases exactly that, with the same code.
//
// Schema (JSON, version 1):
//   { "version": 1, "namespace": "default", "sandbox_id": "c1", "shim_pid": 1234,
//     "vm_dir": "<run_dir>/vm/default--c1", "console_log": "<log_dir>/vm-default--c1.log",
//     "network": "started",              // none | started | done
//     "vm": { "step": "done", "info": { "id": ..., "pids": [..], "vmm_pid": ..,
//             "run_dir": .., "guest_channel": .., "accelerator": .. } },
//     "containers": [ { "namespace": "default", "id": "c1", "bundle": "/run/..",
//                       "rootfs": "done" } ] }
// "started" means the plugin call began and may have made something before a crash:
// teardown releases it too (every release op is idempotent).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "host/shim/runtime_layout.h"
#include "host/shim/sandbox_backends.h"

namespace beaconbox::shim {

enum class Step { kNone, kStarted, kDone };

struct ContainerRecord {
  ContainerKey key;
  std::string bundle;
  Step rootfs = Step::kNone;
};

struct SandboxRecord {
  ContainerKey sandbox;
  int64_t shim_pid = 0;
  std::string vm_dir;
  std::string console_log_path;
  Step network = Step::kNone;
  Step vm = Step::kNone;
  pluginapi::VmInfo vm_info;  // once vm is kDone
  std::vector<ContainerRecord> containers;

  ContainerRecord* FindContainer(const ContainerKey& key);
};

std::string SerializeRecord(const SandboxRecord& record);
Result<SandboxRecord> ParseRecord(std::string_view text);

// Atomic (temp + fsync + rename). Load: kNotFound when there is no file.
Status SaveRecord(const std::string& path, const SandboxRecord& record);
Result<SandboxRecord> LoadRecord(const std::string& path);

// Releases everything `record` says may exist, newest first: the VM (`live_vm`, the
// serving shim's handle, is stopped and destroyed; then the VMM cleans up whatever the
// record's VmInfo names), the network attachment, each container's rootfs; then the
// VM directory (only if it is one of `layout`'s) and the state file at `state_path`.
// Best effort: a failure is logged and the rest still runs. The serving shim's
// Teardown and the `delete` action both end here.
void TeardownFromRecord(const SandboxRecord& record, const SandboxBackends& backends,
                        const RuntimeLayout& layout, std::unique_ptr<VmHandle> live_vm,
                        const std::string& state_path);

}  // namespace beaconbox::shim
