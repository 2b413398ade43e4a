#include "host/shim/sandbox_state.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/base/bounded_json.h"
#include "common/base/file_util.h"
#include "common/base/mount_table.h"
#include "host/shim/console_logs.h"

namespace beaconbox::shim {
namespace {

using nlohmann::json;

constexpr int kRecordVersion = 1;
constexpr size_t kMaxStateFile = 1 << 20;
constexpr auto kVmStopTimeout = std::chrono::seconds(5);

const char* StepName(Step step) {
  switch (step) {
    case Step::kNone:
      return "none";
    case Step::kStarted:
      return "started";
    case Step::kDone:
      return "done";
  }
  return "none";
}

Step StepFromName(const std::string& name) {
  if (name == "done") return Step::kDone;
  if (name == "started") return Step::kStarted;
  return Step::kNone;
}

json VmInfoToJson(const pluginapi::VmInfo& info) {
  return {{"id", info.id()},
          {"pids", std::vector<int64_t>(info.pids().begin(), info.pids().end())},
          {"pid_start_times",
           std::vector<uint64_t>(info.pid_start_times().begin(), info.pid_start_times().end())},
          {"accelerator", info.accelerator()},
          {"console_log_path", info.console_log_path()},
          {"guest_channel", info.guest_channel()},
          {"run_dir", info.run_dir()},
          {"vmm_pid", info.vmm_pid()}};
}

pluginapi::VmInfo VmInfoFromJson(const json& object) {
  pluginapi::VmInfo info;
  if (!object.is_object()) return info;
  info.set_id(object.value("id", ""));
  if (auto it = object.find("pids"); it != object.end() && it->is_array()) {
    for (const auto& pid : *it) {
      if (pid.is_number_integer()) info.add_pids(pid.get<int64_t>());
    }
  }
  // Absent in a file of an older shim: the cleanup then kills none of the pids.
  if (auto it = object.find("pid_start_times"); it != object.end() && it->is_array()) {
    for (const auto& start_time : *it) {
      info.add_pid_start_times(start_time.is_number_unsigned() ? start_time.get<uint64_t>() : 0);
    }
  }
  info.set_accelerator(object.value("accelerator", ""));
  info.set_console_log_path(object.value("console_log_path", ""));
  info.set_guest_channel(object.value("guest_channel", ""));
  info.set_run_dir(object.value("run_dir", ""));
  info.set_vmm_pid(object.value("vmm_pid", int64_t{0}));
  return info;
}

void LogFailure(const Status& status, std::string_view what) {
  if (!status.ok()) spdlog::warn("{}: {}", what, status.error().message);
}

}  // namespace

ContainerRecord* SandboxRecord::FindContainer(const ContainerKey& key) {
  for (auto& container : containers) {
    if (container.key == key) return &container;
  }
  return nullptr;
}

std::string SerializeRecord(const SandboxRecord& record) {
  json containers = json::array();
  for (const auto& container : record.containers) {
    containers.push_back({{"namespace", container.key.namespace_name},
                          {"id", container.key.id},
                          {"bundle", container.bundle},
                          {"rootfs", StepName(container.rootfs)}});
  }
  json document = {{"version", kRecordVersion},
                   {"namespace", record.sandbox.namespace_name},
                   {"sandbox_id", record.sandbox.id},
                   {"shim_pid", record.shim_pid},
                   {"vm_dir", record.vm_dir},
                   {"console_log", record.console_log_path},
                   {"network", StepName(record.network)},
                   {"vm", {{"step", StepName(record.vm)}, {"info", VmInfoToJson(record.vm_info)}}},
                   {"containers", std::move(containers)}};
  return document.dump(2) + "\n";
}

Result<SandboxRecord> ParseRecord(std::string_view text) {
  BBX_ASSIGN_OR_RETURN(json document, ParseBoundedJson(text, "the sandbox state file"));
  if (!document.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "the sandbox state file is not a JSON object");
  }
  // Reading a field of the wrong type would throw: check types, never trust the file.
  auto string_of = [&](const json& object, const char* key) {
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (!document.contains("version") || !document["version"].is_number_integer() ||
      document["version"].get<int>() != kRecordVersion) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the sandbox state file has an unknown version (this shim reads " +
                         std::to_string(kRecordVersion) + ")");
  }
  SandboxRecord record;
  record.sandbox = {string_of(document, "namespace"), string_of(document, "sandbox_id")};
  if (auto it = document.find("shim_pid"); it != document.end() && it->is_number_integer()) {
    record.shim_pid = it->get<int64_t>();
  }
  record.vm_dir = string_of(document, "vm_dir");
  record.console_log_path = string_of(document, "console_log");
  record.network = StepFromName(string_of(document, "network"));
  if (auto it = document.find("vm"); it != document.end() && it->is_object()) {
    record.vm = StepFromName(string_of(*it, "step"));
    if (auto info = it->find("info"); info != it->end()) record.vm_info = VmInfoFromJson(*info);
  }
  if (auto it = document.find("containers"); it != document.end() && it->is_array()) {
    for (const auto& entry : *it) {
      if (!entry.is_object()) continue;
      ContainerRecord container;
      container.key = {string_of(entry, "namespace"), string_of(entry, "id")};
      container.bundle = string_of(entry, "bundle");
      container.rootfs = StepFromName(string_of(entry, "rootfs"));
      record.containers.push_back(std::move(container));
    }
  }
  return record;
}

Status SaveRecord(const std::string& path, const SandboxRecord& record) {
  return WriteFileAtomic(path, SerializeRecord(record), 0600);
}

Result<SandboxRecord> LoadRecord(const std::string& path) {
  BBX_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kMaxStateFile));
  auto record = ParseRecord(text);
  if (!record.ok()) return record.error().Wrap(path);
  return record;
}

void TeardownFromRecord(const SandboxRecord& record, const SandboxBackends& backends,
                        const RuntimeLayout& layout, std::unique_ptr<VmHandle> live_vm,
                        const std::string& state_path) {
  const std::string who = record.sandbox.ToString();
  if (live_vm) {
    LogFailure(live_vm->Stop(kVmStopTimeout), "stopping the VM of " + who);
    live_vm.reset();
  }
  if (record.vm != Step::kNone && backends.vmm != nullptr) {
    pluginapi::VmInfo info = record.vm_info;
    if (info.run_dir().empty()) info.set_run_dir(record.vm_dir);
    // A VM whose create did not finish has no VmInfo yet; the plugin still gets the
    // namespace and id every per-container request carries.
    if (info.id().empty()) {
      info.set_namespace_(record.sandbox.namespace_name);
      info.set_id(record.sandbox.id);
    }
    LogFailure(backends.vmm->CleanupStale(info), "cleaning up the VM of " + who);
  }
  if (record.network != Step::kNone && backends.network != nullptr) {
    LogFailure(backends.network->Detach(record.sandbox), "detaching the network of " + who);
  }
  for (auto it = record.containers.rbegin(); it != record.containers.rend(); ++it) {
    if (it->rootfs == Step::kNone || backends.storage == nullptr) continue;
    LogFailure(backends.storage->Release(it->key, it->bundle),
               "releasing the rootfs of " + it->key.ToString());
  }
  std::error_code error;
  if (!record.vm_dir.empty()) {
    // Only ever a directory of our own run_dir, whatever the file says.
    // A pod's rootfs and volumes are mounted below it (storage-virtiofs' pod share):
    // if a release left one mounted, a plain recursive delete would delete the
    // container's files or the volume's host directory through it.
    if (layout.IsVmDir(record.vm_dir)) {
      LogFailure(RemoveTreeDetachingMounts(record.vm_dir), "removing the VM directory of " + who);
    } else {
      spdlog::warn("state file names VM directory {} outside {}: left alone", record.vm_dir,
                   layout.VmRoot());
    }
  }
  std::filesystem::remove(state_path, error);
  // The console log stays for the retention, from now; older ones of deleted
  // containers go.
  if (record.console_log_path == layout.ConsoleLogPath(record.sandbox)) {
    MarkConsoleLogDeleted(record.console_log_path);
  }
  size_t removed = SweepConsoleLogs(layout.log_dir(), layout.console_log_retention());
  if (removed > 0) spdlog::info("removed {} console log files past their retention", removed);
}

}  // namespace beaconbox::shim
