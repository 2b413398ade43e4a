// QemuVm from a saved VM: a template (template.h; restore it, then hot-add the devices),
// and the incoming migration that a checkpoint's restore (qemu_vm.cc) shares.
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "common/base/bounded_json.h"
#include "common/base/file_util.h"
#include "plugins/common/netns.h"
#include "plugins/common/virtiofsd.h"
#include "plugins/common/vm_files.h"
#include "plugins/vmm-qemu/qemu_vm.h"
#include "plugins/vmm-qemu/template.h"

namespace beaconbox::qemu {
namespace {

namespace pluginapi = ::beaconbox::plugin::v1;
using namespace std::chrono_literals;

std::string StatusOf(const std::string& reply_text) {
  auto reply = ParseBoundedJson(reply_text, "QMP reply");
  if (!reply.ok() || !reply->is_object() || !reply->contains("status") ||
      !(*reply)["status"].is_string()) {
    return "";
  }
  return (*reply)["status"].get<std::string>();
}

}  // namespace

Status QemuVm::LoadIncoming(const std::string& uri, const std::string& what,
                            std::chrono::milliseconds timeout) {
  auto called = qmp_->Call("migrate-incoming", nlohmann::json{{"uri", uri}}.dump(), 10s);
  if (!called.ok()) {
    if (!plugins::ChildRunning(qemu_pid_)) return Died("QEMU exited loading " + what);
    return called.error().Wrap("loading " + what);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // QEMU 7.2 exits when it cannot load the state (its log says why).
    if (!plugins::ChildRunning(qemu_pid_)) return Died("QEMU exited loading " + what);
    auto state = QueryMigration(*qmp_);
    if (!state.ok()) return Died("QEMU failed loading " + what);
    if (state->status == "completed") break;
    if (state->status == "failed" || state->status == "cancelled") {
      return MakeError(ErrorCode::kUnavailable,
                       "loading " + what + ": migration " + state->status +
                           (state->error.empty() ? "" : ": " + state->error));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return MakeError(ErrorCode::kTimeout, "loading " + what + " took over " +
                                                std::to_string(timeout.count() / 1000) + " s");
    }
    std::this_thread::sleep_for(5ms);
  }
  // A VM saved stopped loads stopped (QEMU's global state); run it.
  BBX_ASSIGN_OR_RETURN(std::string run_state, qmp_->Call("query-status", "", 5s));
  if (StatusOf(run_state) != "running") BBX_RETURN_IF_ERROR(qmp_->Execute("cont", 5s));
  return Status::Ok();
}

Status QemuVm::RestoreClone(const QemuConfig&, Spawner&, const std::string& template_state,
                            const std::string&, bool) {
  BBX_RETURN_IF_ERROR(
      qmp_->Call("migrate-set-capabilities",
                 R"({"capabilities":[{"capability":"x-ignore-shared","state":true}]})", 5s));
  return LoadIncoming("exec:cat " + template_state, "the template's state", 60s);
}

Result<std::unique_ptr<QemuVm>> QemuVm::LaunchClone(
    const pluginapi::VmSpec& spec, const QemuConfig& config, Spawner& spawner,
    const AcceleratorChoice& choice, const std::function<void(const std::string&)>& log) {
  auto say = [&](const std::string& line) {
    if (log) log(line);
  };
  for (int attempt = 0;; ++attempt) {
    BBX_ASSIGN_OR_RETURN(TemplateLease lease,
                         EnsureTemplate(spec, config, choice.accelerator, spawner,
                                        config.template_boot_timeout, say));
    auto vm = std::unique_ptr<QemuVm>(new QemuVm());
    vm->spec_ = spec;
    BBX_ASSIGN_OR_RETURN(vm->plan_, PlanLaunch(spec));
    LaunchPlan& plan = vm->plan_;
    plan.accelerator = choice.accelerator;
    plan.accelerator_reason = choice.why + "; restored from VM template " + lease.files.dir;
    plan.restored_from_template = true;
    plan.kvm_broken = choice.kvm_broken;
    if (choice.accelerator == "kvm") plan.kvm_verdict_path = choice.verdict_path;
    // A TAP in another network namespace is opened there and handed to QEMU over QMP.
    BBX_ASSIGN_OR_RETURN(std::vector<UniqueFd> tap_fds, OpenNetnsTaps(spec, &plan));
    // Checked before anything starts.
    BBX_ASSIGN_OR_RETURN(auto hotplug, HotplugCommands(spec, plan));
    vm->vcpus_ = std::max<uint32_t>(spec.vcpus(), 1);
    vm->memory_mib_ = spec.memory_mib() == 0 ? 512 : spec.memory_mib();

    size_t share = 0;
    bool has_shares = false;
    for (const auto& device : spec.devices()) {
      if (!device.has_share()) continue;
      has_shares = true;
      auto pid = plugins::StartVirtiofsd(spawner, config.virtiofsd, device.share(),
                                         plan.virtiofsd_sockets[share++], plan.virtiofsd_log, 10s);
      if (!pid.ok()) return pid.error().Wrap("config key virtiofsd");
      vm->virtiofsd_pids_.push_back(*pid);
      vm->virtiofsd_start_times_.push_back(plugins::ProcessStartTime(*pid));
    }
    // virtiofsd maps guest memory: it must be shared, so such a clone gets its own copy.
    std::string memory_path = lease.files.memory;
    if (has_shares) {
      plan.private_memory_file = spec.run_dir() + "/memory";
      ::unlink(plan.private_memory_file.c_str());
      BBX_RETURN_IF_ERROR(CopySparse(lease.files.memory, plan.private_memory_file));
      memory_path = plan.private_memory_file;
    }
    plan.accelerator_reason += has_shares ? " (guest memory: a private copy, for virtio-fs)"
                                          : " (guest memory: copy-on-write from the template)";
    BBX_RETURN_IF_ERROR(plugins::WriteAgentTokenFile(plan.agent_token_file, spec.agent_token()));
    BBX_ASSIGN_OR_RETURN(auto console_log,
                         CappedLog::Open(spec.console_log_path(), config.console_log_max_bytes));
    BBX_ASSIGN_OR_RETURN(vm->console_,
                         ConsolePump::Start(plan.console_fifo, std::move(console_log)));
    BBX_ASSIGN_OR_RETURN(auto argv,
                         TemplateMachineCommand(spec, config, plan, memory_path, has_shares));
    argv.insert(argv.end(), {"-incoming", "defer"});
    plugins::SpawnOptions qemu_output;
    qemu_output.log_path = plan.qemu_log;
    BBX_ASSIGN_OR_RETURN(vm->qemu_pid_, spawner.Spawn(argv, qemu_output));
    vm->qemu_start_time_ = plugins::ProcessStartTime(vm->qemu_pid_);
    if (!plugins::WaitForPath(plan.qmp_socket, vm->qemu_pid_, 30s)) {
      return vm->Died("QEMU did not start");
    }
    auto qmp = QmpClient::Connect(plan.qmp_socket, 10s);
    if (!qmp.ok()) return vm->Died("QEMU's QMP did not answer (" + qmp.error().message + ")");
    vm->qmp_.emplace(std::move(qmp).value());
    // QEMU has the token and its memory mapped: neither need stay on disk.
    ::unlink(plan.agent_token_file.c_str());
    if (!plan.private_memory_file.empty()) ::unlink(plan.private_memory_file.c_str());
    Status restored = vm->RestoreClone(config, spawner, lease.files.state, memory_path, has_shares);
    if (!restored.ok()) {
      if (attempt == 0) {
        // The template passed its checks but QEMU could not load it: rebuild once.
        InvalidateTemplate(lease.files);
        say("VM template " + lease.files.dir + " did not restore (" +
            SanitizeLine(restored.error().message, 240) + "); rebuilding it");
        continue;  // `vm` ends its QEMU and virtiofsds
      }
      return restored.error().Wrap("restoring VM template " + lease.files.dir);
    }
    lease.lock.Reset();  // state loaded: a rebuild may replace the files now
    vm->template_in_use_ = std::move(lease.in_use);  // unused templates are removed
    for (const HotplugCommand& step : hotplug) {
      auto added = vm->qmp_->CallWithFd(step.command, step.arguments, step.fd, 10s);
      if (!added.ok()) return added.error().Wrap("hot-adding a device to the clone");
    }
    return vm;
  }
}

}  // namespace beaconbox::qemu
