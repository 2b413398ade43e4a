// Sandbox and Container against the fakes (fake_backends.h): no VM, milliseconds.
#include "host/shim/sandbox.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "common/base/file_util.h"
#include "tests/shim/fake_backends.h"

namespace beaconbox::shim {
namespace {

namespace fs = std::filesystem;
using testing::FakeGuestAgent;
using testing::FakeNetwork;
using testing::FakeStorage;
using testing::FakeVmm;
using testing::RecordingEvents;

constexpr char kSpec[] = R"({"ociVersion":"1.0.2","root":{"path":"rootfs"},
  "process":{"args":["/bin/true"],"cwd":"/"},
  "annotations":{"example":"yes"}})";

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::MakeTestDir("bbx-sandbox-test");
    ASSERT_FALSE(root_.empty());
    fs::create_directories(root_ + "/run");
    fs::create_directories(root_ + "/log");
  }
  void TearDown() override {
    sandboxes_.clear();
    fs::remove_all(root_);
  }

  std::string MakeBundle(const std::string& id) {
    std::string bundle = root_ + "/bundles/" + id;
    fs::create_directories(bundle + "/rootfs");
    std::ofstream(bundle + "/config.json") << kSpec;
    return bundle;
  }

  SandboxBackends Backends(bool with_network) {
    SandboxBackends backends;
    backends.vmm = &vmm_;
    backends.storage = &storage_;
    backends.network = with_network ? &network_ : nullptr;
    backends.vm.kernel_path = "/fake/kernel";
    backends.vm.initrd_path = "/fake/initrd";
    backends.vm.guest_connect_timeout = std::chrono::milliseconds(2000);
    return backends;
  }

  Sandbox& NewSandbox(const ContainerKey& key, bool with_network = false,
                      AfterStepHook hook = nullptr) {
    sandboxes_.push_back(std::make_unique<Sandbox>(
        Backends(with_network), Status::Ok(), RuntimeLayout(root_ + "/run", root_ + "/log"),
        events_, SandboxOptions{key, MakeBundle(key.id), std::move(hook)}));
    return *sandboxes_.back();
  }

  task::CreateTaskRequest CreateRequest(const ContainerKey& key) {
    task::CreateTaskRequest request;
    request.set_id(key.id);
    request.set_bundle(root_ + "/bundles/" + key.id);
    if (!fs::exists(request.bundle())) MakeBundle(key.id);
    auto* mount = request.add_rootfs();
    mount->set_type("overlay");
    mount->set_source("overlay");
    mount->add_options("lowerdir=/a");
    return request;
  }

  // Nothing any backend holds, no VM directory, no state file.
  void ExpectNothingLeft(const Sandbox& sandbox) {
    EXPECT_TRUE(storage_.prepared().empty());
    EXPECT_TRUE(network_.attached().empty());
    EXPECT_EQ(vmm_.live_vms(), 0);
    EXPECT_FALSE(fs::exists(sandbox.state_path()));
    EXPECT_TRUE(!fs::exists(root_ + "/run/vm") || fs::is_empty(root_ + "/run/vm"));
  }

  std::string root_;
  FakeGuestAgent agent_;
  FakeVmm vmm_{agent_};
  FakeStorage storage_;
  FakeNetwork network_;
  RecordingEvents events_;
  std::vector<std::unique_ptr<Sandbox>> sandboxes_;
};

const ContainerKey kC1{"default", "c1"};

TEST_F(SandboxTest, LifecycleReleasesEverythingAndPublishesEveryEvent) {
  Sandbox& sandbox = NewSandbox(kC1, /*with_network=*/true);
  auto container = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(container.ok()) << container.error().message;
  EXPECT_EQ(storage_.prepared().count(kC1), 1u);
  EXPECT_EQ(network_.attached().count(kC1), 1u);
  ASSERT_TRUE(agent_.network().has_value());
  EXPECT_EQ(agent_.network()->interfaces(0).addresses(0), "10.88.0.2/16");

  // The state file names what is held, step by step.
  auto record = LoadRecord(sandbox.state_path());
  ASSERT_TRUE(record.ok()) << record.error().message;
  EXPECT_EQ(record->network, Step::kDone);
  EXPECT_EQ(record->vm, Step::kDone);
  ASSERT_EQ(record->containers.size(), 1u);
  EXPECT_EQ(record->containers[0].rootfs, Step::kDone);
  EXPECT_EQ(record->vm_dir, root_ + "/run/vm/default--c1");
  EXPECT_TRUE(fs::is_directory(record->vm_dir));
  ASSERT_EQ(vmm_.specs.size(), 1u);
  EXPECT_EQ(vmm_.specs[0].console_log_path(), root_ + "/log/vm-default--c1.log");

  auto pid = (*container)->Start("");
  ASSERT_TRUE(pid.ok()) << pid.error().message;
  ASSERT_TRUE((*container)->Kill("", SIGKILL, false).ok());
  auto exit = (*container)->Wait("");
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_status, 137u);
  auto deleted = sandbox.DeleteContainer(kC1);
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(deleted->exit_status, 137u);
  ExpectNothingLeft(sandbox);
  EXPECT_EQ(events_.topics(), (std::vector<std::string>{"/tasks/create", "/tasks/start",
                                                        "/tasks/exit", "/tasks/delete"}));
  EXPECT_FALSE(sandbox.Find(kC1).ok());
}

TEST_F(SandboxTest, KillingACreatedTaskReports137AndWaitReturns) {
  Sandbox& sandbox = NewSandbox(kC1);
  auto container = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(container.ok()) << container.error().message;
  ASSERT_TRUE((*container)->Kill("", SIGKILL, false).ok());
  auto exit = (*container)->Wait("");
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_status, 137u);
  auto state = (*container)->State("");
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->state, ProcessState::kStopped);
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  ExpectNothingLeft(sandbox);
}

TEST_F(SandboxTest, CallsAreCheckedAgainstTheProcessStateAsRuncDoes) {
  Sandbox& sandbox = NewSandbox(kC1);
  auto created = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(created.ok());
  Container& container = **created;
  auto code = [](const Status& status) { return status.ok() ? ErrorCode{} : status.error().code; };

  EXPECT_EQ(code(container.Pause()), ErrorCode::kFailedPrecondition);  // created
  ASSERT_TRUE(container.Start("").ok());
  auto again = container.Start("");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(again.error().message, "cannot start a running process");
  EXPECT_EQ(code(container.Resume()), ErrorCode::kFailedPrecondition);  // running
  auto running_delete = sandbox.DeleteContainer(kC1);
  ASSERT_FALSE(running_delete.ok());
  EXPECT_EQ(running_delete.error().message, "cannot delete a running process");

  ASSERT_TRUE(container.Pause().ok());
  EXPECT_EQ(vmm_.pauses(), 1);  // alone in its VM: the VM is paused
  task::ExecProcessRequest exec;
  exec.set_id(kC1.id);
  exec.set_exec_id("e1");
  exec.mutable_spec()->set_value(R"({"args":["/bin/sh"],"cwd":"/"})");
  Status exec_paused = container.Exec(exec);
  ASSERT_FALSE(exec_paused.ok());
  EXPECT_EQ(exec_paused.error().message, "cannot exec in a paused state");
  EXPECT_EQ(code(container.Pause()), ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(container.Resume().ok());

  ASSERT_TRUE(container.Exec(exec).ok());
  EXPECT_EQ(code(container.Exec(exec)), ErrorCode::kAlreadyExists);
  EXPECT_EQ(code(container.Kill("e1", SIGTERM, false)), ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(container.Start("e1").ok());
  ASSERT_TRUE(container.Kill("e1", SIGTERM, false).ok());
  EXPECT_EQ(container.Wait("e1")->exit_status, 128u + SIGTERM);
  EXPECT_EQ(code(container.Kill("e1", SIGTERM, false)), ErrorCode::kNotFound);
  ASSERT_TRUE(container.DeleteExec("e1").ok());
  auto deleted_exec = container.State("e1");
  ASSERT_FALSE(deleted_exec.ok());
  EXPECT_EQ(deleted_exec.error().code, ErrorCode::kNotFound);

  agent_.Exit(kC1.id, "", 3);
  EXPECT_EQ(container.Wait("")->exit_status, 3u);
  EXPECT_EQ(code(container.Pause()), ErrorCode::kFailedPrecondition);  // stopped
  EXPECT_EQ(code(container.Kill("", SIGKILL, false)), ErrorCode::kNotFound);
  EXPECT_EQ(code(container.Exec(exec)), ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  ExpectNothingLeft(sandbox);
  EXPECT_EQ(events_.topics(),
            (std::vector<std::string>{"/tasks/create", "/tasks/start", "/tasks/paused",
                                      "/tasks/resumed", "/tasks/exec-added", "/tasks/exec-started",
                                      "/tasks/exit", "/tasks/exit", "/tasks/delete"}));
}

TEST_F(SandboxTest, AFailedStepReleasesWhatTheEarlierOnesMade) {
  Sandbox& sandbox = NewSandbox(kC1, /*with_network=*/true);
  vmm_.fail_create = true;
  auto container = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_FALSE(container.ok());
  EXPECT_EQ(container.error().code, ErrorCode::kUnavailable);
  ExpectNothingLeft(sandbox);

  vmm_.fail_create = false;
  agent_.FailNext("Task.Create", ttrpc::Code::kInternal);
  container = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_FALSE(container.ok());
  ExpectNothingLeft(sandbox);

  // After failures, the same sandbox still creates.
  container = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(container.ok()) << container.error().message;
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  ExpectNothingLeft(sandbox);
}

TEST_F(SandboxTest, TheGuestUsesTheStoragePlansRootfsPath) {
  Sandbox& sandbox = NewSandbox(kC1);
  storage_.guest_rootfs = "layers/merged";
  ASSERT_TRUE(sandbox.CreateContainer(kC1, CreateRequest(kC1)).ok());
  auto bundle = agent_.last_bundle();
  ASSERT_TRUE(bundle.has_value());
  EXPECT_EQ(bundle->rootfs(), "layers/merged");
  EXPECT_NE(bundle->config_json().find(R"("path":"layers/merged")"), std::string::npos);
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());

  storage_.guest_rootfs = "../escape";
  auto refused = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  ExpectNothingLeft(sandbox);
}

TEST_F(SandboxTest, OneVmHoldsSeveralContainers) {
  Sandbox& sandbox = NewSandbox(kC1);
  const ContainerKey c2{"default", "c2"};
  ASSERT_TRUE(sandbox.CreateContainer(kC1, CreateRequest(kC1)).ok());
  auto second = sandbox.CreateContainer(c2, CreateRequest(c2));
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(vmm_.created(), 1);
  EXPECT_EQ(sandbox.CreateContainer(c2, CreateRequest(c2)).error().code, ErrorCode::kAlreadyExists);
  // Sharing the VM, a container is paused in the guest, not with the VM.
  ASSERT_TRUE((*second)->Start("").ok());
  ASSERT_TRUE((*second)->Pause().ok());
  EXPECT_EQ(vmm_.pauses(), 0);
  ASSERT_TRUE((*second)->Resume().ok());
  ASSERT_TRUE((*second)->Kill("", SIGKILL, false).ok());
  (void)(*second)->Wait("");

  ASSERT_TRUE(sandbox.DeleteContainer(c2).ok());
  EXPECT_EQ(vmm_.live_vms(), 1);
  EXPECT_EQ(storage_.prepared(), (std::set<ContainerKey>{kC1}));
  auto record = LoadRecord(sandbox.state_path());
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->containers.size(), 1u);
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  ExpectNothingLeft(sandbox);
}

TEST_F(SandboxTest, TheSameIdInTwoNamespacesSharesNothing) {
  const ContainerKey other{"other", "c1"};
  Sandbox& first = NewSandbox(kC1, true);
  ASSERT_TRUE(first.CreateContainer(kC1, CreateRequest(kC1)).ok());
  // A second shim (sandbox) for the same id in another namespace.
  RuntimeLayout layout(root_ + "/run", root_ + "/log");
  EXPECT_NE(*layout.VmDir(kC1), *layout.VmDir(other));
  EXPECT_NE(layout.ConsoleLogPath(kC1), layout.ConsoleLogPath(other));
  ASSERT_TRUE(network_.Attach(other, {}).ok());
  ASSERT_TRUE(first.DeleteContainer(kC1).ok());
  EXPECT_EQ(network_.attached(), (std::set<ContainerKey>{other}));
  ASSERT_TRUE(network_.Detach(other).ok());
}

// What the `delete` action does after the shim was killed at each step: it loads
// the state file as the step left it and tears down from it. Every step's record
// must name everything made so far.
TEST_F(SandboxTest, TheStateFileOfEveryStepLetsDeleteReleaseEverything) {
  std::vector<std::pair<std::string, std::string>> snapshots;  // step, state file
  std::string state_path;
  Sandbox& sandbox =
      NewSandbox(kC1, /*with_network=*/true,
                 [&](std::string_view step, const std::map<std::string, std::string>& annotations) {
                   EXPECT_EQ(annotations.at("example"), "yes");
                   snapshots.emplace_back(step, *ReadSmallFile(state_path));
                 });
  state_path = sandbox.state_path();
  ASSERT_TRUE(sandbox.CreateContainer(kC1, CreateRequest(kC1)).ok());
  std::vector<std::string> steps;
  for (const auto& [step, text] : snapshots) steps.push_back(step);
  EXPECT_EQ(steps, std::vector<std::string>(kCreateSteps.begin(), kCreateSteps.end()));

  for (const auto& [step, text] : snapshots) {
    auto record = ParseRecord(text);
    ASSERT_TRUE(record.ok()) << step;
    FakeStorage storage;
    FakeNetwork network;
    FakeGuestAgent agent;
    FakeVmm vmm(agent);
    ASSERT_TRUE(storage.Prepare(kC1, {}).ok());
    const bool attached = step != "rootfs-prepared";
    if (attached) {
      ASSERT_TRUE(network.Attach(kC1, {}).ok());
    }
    SandboxBackends backends{&vmm, &storage, &network, {}};
    std::string copy = root_ + "/state-copy.json";
    ASSERT_TRUE(WriteFileAtomic(copy, text).ok());
    TeardownFromRecord(*record, backends, RuntimeLayout(root_ + "/run", root_ + "/log"), nullptr,
                       copy);
    EXPECT_TRUE(storage.prepared().empty()) << step;
    EXPECT_TRUE(network.attached().empty()) << step;
    EXPECT_EQ(vmm.cleanups(), step == "rootfs-prepared" || step == "network-attached" ? 0 : 1)
        << step;
    EXPECT_FALSE(fs::exists(copy)) << step;
  }
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  ExpectNothingLeft(sandbox);
}

// Teardown (SIGTERM, Shutdown) while calls are in flight on other threads: every call
// ends with an answer, nothing hangs, nothing is left.
TEST_F(SandboxTest, TeardownWhileCallsAreInFlight) {
  Sandbox& sandbox = NewSandbox(kC1, /*with_network=*/true);
  auto container = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(container.ok());
  ASSERT_TRUE((*container)->Start("").ok());
  std::atomic<bool> stop{false};
  std::vector<std::thread> callers;
  for (int i = 0; i < 4; ++i) {
    callers.emplace_back([&, i] {
      while (!stop) {
        switch (i) {
          case 0:
            (void)(*container)->State("");
            break;
          case 1:
            (void)(*container)->Pids();
            break;
          case 2:
            (void)(*container)->Pause();
            (void)(*container)->Resume();
            break;
          case 3:
            (void)sandbox.Find(kC1);
            break;
        }
      }
    });
  }
  std::thread waiter([&] { (void)(*container)->Wait(""); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  sandbox.Teardown();
  waiter.join();  // the guest went away: the process is reported gone
  stop = true;
  for (auto& caller : callers) caller.join();
  EXPECT_EQ((*container)->State("")->state, ProcessState::kStopped);
  ExpectNothingLeft(sandbox);
}

TEST_F(SandboxTest, PluginLoadFailureIsCreatesError) {
  Sandbox sandbox(SandboxBackends{}, MakeError(ErrorCode::kNotFound, "no plugin qemu"),
                  RuntimeLayout(root_ + "/run", root_ + "/log"), events_,
                  SandboxOptions{kC1, MakeBundle("c1"), nullptr});
  auto container = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_FALSE(container.ok());
  EXPECT_EQ(container.error().message, "no plugin qemu");
}

}  // namespace
}  // namespace beaconbox::shim
