// beaconbox-vmm-conformance: drives one VMM plugin .so through the plugin ABI the way
// the shim does (plugin host loader, the host's agent channel plan, the shim's guest
// client) and checks what every VMM plugin must do: capabilities and check, a VM with
// the real guest image, the sealed agent channel, pause/resume and resize when the
// plugin lists them, stop and destroy leaving nothing behind (processes by pid, run
// dir, sockets), and bad input answered with an error, not a crash. Shipped with the
// plugin ABI (plugin-abi/README.md "Testing a VMM plugin") so that an out-of-tree VMM
// author runs the same suite as the in-tree plugins.
//
// One line per case: "PASS <case>", "FAIL <case>: <why>", "SKIP <case>: <why>".
// Exit 0 when nothing failed, 1 when a case failed, 2 on a usage or setup error.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "beaconbox/guest/v1/guest.pb.h"
#include "common/base/agent_token.h"
#include "common/ttrpc/ttrpc.h"
#include "host/config/config.h"
#include "host/plugin_host/plugin_host.h"
#include "host/plugin_host/plugin_loader.h"
#include "host/plugin_host/vm_resources.h"
#include "host/shim/guest_client.h"

namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
namespace guestapi = ::beaconbox::guest::v1;
using beaconbox::ErrorCode;
using beaconbox::Result;
using beaconbox::Status;
using beaconbox::UniqueFd;
using beaconbox::plugin_host::LoadedPlugin;
using namespace std::chrono_literals;

constexpr uint32_t kGuestProtocolVersion = 1;  // host/shim/sandbox.cc

constexpr char kUsage[] =
    "usage: beaconbox-vmm-conformance --plugin PATH [--config FILE] [--kernel K --initrd I]\n"
    "                                 [--timeout-s N] [--skip CASE]... [--keep]\n"
    "  --plugin PATH   the VMM plugin .so to test\n"
    "  --config FILE   the plugin's config keys as TOML (what goes under\n"
    "                  [plugins.vmm.<name>.config]); environment overrides apply\n"
    "  --kernel K      guest kernel (default: the one beaconbox-ctl would use)\n"
    "  --initrd I      guest initrd (default: likewise)\n"
    "  --timeout-s N   how long the guest agent may take to answer (default 300)\n"
    "  --skip CASE     report CASE as skipped (e.g. resize), with this reason shown\n"
    "  --keep          keep the work directory (printed) for a look after a failure\n";

struct Options {
  std::string plugin;
  std::string config_file;
  std::string kernel;
  std::string initrd;
  std::chrono::seconds timeout{300};
  std::set<std::string> skip;
  bool keep = false;
};

class Report {
 public:
  void Pass(const std::string& name, const std::string& detail = "") {
    std::cout << "PASS " << name << (detail.empty() ? "" : ": " + detail) << std::endl;
  }
  void Fail(const std::string& name, const std::string& why) {
    ++failed_;
    std::cout << "FAIL " << name << ": " << why << std::endl;
  }
  void Skip(const std::string& name, const std::string& why) {
    std::cout << "SKIP " << name << ": " << why << std::endl;
  }
  // Prints and returns whether `status` is ok.
  bool Expect(const std::string& name, const Status& status, const std::string& detail = "") {
    if (status.ok()) {
      Pass(name, detail);
      return true;
    }
    Fail(name, status.error().message);
    return false;
  }
  int failed() const { return failed_; }

 private:
  int failed_ = 0;
};

bool ProcessGone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  // A zombie is still there: whoever forked it has not reaped it.
  return false;
}

std::vector<std::string> Entries(const fs::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(dir, ec)) {
    found.push_back(entry.path().lexically_relative(dir).string());
  }
  return found;
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The single-line error a plugin must give for bad input.
Status ExpectOneLineError(const Status& status, const std::string& what) {
  if (status.ok()) {
    return beaconbox::MakeError(ErrorCode::kFailedPrecondition, what + " was accepted");
  }
  if (status.error().message.find('\n') != std::string::npos) {
    return beaconbox::MakeError(ErrorCode::kFailedPrecondition,
                                "the error is more than one line: " + status.error().message);
  }
  return Status::Ok();
}

class Suite {
 public:
  Suite(Options options, fs::path work) : options_(std::move(options)), work_(std::move(work)) {
    paths_.state_dir = work_ / "state";
    paths_.run_dir = work_ / "run";
    paths_.log_dir = work_ / "log";
    for (const auto& dir : {paths_.state_dir, paths_.run_dir, paths_.log_dir}) {
      fs::create_directories(dir);
    }
  }

  int Run() {
    if (!Load()) return 1;
    BadConfig();
    if (!Configure()) return 1;
    CheckReport();
    if (!Capabilities()) return 1;
    BadSpecs();
    Lifecycle();
    plugin_.reset();
    report_.Pass("fini");
    return report_.failed() == 0 ? 0 : 1;
  }

 private:
  bool Load() {
    auto loaded = LoadedPlugin::Open(options_.plugin, "vmm", "", "plugin " + options_.plugin);
    if (!loaded.ok()) {
      report_.Fail("load", loaded.error().message);
      return false;
    }
    plugin_ = std::move(loaded).value();
    const auto& info = plugin_->info();
    report_.Pass("load", "vmm plugin " + info.name + " " + info.version + ", ABI " +
                             std::to_string(info.abi_version));
    return true;
  }

  // Bad configuration: a table that is not TOML straight into init (the plugin must
  // refuse it); unknown keys and wrong types through the host's path (refused before
  // init); wrong types straight into init (the ABI lets init rely on the host's type
  // check, so either answer passes, but not a crash).
  void BadConfig() {
    std::string wrong;
    for (const auto& key : plugin_->info().config_keys) {
      // A string where an integer or a boolean goes, an integer where a string goes.
      wrong +=
          key.name + (key.type == beaconbox::config::ValueType::kString ? " = -1\n" : " = \"x\"\n");
    }
    struct Case {
      std::string name;
      std::string table;
      bool through_host;
      bool must_refuse;
    };
    std::vector<Case> cases = {
        {"bad-config/not-toml", "this is = = not toml [", false, true},
        {"bad-config/unknown-key", "no_such_key_in_any_plugin = 1\n", true, true},
    };
    if (!wrong.empty()) {
      cases.push_back({"bad-config/wrong-types", wrong, true, true});
      cases.push_back({"bad-config/wrong-types-into-init", wrong, false, false});
    }
    for (const auto& c : cases) {
      auto other = LoadedPlugin::Open(options_.plugin, "vmm", "", "plugin " + options_.plugin);
      if (!other.ok()) {
        report_.Fail(c.name, other.error().message);
        continue;
      }
      Status status;
      if (c.through_host) {
        auto decl = DeclFor(c.table, (work_ / "bad-config.toml").string());
        status = decl.ok() ? (*other)->Configure(*decl, paths_) : Status(decl.error());
      } else {
        status = (*other)->Init(c.table, paths_);
      }
      if (!c.must_refuse && status.ok()) {
        report_.Pass(c.name, "accepted (init may rely on the host's type check)");
        continue;
      }
      Status verdict = ExpectOneLineError(status, c.name);
      report_.Expect(c.name, verdict, verdict.ok() ? status.error().message : "");
    }
  }

  // The plugin's declaration as the host reads it from a config file whose
  // [plugins.vmm.<name>.config] table is `table`.
  Result<beaconbox::config::PluginDecl> DeclFor(const std::string& table,
                                                const std::string& source) {
    const std::string name = plugin_->info().name;
    std::string text = "[vm]\nvmm = \"" + name + "\"\n[plugins.vmm.\"" + name + "\"]\npath = \"" +
                       options_.plugin + "\"\n[plugins.vmm.\"" + name + "\".config]\n" + table;
    BBX_ASSIGN_OR_RETURN(auto parsed, beaconbox::config::ParseConfig(text, source));
    for (auto& decl : parsed.plugins) {
      if (decl.kind == "vmm" && decl.name == name) return decl;
    }
    return beaconbox::MakeError(ErrorCode::kInternal, "the generated config lost the plugin");
  }

  bool Configure() {
    std::string table;
    if (!options_.config_file.empty()) {
      std::ifstream in(options_.config_file);
      if (!in) {
        report_.Fail("configure", "cannot read --config " + options_.config_file);
        return false;
      }
      table = ReadFile(options_.config_file);
    }
    // The host's own parser, schema check and environment overrides.
    auto decl =
        DeclFor(table, options_.config_file.empty() ? (work_ / "config.toml").string()
                                                    : fs::absolute(options_.config_file).string());
    if (!decl.ok()) {
      report_.Fail("configure", decl.error().message);
      return false;
    }
    return report_.Expect("configure", plugin_->Configure(*decl, paths_));
  }

  void CheckReport() {
    if (!plugin_->Has("check")) {
      report_.Skip("check", "the plugin has no check hook (optional)");
      return;
    }
    auto check = plugin_->Check();
    if (!check.ok()) {
      report_.Fail("check", check.error().message);
      return;
    }
    for (const auto& line : check->lines()) {
      std::cout << "  check: " << pluginapi::CheckLevel_Name(line.level()) << " " << line.what()
                << ": " << line.detail() << std::endl;
      if (line.what().empty() || line.detail().find('\n') != std::string::npos) {
        report_.Fail("check", "a check line without a name or with more than one line");
        return;
      }
    }
    report_.Pass("check", std::to_string(check->lines_size()) + " lines");
  }

  bool Capabilities() {
    auto capabilities = plugin_->Capabilities();
    if (!capabilities.ok()) {
      report_.Fail("capabilities", capabilities.error().message);
      return false;
    }
    capabilities_ = *capabilities;
    std::string channels;
    for (int kind : capabilities_.agent_channels()) {
      channels += (channels.empty() ? "" : ",") +
                  pluginapi::AgentChannelKind_Name(static_cast<pluginapi::AgentChannelKind>(kind));
    }
    std::ostringstream detail;
    detail << "pause=" << capabilities_.pause() << " resize_vcpus=" << capabilities_.resize_vcpus()
           << " resize_memory=" << capabilities_.resize_memory()
           << " agent_token=" << capabilities_.agent_token() << " channels=" << channels;
    if (!capabilities_.agent_token()) {
      report_.Fail("capabilities", detail.str() +
                                       ": agent_token is false, so the host never starts its VMs "
                                       "(plugin-abi/README.md rule 11)");
      return false;
    }
    report_.Pass("capabilities", detail.str());
    return true;
  }

  // A VmSpec completed as the shim completes it (host/shim/plugin_backends.cc).
  Result<pluginapi::VmSpec> SpecFor(const std::string& id, beaconbox::plugin_host::GuestCid* cid,
                                    std::string* token) {
    pluginapi::VmSpec spec;
    spec.set_id(id);
    spec.set_namespace_("conformance");
    spec.set_kernel_path(options_.kernel);
    spec.set_initrd_path(options_.initrd);
    spec.set_vcpus(1);
    spec.set_max_vcpus(2);
    spec.set_memory_mib(256);
    spec.set_max_memory_mib(512);
    spec.set_owner_pid(::getpid());
    const fs::path run_dir = fs::path(paths_.run_dir) / id;
    fs::create_directories(run_dir);
    spec.set_run_dir(run_dir);
    spec.set_console_log_path(fs::path(paths_.log_dir) / ("vm-" + id + ".log"));
    // A read-only share, so that the plugin's virtio-fs daemon is started and ended too.
    fs::create_directories(work_ / "share");
    auto* share = spec.add_devices()->mutable_share();
    share->set_tag("conformance");
    share->set_host_path(work_ / "share");
    share->set_read_only(true);
    BBX_ASSIGN_OR_RETURN(auto plan, beaconbox::plugin_host::PlanAgentChannel(
                                        capabilities_, beaconbox::plugin_host::HostHasVsock(),
                                        CidLockDir(), run_dir));
    *spec.mutable_agent_channel() = plan.channel;
    spec.set_agent_token(plan.token);
    for (const auto& arg : beaconbox::plugin_host::GuestKernelArgs(plan.channel, spec.memory_mib(),
                                                                   spec.max_memory_mib())) {
      spec.add_guest_kernel_args(arg);
    }
    BBX_RETURN_IF_ERROR(beaconbox::plugin_host::AssignShareSockets(spec, run_dir));
    *token = plan.token;
    *cid = std::move(plan.guest_cid);
    return spec;
  }

  // Guest CIDs are unique on the host only if every VM reserves them in one place: the
  // shims' run dir (/run/beacon by default), else (not creatable) the work dir.
  std::string CidLockDir() const {
    const std::string shared = beaconbox::config::Paths{}.run_dir;
    std::error_code ec;
    fs::create_directories(shared, ec);
    return ::access(shared.c_str(), W_OK) == 0 ? shared : paths_.run_dir;
  }

  // Each refused VmSpec must leave its run dir as it found it.
  void BadSpecs() {
    struct Bad {
      std::string name;
      std::function<void(pluginapi::VmSpec&)> spoil;
    };
    const std::vector<Bad> cases = {
        {"bad-spec/missing-kernel",
         [&](pluginapi::VmSpec& s) { s.set_kernel_path(work_ / "no-such-vmlinux"); }},
        {"bad-spec/missing-initrd",
         [&](pluginapi::VmSpec& s) { s.set_initrd_path(work_ / "no-such-initrd"); }},
        {"bad-spec/no-agent-token", [](pluginapi::VmSpec& s) { s.clear_agent_token(); }},
        {"bad-spec/malformed-agent-token",
         [](pluginapi::VmSpec& s) { s.set_agent_token("not-hex token"); }},
    };
    beaconbox::plugin_host::VmmPlugin vmm(plugin_);
    int n = 0;
    for (const auto& bad : cases) {
      beaconbox::plugin_host::GuestCid cid;
      std::string token;
      auto spec = SpecFor("bad" + std::to_string(n++), &cid, &token);
      if (!spec.ok()) {
        report_.Fail(bad.name, spec.error().message);
        continue;
      }
      bad.spoil(*spec);
      Status status;
      {
        auto vm = vmm.CreateVm(*spec, std::move(cid.lock));  // a VM it made is destroyed here
        if (!vm.ok()) status = vm.error();
      }
      Status verdict = ExpectOneLineError(status, "vm_create with " + bad.name);
      if (verdict.ok()) {
        if (auto left = Entries(spec->run_dir()); !left.empty()) {
          verdict = beaconbox::MakeError(ErrorCode::kFailedPrecondition,
                                         "refused, but left in its run dir: " + Join(left));
        }
      }
      report_.Expect(bad.name, verdict, verdict.ok() ? status.error().message : "");
    }
  }

  // The whole life of one VM with the real guest.
  void Lifecycle() {
    beaconbox::plugin_host::VmmPlugin vmm(plugin_);
    beaconbox::plugin_host::GuestCid cid;
    std::string token;
    auto spec = SpecFor("vm1", &cid, &token);
    if (!spec.ok()) {
      report_.Fail("create", spec.error().message);
      return;
    }
    const auto started = std::chrono::steady_clock::now();
    auto created = vmm.CreateVm(*spec, std::move(cid.lock));
    if (!created.ok()) {
      report_.Fail("create", created.error().message);
      return;
    }
    std::unique_ptr<beaconbox::plugin_host::Vm> vm = std::move(created).value();
    report_.Pass("create");

    std::vector<pid_t> pids;
    auto info = vm->Info();
    if (!info.ok()) {
      report_.Fail("info", info.error().message);
    } else {
      for (int64_t pid : info->pids()) {
        if (pid > 0) pids.push_back(static_cast<pid_t>(pid));
      }
      if (info->vmm_pid() > 0) pids.push_back(static_cast<pid_t>(info->vmm_pid()));
      std::string dead;
      for (pid_t pid : pids) {
        if (::kill(pid, 0) != 0) dead += " " + std::to_string(pid);
      }
      if (pids.empty()) {
        report_.Fail("info",
                     "VmInfo names no process (vmm_pid, pids): the host cannot tell "
                     "whether the VM lives");
      } else if (!dead.empty()) {
        report_.Fail("info", "VmInfo names processes that do not run:" + dead);
      } else {
        report_.Pass("info", "vmm pid " + std::to_string(info->vmm_pid()) + ", " +
                                 std::to_string(pids.size()) + " processes, accelerator " +
                                 info->accelerator());
      }
    }

    std::unique_ptr<beaconbox::shim::GuestClient> guest = Agent(*vm, token, started);
    if (guest) {
      PauseResume(*vm, *guest);
      Resize(*vm, *guest);
    }

    guest.reset();
    report_.Expect("stop", vm->Stop(30s));
    vm.reset();
    NothingLeft(pids, *spec);
  }

  // Connects as the shim does; a call without the token must be refused, one with it
  // answered.
  std::unique_ptr<beaconbox::shim::GuestClient> Agent(beaconbox::plugin_host::Vm& vm,
                                                      const std::string& token,
                                                      std::chrono::steady_clock::time_point t0) {
    auto fd =
        vm.ConnectGuest(std::chrono::duration_cast<std::chrono::milliseconds>(options_.timeout));
    if (!fd.ok()) {
      report_.Fail("agent/connect", fd.error().message + "; console: " + vm.ConsoleTail(1024));
      return nullptr;
    }
    report_.Pass("agent/connect");
    guestapi::HelloRequest hello;
    hello.set_protocol_version(kGuestProtocolVersion);
    {
      // Without the token: the guest must refuse (it got a token, so the plugin
      // delivered one; the channel is sealed).
      beaconbox::ttrpc::Client unsealed(UniqueFd(::fcntl(fd->get(), F_DUPFD_CLOEXEC, 3)));
      std::string reply;
      beaconbox::ttrpc::CallOptions call;
      call.timeout = options_.timeout;
      auto status = unsealed.Call("beaconbox.guest.v1.Guest", "Hello", hello.SerializeAsString(),
                                  &reply, call);
      if (status.code == beaconbox::ttrpc::Code::kUnauthenticated) {
        report_.Pass("agent/sealed", "a call without the token is refused");
      } else if (status.ok()) {
        report_.Fail("agent/sealed",
                     "the guest answered a call without the agent token: it found no token "
                     "(did the plugin deliver VmSpec.agent_token by fw_cfg?)");
      } else {
        report_.Fail("agent/sealed", "a call without the token: " + status.message +
                                         "; console: " + vm.ConsoleTail(1024));
        return nullptr;
      }
    }
    auto guest = std::make_unique<beaconbox::shim::GuestClient>(std::move(fd).value(), token);
    guestapi::HelloResponse reply;
    Status status = guest->CallGuest("Hello", hello, &reply, options_.timeout);
    if (!status.ok()) {
      report_.Fail("agent/hello", status.error().message + "; console: " + vm.ConsoleTail(1024));
      return nullptr;
    }
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    report_.Pass("agent/hello", "agent " + reply.agent_version().substr(0, 64) + ", kernel " +
                                    reply.kernel_release().substr(0, 64) + ", " +
                                    std::to_string(ms) + " ms after create began");
    return guest;
  }

  Status Hello(beaconbox::shim::GuestClient& guest) {
    guestapi::HelloRequest hello;
    hello.set_protocol_version(kGuestProtocolVersion);
    guestapi::HelloResponse reply;
    return guest.CallGuest("Hello", hello, &reply, options_.timeout);
  }

  bool Skipped(const std::string& name) {
    if (options_.skip.count(name) == 0) return false;
    report_.Skip(name, "--skip " + name);
    return true;
  }

  void PauseResume(beaconbox::plugin_host::Vm& vm, beaconbox::shim::GuestClient& guest) {
    if (Skipped("pause")) return;
    if (!capabilities_.pause()) {
      // The host answers for a plugin without the hooks; one that has them but does
      // not list the capability is asked nothing.
      report_.Skip("pause", "Capabilities.pause is false");
      return;
    }
    if (!report_.Expect("pause", vm.Pause())) return;
    if (!report_.Expect("resume", vm.Resume())) return;
    report_.Expect("resume/agent", Hello(guest), "the agent answers after resume");
  }

  void Resize(beaconbox::plugin_host::Vm& vm, beaconbox::shim::GuestClient& guest) {
    if (Skipped("resize")) return;
    if (capabilities_.resize_vcpus()) {
      report_.Expect("resize/vcpus", vm.Resize(2, 0), "1 -> 2 vCPUs");
      Status beyond = vm.Resize(3, 0);
      report_.Expect("resize/vcpus-beyond-max",
                     ExpectOneLineError(beyond, "resize to 3 vCPUs with max_vcpus 2"));
    } else {
      report_.Skip("resize/vcpus", "Capabilities.resize_vcpus is false");
    }
    if (capabilities_.resize_memory()) {
      report_.Expect("resize/memory", vm.Resize(0, 384), "256 -> 384 MiB");
      Status beyond = vm.Resize(0, 4096);
      report_.Expect("resize/memory-beyond-max",
                     ExpectOneLineError(beyond, "resize to 4096 MiB with max_memory_mib 512"));
    } else {
      report_.Skip("resize/memory", "Capabilities.resize_memory is false");
    }
    if (capabilities_.resize_vcpus() || capabilities_.resize_memory()) {
      report_.Expect("resize/agent", Hello(guest), "the agent answers after resize");
    }
  }

  void NothingLeft(const std::vector<pid_t>& pids, const pluginapi::VmSpec& spec) {
    // vm_destroy returned: its processes must be gone (and reaped) within a little while.
    std::vector<std::string> alive;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    do {
      alive.clear();
      for (pid_t pid : pids) {
        if (!ProcessGone(pid)) alive.push_back(std::to_string(pid));
      }
      if (!alive.empty()) std::this_thread::sleep_for(100ms);
    } while (!alive.empty() && std::chrono::steady_clock::now() < deadline);
    if (alive.empty()) {
      report_.Pass("destroy/processes", std::to_string(pids.size()) + " processes gone");
    } else {
      report_.Fail("destroy/processes",
                   "still there (or not reaped) 10 s after vm_destroy: pids " + Join(alive));
    }
    auto left = Entries(spec.run_dir());
    if (left.empty()) {
      report_.Pass("destroy/run-dir", "the VM's run dir is empty (sockets included)");
    } else {
      report_.Fail("destroy/run-dir", "left in " + spec.run_dir() + ": " + Join(left));
    }
    // Whatever the plugin keeps under the host's state and run dirs must be for live
    // VMs only: nothing but the host's own directories and CID locks, and what a plugin
    // keeps across VMs on purpose in its cache directory (<state_dir>/<plugin>/cache/,
    // plugin_abi.h: state_dir), may stay. A directory counts as left only when nothing
    // that may stay is in it.
    std::vector<std::string> stray;
    for (const auto& root : {paths_.state_dir, paths_.run_dir}) {
      std::vector<std::string> kept_dirs;
      std::vector<std::string> left;
      for (const auto& entry : Entries(root)) {
        const fs::path path(entry);
        if (entry.rfind("vm1", 0) == 0 || entry.rfind("bad", 0) == 0) continue;  // the host's
        const bool in_plugin_cache = root == paths_.state_dir &&
                                     std::distance(path.begin(), path.end()) >= 2 &&
                                     *std::next(path.begin()) == "cache";
        if (path.filename().string().rfind("vsock-cid-", 0) == 0 || in_plugin_cache) {
          kept_dirs.push_back(path.parent_path().string());
          continue;
        }
        left.push_back(entry);
      }
      for (const auto& entry : left) {
        const bool holds_kept = std::any_of(
            kept_dirs.begin(), kept_dirs.end(),
            [&](const auto& dir) { return dir == entry || dir.rfind(entry + "/", 0) == 0; });
        if (!holds_kept) stray.push_back(fs::path(root).filename().string() + "/" + entry);
      }
    }
    if (stray.empty()) {
      report_.Pass("destroy/state", "nothing of the VM under state_dir or run_dir");
    } else {
      report_.Fail("destroy/state", "left: " + Join(stray));
    }
  }

  Options options_;
  fs::path work_;
  beaconbox::config::Paths paths_;
  std::shared_ptr<LoadedPlugin> plugin_;
  pluginapi::Capabilities capabilities_;
  Report report_;
};

int Usage(const std::string& problem) {
  std::cerr << "beaconbox-vmm-conformance: " << problem << "\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--keep") {
      options.keep = true;
    } else if (arg == "--plugin" || arg == "--config" || arg == "--kernel" || arg == "--initrd" ||
               arg == "--timeout-s" || arg == "--skip") {
      if ((v = value()) == nullptr) return Usage(arg + " needs a value");
      if (arg == "--plugin") options.plugin = v;
      if (arg == "--config") options.config_file = v;
      if (arg == "--kernel") options.kernel = v;
      if (arg == "--initrd") options.initrd = v;
      if (arg == "--skip") options.skip.insert(v);
      if (arg == "--timeout-s") {
        char* end = nullptr;
        long seconds = std::strtol(v, &end, 10);
        if (end == v || *end != '\0' || seconds < 1 || seconds > 3600) {
          return Usage("--timeout-s takes 1 to 3600 seconds, not " + std::string(v));
        }
        options.timeout = std::chrono::seconds(seconds);
      }
    } else {
      return Usage("unknown argument " + arg);
    }
  }
  if (options.plugin.empty()) return Usage("--plugin PATH is required");
  if (::access(options.plugin.c_str(), R_OK) != 0) {
    return Usage("--plugin " + options.plugin + " is not a readable file");
  }
  options.plugin = fs::absolute(options.plugin);
  beaconbox::config::Paths defaults;
  std::string origin;
  if (options.kernel.empty()) {
    options.kernel =
        beaconbox::config::FindGuestFile(beaconbox::config::GuestFile::kKernel, defaults, &origin);
  }
  if (options.initrd.empty()) {
    options.initrd =
        beaconbox::config::FindGuestFile(beaconbox::config::GuestFile::kInitrd, defaults, &origin);
  }
  for (const auto& [flag, path] :
       {std::pair{"--kernel", options.kernel}, {"--initrd", options.initrd}}) {
    if (::access(path.c_str(), R_OK) != 0) {
      return Usage(std::string("guest file ") + path + " is not readable: build the guest image " +
                   "(make) or install beaconbox-guest, or pass " + flag);
    }
  }
  options.kernel = fs::absolute(options.kernel);
  options.initrd = fs::absolute(options.initrd);
  ::signal(SIGPIPE, SIG_IGN);

  char dir_template[] = "/tmp/bbx-vmmconf-XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) return Usage("cannot create a work directory in /tmp");
  const fs::path work = dir_template;
  std::cout << "beaconbox-vmm-conformance: plugin " << options.plugin << ", kernel "
            << options.kernel << ", initrd " << options.initrd << ", work dir " << work.string()
            << std::endl;
  int rc = 0;
  {
    Suite suite(options, work);
    rc = suite.Run();
  }
  if (options.keep) {
    std::cout << "kept " << work.string() << std::endl;
  } else {
    std::error_code ec;
    fs::remove_all(work, ec);
  }
  std::cout << (rc == 0 ? "conformance: all cases passed" : "conformance: FAILED") << std::endl;
  return rc;
}
