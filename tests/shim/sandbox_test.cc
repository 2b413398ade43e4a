// Sandbox and Container against the fakes (fake_backends.h): no VM, milliseconds.
#include "host/shim/sandbox.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>

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
    backends.vm.guest_call_timeout = guest_call_timeout_;
    backends.vm.kill_timeout = kill_timeout_;
    if (seed_sizes_) {
      // Seed 001: 1 vCPU / 512 MiB default, 2 vCPUs / 2 GiB maximum, 128 MiB overhead.
      backends.vm.vcpus = 1;
      backends.vm.max_vcpus = 2;
      backends.vm.memory_mib = 512;
      backends.vm.max_memory_mib = 2048;
      backends.vm.guest_overhead_mib = 128;
    }
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

  // `key`'s bundle with a CRI pod container's spec: its annotations and resources.
  task::CreateTaskRequest PodRequest(const ContainerKey& key, const std::string& annotations,
                                     const std::string& linux_resources) {
    auto request = CreateRequest(key);
    std::ofstream(request.bundle() + "/config.json", std::ios::trunc)
        << R"({"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["/bin/true"]},)"
        << R"("annotations":)" << annotations << R"(,"linux":{"resources":)" << linux_resources
        << "}}";
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

  // Runs `call` on its own thread; true when it returned within `limit` (a bound
  // that only tells a hang from an answer, never a timing). On a hang the guest is
  // disconnected, which ends whatever waits on it, so the test fails instead of hanging.
  bool FinishesWithin(std::chrono::seconds limit, const std::function<void()>& call) {
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> finished = done->get_future();
    std::thread thread([&call, done] {
      call();
      done->set_value();
    });
    const bool in_time = finished.wait_for(limit) == std::future_status::ready;
    if (!in_time) agent_.Disconnect();
    thread.join();
    return in_time;
  }

  std::string root_;
  bool seed_sizes_ = false;
  std::chrono::milliseconds guest_call_timeout_{5000};
  std::chrono::milliseconds kill_timeout_{2000};
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

// Guest.Refresh (fresh random bytes and the host's clock) goes only to a VM the VMM
// restored from a template, right after Hello; a cold boot has its own pool and clock.
TEST_F(SandboxTest, RefreshesTheGuestOnlyWhenRestoredFromATemplate) {
  const ContainerKey cold{"default", "cold"};
  const ContainerKey clone{"default", "clone"};
  auto refreshes = [this] {
    auto calls = agent_.calls();
    return std::count(calls.begin(), calls.end(), "Guest.Refresh");
  };
  Sandbox& cold_sandbox = NewSandbox(cold);
  ASSERT_TRUE(cold_sandbox.CreateContainer(cold, CreateRequest(cold)).ok());
  EXPECT_EQ(refreshes(), 0);
  ASSERT_TRUE(cold_sandbox.DeleteContainer(cold).ok());

  vmm_.restored_from_template = true;
  Sandbox& clone_sandbox = NewSandbox(clone);
  ASSERT_TRUE(clone_sandbox.CreateContainer(clone, CreateRequest(clone)).ok());
  EXPECT_EQ(refreshes(), 1);
  auto calls = agent_.calls();
  auto hello = std::find(calls.rbegin(), calls.rend(), "Guest.Hello");
  ASSERT_NE(hello, calls.rend());
  ASSERT_NE(hello, calls.rbegin());
  EXPECT_EQ(*std::prev(hello), "Guest.Refresh") << "right after Hello";
  ASSERT_TRUE(clone_sandbox.DeleteContainer(clone).ok());
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

// runc's shim: resizing a process without a console succeeds and does nothing, in
// any state; a process with a terminal gets the resize in the guest.
TEST_F(SandboxTest, ResizePtyWithoutATerminalIsANoOp) {
  Sandbox& sandbox = NewSandbox(kC1);
  auto created = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(created.ok()) << created.error().message;
  Container& container = **created;
  auto resizes = [this] {
    auto calls = agent_.calls();
    return std::count(calls.begin(), calls.end(), "Task.ResizePty");
  };
  EXPECT_TRUE(container.ResizePty("", 100, 30).ok());  // created
  ASSERT_TRUE(container.Start("").ok());
  task::ExecProcessRequest exec;
  exec.set_id(kC1.id);
  exec.set_exec_id("e1");
  exec.mutable_spec()->set_value(R"({"args":["/bin/sh"],"cwd":"/"})");
  ASSERT_TRUE(container.Exec(exec).ok());
  EXPECT_TRUE(container.ResizePty("e1", 100, 30).ok());
  EXPECT_TRUE(container.ResizePty("", 100, 30).ok());
  EXPECT_EQ(resizes(), 0);
  exec.set_exec_id("t1");
  exec.set_terminal(true);
  ASSERT_TRUE(container.Exec(exec).ok());
  ASSERT_TRUE(container.Start("t1").ok());
  EXPECT_TRUE(container.ResizePty("t1", 100, 30).ok());
  EXPECT_EQ(resizes(), 1);
  EXPECT_EQ(container.ResizePty("nope", 100, 30).error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(container.Kill("", SIGKILL, false).ok());
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
  storage_.plan_devices = false;  // nothing to add to the running VM
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

// A pod's app container whose storage needs a share or disk added to the running VM
// is refused as not implemented, naming what it needs; it never gets the first
// container's rootfs, and the VM and first container stay as they were.
TEST_F(SandboxTest, AFurtherContainerNeedingStorageInTheRunningVmIsNotImplemented) {
  Sandbox& sandbox = NewSandbox(kC1);
  const ContainerKey c2{"default", "c2"};
  ASSERT_TRUE(sandbox.CreateContainer(kC1, CreateRequest(kC1)).ok());
  auto refused = sandbox.CreateContainer(c2, CreateRequest(c2));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kNotImplemented);
  EXPECT_NE(refused.error().message.find("virtio-fs share 'rootfs-c2'"), std::string::npos)
      << refused.error().message;
  EXPECT_NE(refused.error().message.find("not implemented"), std::string::npos);
  EXPECT_EQ(refused.error().message.find('\n'), std::string::npos);
  EXPECT_EQ(vmm_.created(), 1);
  EXPECT_EQ(vmm_.live_vms(), 1);
  EXPECT_EQ(storage_.prepared(), (std::set<ContainerKey>{kC1}));
  EXPECT_FALSE(sandbox.Find(c2).ok());
  auto record = LoadRecord(sandbox.state_path());
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->containers.size(), 1u);
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  ExpectNothingLeft(sandbox);
}

// A pod's app container whose plan names only the shares the VM booted with (same tag,
// host path and mode: storage-erofs' pod layer and volume shares) joins the running
// VM; one that also needs a disk of its own (an erofs scratch disk) is refused in one
// line naming the disk and that disks cannot be added (vm_add_device).
TEST_F(SandboxTest, AFurtherContainerOnTheVmsBootSharesJoinsButADiskIsRefused) {
  Sandbox& sandbox = NewSandbox(kC1);
  storage_.plan_devices = false;
  storage_.plan_vm_share = true;
  ASSERT_TRUE(sandbox.CreateContainer(kC1, CreateRequest(kC1)).ok());
  const ContainerKey c2{"default", "c2"};
  auto joined = sandbox.CreateContainer(c2, CreateRequest(c2));
  ASSERT_TRUE(joined.ok()) << joined.error().message;
  EXPECT_EQ(vmm_.created(), 1);

  const ContainerKey c3{"default", "c3"};
  storage_.plan_disk = true;
  auto refused = sandbox.CreateContainer(c3, CreateRequest(c3));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kNotImplemented);
  const std::string& message = refused.error().message;
  EXPECT_NE(message.find("disk 'scratch-c3'"), std::string::npos) << message;
  EXPECT_EQ(message.find("share 'volumes'"), std::string::npos) << "the VM has it: " << message;
  EXPECT_NE(message.find("vm_add_device"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_EQ(storage_.prepared(), (std::set<ContainerKey>{kC1, c2}));
  EXPECT_EQ(vmm_.live_vms(), 1);
  ASSERT_TRUE(sandbox.DeleteContainer(c2).ok());
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  ExpectNothingLeft(sandbox);
}

// A pod's app container names the sandbox's IPC and UTS namespaces by the sandbox
// task's pid (the VMM's); the guest gets the sandbox container's init in the guest.
TEST_F(SandboxTest, AnAppContainerJoinsTheSandboxContainersNamespacesInTheGuest) {
  Sandbox& sandbox = NewSandbox(kC1);
  agent_.AnswerPid(77);
  ASSERT_TRUE(sandbox.CreateContainer(kC1, CreateRequest(kC1)).ok());
  const ContainerKey c2{"default", "c2"};
  auto request = CreateRequest(c2);
  std::ofstream(request.bundle() + "/config.json", std::ios::trunc)
      << R"({"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["/bin/true"]},
            "linux":{"namespaces":[{"type":"ipc","path":"/proc/424242/ns/ipc"},
                                   {"type":"uts","path":"/proc/424242/ns/uts"},
                                   {"type":"mount"}]}})";
  storage_.plan_devices = false;
  ASSERT_TRUE(sandbox.CreateContainer(c2, request).ok());
  auto bundle = agent_.last_bundle();
  ASSERT_TRUE(bundle.has_value());
  const std::string config = bundle->config_json();
  EXPECT_NE(config.find(R"("path":"/proc/77/ns/ipc")"), std::string::npos) << config;
  EXPECT_NE(config.find(R"("path":"/proc/77/ns/uts")"), std::string::npos) << config;
  EXPECT_EQ(config.find("424242"), std::string::npos) << config;

  // A host namespace of anything else is refused, naming it.
  const ContainerKey c3{"default", "c3"};
  auto other = CreateRequest(c3);
  std::ofstream(other.bundle() + "/config.json", std::ios::trunc)
      << R"({"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["/bin/true"]},
            "linux":{"namespaces":[{"type":"ipc","path":"/proc/1/ns/ipc"}]}})";
  auto refused = sandbox.CreateContainer(c3, other);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kNotImplemented);
  EXPECT_NE(refused.error().message.find("/proc/1/ns/ipc"), std::string::npos);
  ASSERT_TRUE(sandbox.DeleteContainer(c2).ok());
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  ExpectNothingLeft(sandbox);
}

// A pod's shim killed with two containers in its VM: the `delete` action of the
// sandbox container tears down from the one state file, every container's rootfs
// with the VM and the network.
TEST_F(SandboxTest, TheStateFileOfAPodLetsDeleteReleaseEveryContainer) {
  Sandbox& sandbox = NewSandbox(kC1, /*with_network=*/true);
  const ContainerKey c2{"default", "c2"};
  ASSERT_TRUE(sandbox.CreateContainer(kC1, CreateRequest(kC1)).ok());
  storage_.plan_devices = false;
  ASSERT_TRUE(sandbox.CreateContainer(c2, CreateRequest(c2)).ok());
  auto text = ReadSmallFile(sandbox.state_path());
  ASSERT_TRUE(text.ok());
  auto record = ParseRecord(*text);
  ASSERT_TRUE(record.ok());
  ASSERT_EQ(record->containers.size(), 2u);
  EXPECT_EQ(record->sandbox, kC1);

  FakeStorage storage;
  FakeNetwork network;
  FakeGuestAgent agent;
  FakeVmm vmm(agent);
  ASSERT_TRUE(storage.Prepare(kC1, {}).ok());
  ASSERT_TRUE(storage.Prepare(c2, {}).ok());
  ASSERT_TRUE(network.Attach(kC1, {}).ok());
  SandboxBackends backends{&vmm, &storage, &network, {}};
  const std::string copy = root_ + "/pod-state-copy.json";
  ASSERT_TRUE(WriteFileAtomic(copy, *text).ok());
  TeardownFromRecord(*record, backends, RuntimeLayout(root_ + "/run", root_ + "/log"), nullptr,
                     copy);
  EXPECT_TRUE(storage.prepared().empty());
  EXPECT_TRUE(network.attached().empty());
  EXPECT_EQ(vmm.cleanups(), 1);
  EXPECT_FALSE(fs::exists(copy));
  ASSERT_TRUE(sandbox.DeleteContainer(c2).ok());
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  ExpectNothingLeft(sandbox);
}

// The container that started the VM holds the state file in its bundle: it goes
// last, as containerd's CRI deletes a pod's sandbox after its app containers.
TEST_F(SandboxTest, TheContainerThatStartedTheVmIsDeletedLast) {
  Sandbox& sandbox = NewSandbox(kC1);
  const ContainerKey c2{"default", "c2"};
  auto first = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(first.ok());
  storage_.plan_devices = false;
  ASSERT_TRUE(sandbox.CreateContainer(c2, CreateRequest(c2)).ok());
  auto refused = sandbox.DeleteContainer(kC1);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.error().message.find("c2"), std::string::npos) << refused.error().message;
  EXPECT_TRUE(sandbox.Find(kC1).ok());
  EXPECT_EQ(vmm_.live_vms(), 1);
  ASSERT_TRUE(sandbox.DeleteContainer(c2).ok());
  EXPECT_EQ(vmm_.live_vms(), 1);
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

constexpr auto kHangLimit = std::chrono::seconds(60);

// Issue 10: a guest that acknowledges SIGKILL and never reports the exit. The shim
// stops the VM itself after vm.kill_timeout_ms and reports 137, as runc does.
TEST_F(SandboxTest, KillOfTheInitStopsTheVmWhenTheGuestDoesNotReportTheExit) {
  kill_timeout_ = std::chrono::milliseconds(200);
  Sandbox& sandbox = NewSandbox(kC1, /*with_network=*/true);
  auto container = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(container.ok()) << container.error().message;
  ASSERT_TRUE((*container)->Start("").ok());
  agent_.IgnoreKill();
  Status killed = MakeError(ErrorCode::kInternal, "not called");
  EXPECT_TRUE(FinishesWithin(kHangLimit, [&] { killed = (*container)->Kill("", SIGKILL, false); }));
  EXPECT_TRUE(killed.ok()) << killed.error().message;
  Result<ExitInfo> exit = MakeError(ErrorCode::kInternal, "not called");
  ASSERT_TRUE(FinishesWithin(kHangLimit, [&] { exit = (*container)->Wait(""); }));
  ASSERT_TRUE(exit.ok()) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 137u);
  EXPECT_GE(vmm_.stops(), 1);
  auto topics = events_.topics();
  EXPECT_NE(std::find(topics.begin(), topics.end(), "/tasks/exit"), topics.end());
  // The stopped VM takes no new container.
  const ContainerKey c2{"default", "c2"};
  EXPECT_EQ(sandbox.CreateContainer(c2, CreateRequest(c2)).error().code,
            ErrorCode::kFailedPrecondition);
  Result<ExitInfo> deleted = MakeError(ErrorCode::kInternal, "not called");
  ASSERT_TRUE(FinishesWithin(kHangLimit, [&] { deleted = sandbox.DeleteContainer(kC1); }));
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(deleted->exit_status, 137u);
  ExpectNothingLeft(sandbox);
}

// A guest that stops answering anything: kill -9, Wait, Delete and the shim's
// teardown all finish.
TEST_F(SandboxTest, KillDeleteAndTeardownFinishWhenTheGuestNeverAnswers) {
  kill_timeout_ = std::chrono::milliseconds(200);
  guest_call_timeout_ = std::chrono::milliseconds(300);
  Sandbox& sandbox = NewSandbox(kC1, /*with_network=*/true);
  auto container = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(container.ok()) << container.error().message;
  ASSERT_TRUE((*container)->Start("").ok());
  agent_.Hang("*");
  EXPECT_TRUE(FinishesWithin(kHangLimit, [&] { (void)(*container)->Kill("", SIGKILL, false); }));
  Result<ExitInfo> exit = MakeError(ErrorCode::kInternal, "not called");
  ASSERT_TRUE(FinishesWithin(kHangLimit, [&] { exit = (*container)->Wait(""); }));
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_status, 137u);
  EXPECT_TRUE(FinishesWithin(kHangLimit, [&] { ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok()); }));
  ExpectNothingLeft(sandbox);
  EXPECT_GE(agent_.hung_calls(), 1);

  // The shim's Shutdown (teardown) with the guest silent and a Wait pending.
  agent_.StopHanging();
  Sandbox& second = NewSandbox(ContainerKey{"default", "c2"});
  const ContainerKey c2{"default", "c2"};
  auto other = second.CreateContainer(c2, CreateRequest(c2));
  ASSERT_TRUE(other.ok()) << other.error().message;
  ASSERT_TRUE((*other)->Start("").ok());
  agent_.Hang("*");
  std::thread waiter([&] { (void)(*other)->Wait(""); });
  EXPECT_TRUE(FinishesWithin(kHangLimit, [&] { second.Teardown(); }));
  waiter.join();
  ExpectNothingLeft(second);
}

// Every guest call but Wait has a deadline (vm.guest_call_timeout_ms): a guest that
// never answers one fails that call, and a failed Create leaves nothing.
TEST_F(SandboxTest, EveryGuestCallHasADeadline) {
  guest_call_timeout_ = std::chrono::milliseconds(300);
  Sandbox& sandbox = NewSandbox(kC1, /*with_network=*/true);
  for (const char* method : {"Guest.CreateBundle", "Task.Create"}) {
    agent_.Hang(method);
    bool created = true;
    EXPECT_TRUE(FinishesWithin(kHangLimit, [&] {
      created = sandbox.CreateContainer(kC1, CreateRequest(kC1)).ok();
    })) << method;
    EXPECT_FALSE(created) << method;
    ExpectNothingLeft(sandbox);
    agent_.StopHanging();
  }
  task::CreateTaskRequest with_terminal = CreateRequest(kC1);
  with_terminal.set_terminal(true);  // else ResizePty is answered by the shim alone
  auto created = sandbox.CreateContainer(kC1, with_terminal);
  ASSERT_TRUE(created.ok()) << created.error().message;
  Container& container = **created;
  task::ExecProcessRequest exec;
  exec.set_id(kC1.id);
  exec.set_exec_id("e1");
  exec.mutable_spec()->set_value(R"({"args":["/bin/sh"],"cwd":"/"})");
  const std::vector<std::pair<const char*, std::function<bool()>>> calls = {
      {"Task.Start", [&] { return container.Start("").ok(); }},
      {"Task.Exec", [&] { return container.Exec(exec).ok(); }},
      {"Task.Kill", [&] { return container.Kill("", SIGTERM, false).ok(); }},
      {"Task.ResizePty", [&] { return container.ResizePty("", 80, 24).ok(); }},
  };
  for (const auto& [method, call] : calls) {
    agent_.Hang(method);
    bool answered = true;
    EXPECT_TRUE(FinishesWithin(kHangLimit, [&] { answered = call(); })) << method;
    EXPECT_FALSE(answered) << method;
    agent_.StopHanging();
    if (std::string(method) == "Task.Start") {
      ASSERT_TRUE(container.Start("").ok());
    }
  }
  ASSERT_TRUE(container.Exec(exec).ok());
  agent_.Hang("Task.Delete");
  EXPECT_TRUE(FinishesWithin(kHangLimit, [&] { (void)container.DeleteExec("e1"); }));
  agent_.StopHanging();
  ASSERT_TRUE(container.Kill("", SIGKILL, false).ok());
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  ExpectNothingLeft(sandbox);
}

// What the guest answers is hostile: its pids never reach containerd (the VMM's pid
// does), exit statuses and times are bounded.
TEST_F(SandboxTest, HostileGuestAnswersDoNotReachContainerd) {
  Sandbox& sandbox = NewSandbox(kC1);
  for (uint32_t bogus : {0u, 1u, 0xffffffffu}) {
    agent_.AnswerPid(bogus);
    auto container = sandbox.CreateContainer(kC1, CreateRequest(kC1));
    ASSERT_TRUE(container.ok()) << container.error().message;
    EXPECT_EQ((*container)->host_pid(), 424242u);
    auto pid = (*container)->Start("");
    ASSERT_TRUE(pid.ok());
    EXPECT_EQ(*pid, 424242u);
    EXPECT_EQ((*container)->State("")->pid, 424242u);
    auto pids = (*container)->Pids();
    ASSERT_TRUE(pids.ok());
    ASSERT_EQ(pids->size(), 1u);
    EXPECT_EQ((*pids)[0].pid, 424242u);
    EXPECT_EQ((*pids)[0].exec_id, "");
    agent_.AnswerInvalidExitTime();
    agent_.Exit(kC1.id, "", 0xffffffffu);
    auto exit = (*container)->Wait("");
    ASSERT_TRUE(exit.ok());
    EXPECT_EQ(exit->exit_status, 255u);
    EXPECT_EQ(exit->pid, 424242u);
    EXPECT_GT(exit->exited_at.seconds(), 0);
    EXPECT_GE(exit->exited_at.nanos(), 0);
    auto deleted = sandbox.DeleteContainer(kC1);
    ASSERT_TRUE(deleted.ok());
    EXPECT_EQ(deleted->pid, 424242u);
    ExpectNothingLeft(sandbox);
  }
  // Without a VMM pid the shim reports its own, still a host process of the container.
  vmm_.vmm_pid = 0;
  auto container = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(container.ok());
  EXPECT_EQ((*container)->host_pid(), static_cast<uint32_t>(::getpid()));
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
}

// An OOM kill in the guest is /tasks/oom, once per kill, before the exit it caused
// (as runc's shim orders them); a guest without WaitOom just gives no OOM events.
TEST_F(SandboxTest, OomKillsArePublishedOnceAndBeforeTheExit) {
  Sandbox& sandbox = NewSandbox(kC1);
  auto created = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(created.ok());
  Container& container = **created;
  ASSERT_TRUE(container.Start("").ok());
  agent_.SetOomKills(kC1.id, 1);
  agent_.Exit(kC1.id, "", 137);
  auto exit = container.Wait("");
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_status, 137u);
  agent_.SetOomKills(kC1.id, 1);  // the same count again: no second event
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  EXPECT_EQ(events_.topics(),
            (std::vector<std::string>{"/tasks/create", "/tasks/start", "/tasks/oom", "/tasks/exit",
                                      "/tasks/delete"}));
  ExpectNothingLeft(sandbox);
}

// A guest whose OOM count grows all the time cannot flood containerd nor make the
// shim spin: one call, so at most one event, per OomWatch::kMinCallInterval.
TEST_F(SandboxTest, AnEverGrowingOomCountIsRateLimited) {
  Sandbox& sandbox = NewSandbox(kC1);
  auto created = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(created.ok());
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2500);
  for (uint64_t count = 1; std::chrono::steady_clock::now() < until; ++count) {
    agent_.SetOomKills(kC1.id, count);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto topics = events_.topics();
  const auto ooms = std::count(topics.begin(), topics.end(), "/tasks/oom");
  EXPECT_GE(ooms, 1);
  EXPECT_LE(ooms, 4);  // 2.5 s of calls at least 1 s apart (before: hundreds)
  ASSERT_TRUE((*created)->Kill("", SIGKILL, false).ok());
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  ExpectNothingLeft(sandbox);
}

// runc's shim: Wait on an exec whose start failed returns; Delete then removes it.
TEST_F(SandboxTest, ExecWaitReturnsWhenItsStartFailed) {
  Sandbox& sandbox = NewSandbox(kC1);
  auto created = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(created.ok());
  Container& container = **created;
  ASSERT_TRUE(container.Start("").ok());
  task::ExecProcessRequest exec;
  exec.set_id(kC1.id);
  exec.set_exec_id("e1");
  exec.mutable_spec()->set_value(R"({"args":["/no/such/binary"],"cwd":"/"})");
  ASSERT_TRUE(container.Exec(exec).ok());
  agent_.FailNext("Task.Start", ttrpc::Code::kNotFound);
  ASSERT_FALSE(container.Start("e1").ok());
  Result<ExitInfo> exit = MakeError(ErrorCode::kInternal, "not called");
  ASSERT_TRUE(FinishesWithin(kHangLimit, [&] { exit = container.Wait("e1"); }));
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_status, 255u);
  ASSERT_TRUE(container.DeleteExec("e1").ok());
  EXPECT_EQ(container.State("e1").error().code, ErrorCode::kNotFound);

  // An exec never started, waited for while the shim shuts down: Wait returns.
  exec.set_exec_id("e2");
  ASSERT_TRUE(container.Exec(exec).ok());
  Result<ExitInfo> waited = MakeError(ErrorCode::kInternal, "not called");
  std::promise<void> waiting;
  std::thread waiter([&] {
    waiting.set_value();
    waited = container.Wait("e2");
  });
  waiting.get_future().wait();
  EXPECT_TRUE(FinishesWithin(kHangLimit, [&] { sandbox.Teardown(); }));
  waiter.join();  // before the fix: forever (the test's ctest timeout fails it)
  ASSERT_TRUE(waited.ok());
  ExpectNothingLeft(sandbox);
}

// The shim opens the stdio paths as root: only FIFOs, never a symlink, a file or a
// device; containerd's log URIs are refused with one line; nothing is made first.
TEST_F(SandboxTest, StdioPathsMustBeFifos) {
  Sandbox& sandbox = NewSandbox(kC1, /*with_network=*/true);
  const std::string file = root_ + "/regular", link = root_ + "/link", fifo = root_ + "/fifo";
  std::ofstream(file) << "x";
  fs::create_symlink(file, link);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::vector<std::pair<std::string, std::string>> refused = {
      {file, "is a regular file, not a FIFO"},
      {link, "is a symlink, not a FIFO"},
      {"/dev/null", "is a character device, not a FIFO"},
      {root_ + "/absent", "No such file or directory"},
      {"binary:///usr/bin/logger?x=1", "log URI binary:///usr/bin/logger"},
      {"file:///var/log/x.log", "log URI file:///var/log/x.log"}};
  for (const auto& [path, why] : refused) {
    task::CreateTaskRequest request = CreateRequest(kC1);
    request.set_stdout(path);
    auto container = sandbox.CreateContainer(kC1, request);
    ASSERT_FALSE(container.ok()) << path;
    EXPECT_EQ(container.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(container.error().message.find(why), std::string::npos) << container.error().message;
    EXPECT_EQ(container.error().message.find('\n'), std::string::npos);
  }
  EXPECT_EQ(vmm_.created(), 0);
  EXPECT_TRUE(storage_.requests.empty());
  ExpectNothingLeft(sandbox);

  auto created = sandbox.CreateContainer(kC1, CreateRequest(kC1));
  ASSERT_TRUE(created.ok());
  task::ExecProcessRequest exec;
  exec.set_id(kC1.id);
  exec.set_exec_id("e1");
  exec.set_stderr(link);
  exec.mutable_spec()->set_value(R"({"args":["/bin/sh"],"cwd":"/"})");
  Status refused_exec = (*created)->Exec(exec);
  ASSERT_FALSE(refused_exec.ok());
  EXPECT_NE(refused_exec.error().message.find("stderr path"), std::string::npos);
  auto calls = agent_.calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "Task.Exec"), 0);
  EXPECT_EQ((*created)->State("e1").error().code, ErrorCode::kNotFound);
  exec.set_stderr("");
  exec.set_stdin(fifo);  // a FIFO is fine (its reader opens without waiting)
  EXPECT_TRUE((*created)->Exec(exec).ok());
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
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

// A CRI pod's VM (issue 17 item 2): the sandbox container's annotations from
// containerd's CRI size it; app containers' limits, added up, grow it through the
// VMM's resize and the guest onlines what was added before the container is created;
// one that does not fit is refused with one line and leaves nothing; one that leaves
// frees room without shrinking the VM.
TEST_F(SandboxTest, APodsVmIsSizedByItsAnnotationsAndGrowsByItsContainersLimits) {
  seed_sizes_ = true;
  Sandbox& sandbox = NewSandbox(kC1);
  // 1 CPU and 640 MiB declared for the pod: 1 vCPU, 768 MiB.
  auto sandbox_request = PodRequest(kC1, R"({"io.kubernetes.cri.container-type":"sandbox",
      "io.kubernetes.cri.sandbox-id":"c1","io.kubernetes.cri.sandbox-cpu-period":"100000",
      "io.kubernetes.cri.sandbox-cpu-quota":"100000","io.kubernetes.cri.sandbox-cpu-shares":"1024",
      "io.kubernetes.cri.sandbox-memory":"671088640"})",
                                    R"({"cpu":{"shares":2}})");
  ASSERT_TRUE(sandbox.CreateContainer(kC1, sandbox_request).ok());
  ASSERT_EQ(vmm_.specs.size(), 1u);
  EXPECT_EQ(vmm_.specs[0].vcpus(), 1u);
  EXPECT_EQ(vmm_.specs[0].memory_mib(), 768u);
  EXPECT_EQ(vmm_.specs[0].max_vcpus(), 2u);
  EXPECT_EQ(vmm_.specs[0].max_memory_mib(), 2048u);
  storage_.plan_devices = false;
  const std::string app = R"({"io.kubernetes.cri.container-type":"container",
      "io.kubernetes.cri.sandbox-id":"c1"})";

  // Within what the pod declared: nothing added.
  const ContainerKey c2{"default", "c2"};
  ASSERT_TRUE(sandbox
                  .CreateContainer(c2, PodRequest(c2, app,
                                                  R"({"cpu":{"quota":50000,"period":100000},
                                                      "memory":{"limit":268435456}})"))
                  .ok());
  EXPECT_TRUE(vmm_.resizes().empty());
  EXPECT_FALSE(agent_.last_update().has_value());

  // 256 + 1024 MiB + 128 MiB overhead = 1408 MiB (768 + 5 blocks of 128); 0.5 + 1.5 CPUs
  // = 2 vCPUs: vCPUs first, then memory, then the guest onlines them.
  const ContainerKey c3{"default", "c3"};
  auto grown = sandbox.CreateContainer(
      c3, PodRequest(c3, app,
                     R"({"cpu":{"quota":150000,"period":100000},"memory":{"limit":1073741824}})"));
  ASSERT_TRUE(grown.ok()) << grown.error().message;
  auto resizes = vmm_.resizes();
  ASSERT_EQ(resizes.size(), 2u);
  EXPECT_EQ(resizes[0], (std::pair<uint32_t, uint64_t>{2, 0}));
  EXPECT_EQ(resizes[1], (std::pair<uint32_t, uint64_t>{0, 1408}));
  auto online = agent_.last_update();
  ASSERT_TRUE(online.has_value());
  EXPECT_EQ(online->id(), "c1");
  EXPECT_TRUE(online->resources().value().empty());
  EXPECT_EQ(online->annotations().at("io.beaconbox.vm.vcpus"), "2");
  EXPECT_EQ(online->annotations().at("io.beaconbox.vm.memory_mib"), "1408");

  // 1280 + 768 + 128 MiB > 2048: refused, naming the container and the config key;
  // its rootfs is released and the VM is not touched.
  const ContainerKey c4{"default", "c4"};
  auto refused =
      sandbox.CreateContainer(c4, PodRequest(c4, app, R"({"memory":{"limit":805306368}})"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.error().message.find("container c4"), std::string::npos)
      << refused.error().message;
  EXPECT_NE(refused.error().message.find("vm.max_memory_mib"), std::string::npos)
      << refused.error().message;
  EXPECT_EQ(refused.error().message.find('\n'), std::string::npos);
  EXPECT_EQ(vmm_.resizes().size(), 2u);
  EXPECT_EQ(storage_.prepared(), (std::set<ContainerKey>{kC1, c2, c3}));
  EXPECT_FALSE(sandbox.Find(c4).ok());

  // c3 leaves: the VM keeps 2 vCPUs / 1408 MiB, and the same container now fits in it.
  ASSERT_TRUE(sandbox.DeleteContainer(c3).ok());
  ASSERT_TRUE(
      sandbox.CreateContainer(c4, PodRequest(c4, app, R"({"memory":{"limit":805306368}})")).ok());
  EXPECT_EQ(vmm_.resizes().size(), 2u);

  // Task.Update counts the other containers too: c2 to 1 GiB needs 1024 + 768 + 128.
  task::UpdateTaskRequest update;
  update.set_id("c2");
  update.mutable_resources()->set_value(R"({"memory":{"limit":1073741824}})");
  ASSERT_TRUE(sandbox.UpdateContainer(c2, update).ok());
  ASSERT_EQ(vmm_.resizes().size(), 3u);
  EXPECT_EQ(vmm_.resizes()[2], (std::pair<uint32_t, uint64_t>{0, 1920}));
  update.mutable_resources()->set_value(R"({"memory":{"limit":1610612736}})");
  auto too_big = sandbox.UpdateContainer(c2, update);
  ASSERT_FALSE(too_big.ok());
  EXPECT_NE(too_big.error().message.find("container c2"), std::string::npos);
  EXPECT_EQ(vmm_.resizes().size(), 3u);

  ASSERT_TRUE(sandbox.DeleteContainer(c4).ok());
  ASSERT_TRUE(sandbox.DeleteContainer(c2).ok());
  ASSERT_TRUE(sandbox.DeleteContainer(kC1).ok());
  ExpectNothingLeft(sandbox);
}

// Bad sandbox annotations refuse the sandbox container with one line naming the
// annotation, before anything is made.
TEST_F(SandboxTest, ABadPodAnnotationIsRefusedLeavingNothing) {
  seed_sizes_ = true;
  Sandbox& sandbox = NewSandbox(kC1);
  auto refused =
      sandbox.CreateContainer(kC1, PodRequest(kC1, R"({"io.kubernetes.cri.container-type":"sandbox",
                               "io.kubernetes.cri.sandbox-memory":"lots"})",
                                              "{}"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.error().message.find("io.kubernetes.cri.sandbox-memory"), std::string::npos)
      << refused.error().message;
  EXPECT_EQ(refused.error().message.find('\n'), std::string::npos);
  EXPECT_EQ(vmm_.created(), 0);
  ExpectNothingLeft(sandbox);
}

}  // namespace
}  // namespace beaconbox::shim
