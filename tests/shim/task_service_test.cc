// TaskService over a real ttrpc connection (socketpair) against a Sandbox on the
// fakes: what containerd sees, codes included, in milliseconds.
#include "host/shim/task_service.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>

#include "github.com/containerd/cgroups/v2/stats/metrics.pb.h"
#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"
#include "host/shim/checkpoint_manifest.h"
#include "tests/shim/task_service_fixture.h"

namespace beaconbox::shim {
namespace {

using google::protobuf::Empty;
using ttrpc::Code;

class TaskServiceTest : public testing::TaskServiceFixture {
 protected:
  void SetUp() override {
    MakeBundle("bbx-task-service-test");
    std::ofstream(bundle_ + "/config.json")
        << R"({"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["/bin/true"]}})";
    // A checkpoint manifest names these files' digests (FAKE kernel and initrd).
    backends_.vm.kernel_path = root_ + "/kernel";
    backends_.vm.initrd_path = root_ + "/initrd";
    std::ofstream(backends_.vm.kernel_path) << "FAKE kernel";
    std::ofstream(backends_.vm.initrd_path) << "FAKE initrd";
    backends_.vm.vmm_plugin = "fake";
    ServeTask();
  }
  ttrpc::RpcStatus Create(const std::string& id) { return CreateTask(id); }
  // c1 created and started on a (FAKE) VMM that saves, without storage devices: the
  // start of every checkpoint test (call it under ASSERT_NO_FATAL_FAILURE).
  void StartSavableC1() {
    storage_.plan_devices = false;
    vmm_.can_save = true;
    ASSERT_TRUE(Create("c1").ok());
    task::StartRequest start;
    start.set_id("c1");
    task::StartResponse started;
    ASSERT_TRUE(Call("Start", start, &started).ok());
  }
};

TEST_F(TaskServiceTest, TranslatesTheLifecycleWithContainerdsCodes) {
  ASSERT_TRUE(Create("c1").ok());
  EXPECT_EQ(Create("c1").code, Code::kAlreadyExists);

  task::StateRequest state_request;
  state_request.set_id("c1");
  task::StateResponse state;
  ASSERT_TRUE(Call("State", state_request, &state).ok());
  EXPECT_EQ(state.status(), ::containerd::v1::types::CREATED);
  EXPECT_EQ(state.bundle(), bundle_);
  // The VMM's pid (FakeVmm::vmm_pid), never the guest's, for State and Pids alike.
  EXPECT_EQ(state.pid(), 424242u);
  task::PidsRequest pids_request;
  pids_request.set_id("c1");
  task::PidsResponse pids;
  ASSERT_TRUE(Call("Pids", pids_request, &pids).ok());
  ASSERT_EQ(pids.processes_size(), 1);
  EXPECT_EQ(pids.processes(0).pid(), 424242u);

  task::StartRequest start;
  start.set_id("c1");
  task::StartResponse started;
  ASSERT_TRUE(Call("Start", start, &started).ok());
  EXPECT_EQ(started.pid(), 424242u);
  auto twice = Call("Start", start, &started);
  EXPECT_EQ(twice.code, Code::kFailedPrecondition);
  EXPECT_EQ(twice.message, "cannot start a running process");

  task::DeleteRequest remove;
  remove.set_id("c1");
  task::DeleteResponse removed;
  EXPECT_EQ(Call("Delete", remove, &removed).code, Code::kFailedPrecondition);

  task::StateRequest unknown;
  unknown.set_id("nope");
  EXPECT_EQ(Call("State", unknown, &state).code, Code::kNotFound);

  Empty empty;
  task::ShutdownRequest shutdown;
  ASSERT_TRUE(Call("Shutdown", shutdown, &empty).ok());
  EXPECT_EQ(shutdowns_, 0);  // a container is still there

  task::KillRequest kill;
  kill.set_id("c1");
  kill.set_signal(SIGKILL);
  ASSERT_TRUE(Call("Kill", kill, &empty).ok());
  task::WaitRequest wait;
  wait.set_id("c1");
  task::WaitResponse waited;
  ASSERT_TRUE(Call("Wait", wait, &waited).ok());
  EXPECT_EQ(waited.exit_status(), 137u);
  EXPECT_EQ(Call("Kill", kill, &empty).code, Code::kNotFound);

  ASSERT_TRUE(Call("Delete", remove, &removed).ok());
  EXPECT_EQ(removed.exit_status(), 137u);
  EXPECT_EQ(Call("State", state_request, &state).code, Code::kNotFound);
  ASSERT_TRUE(Call("Shutdown", shutdown, &empty).ok());
  EXPECT_EQ(shutdowns_, 1);
  EXPECT_TRUE(storage_.prepared().empty());
  EXPECT_EQ(events_.topics(), (std::vector<std::string>{"/tasks/create", "/tasks/start",
                                                        "/tasks/exit", "/tasks/delete"}));
}

// A config.json nested 100,000 levels deep used to crash the shim (recursive JSON
// parse); now Create answers with one line and the shim goes on serving.
TEST_F(TaskServiceTest, CreateWithADeeplyNestedConfigJsonFailsWithOneLine) {
  std::ofstream(bundle_ + "/config.json", std::ios::trunc)
      << R"({"ociVersion":"1.0.2","root":{"path":"rootfs"},"annotations":)"
      << std::string(100000, '[') << std::string(100000, ']') << "}";
  auto created = Create("c1");
  EXPECT_EQ(created.code, Code::kInvalidArgument);
  EXPECT_NE(created.message.find("config.json in the bundle nests arrays/objects deeper than"),
            std::string::npos)
      << created.message;
  EXPECT_EQ(created.message.find('\n'), std::string::npos);
  task::StateRequest state_request;
  state_request.set_id("c1");
  task::StateResponse state;
  EXPECT_EQ(Call("State", state_request, &state).code, Code::kNotFound);  // still serving
}

// A pod on one shim (containerd sends each container's calls to the shim its sandbox
// started): Shutdown with a container left is a no-op, as runc's shim; the container
// that started the VM is deleted last; the last Delete lets Shutdown end the shim.
TEST_F(TaskServiceTest, ShutdownWithAPodContainerLeftKeepsServing) {
  ASSERT_TRUE(Create("c1").ok());
  storage_.plan_devices = false;  // nothing to add to the running VM
  ASSERT_TRUE(Create("c2").ok());
  EXPECT_EQ(vmm_.created(), 1);
  Empty empty;
  auto end = [&](const std::string& id) {
    task::KillRequest kill;
    kill.set_id(id);
    kill.set_signal(SIGKILL);
    ASSERT_TRUE(Call("Kill", kill, &empty).ok()) << id;
    task::WaitRequest wait;
    wait.set_id(id);
    task::WaitResponse waited;
    ASSERT_TRUE(Call("Wait", wait, &waited).ok()) << id;
  };
  end("c1");
  end("c2");
  task::DeleteRequest remove;
  task::DeleteResponse removed;
  remove.set_id("c1");
  EXPECT_EQ(Call("Delete", remove, &removed).code, Code::kFailedPrecondition);
  remove.set_id("c2");
  ASSERT_TRUE(Call("Delete", remove, &removed).ok());
  task::ShutdownRequest shutdown;
  shutdown.set_id("c2");
  ASSERT_TRUE(Call("Shutdown", shutdown, &empty).ok());
  EXPECT_EQ(shutdowns_, 0);  // c1 is still there
  EXPECT_EQ(vmm_.live_vms(), 1);
  task::StateRequest state_request;
  state_request.set_id("c1");
  task::StateResponse state;
  ASSERT_TRUE(Call("State", state_request, &state).ok());
  remove.set_id("c1");
  ASSERT_TRUE(Call("Delete", remove, &removed).ok());
  shutdown.set_id("c1");
  ASSERT_TRUE(Call("Shutdown", shutdown, &empty).ok());
  EXPECT_EQ(shutdowns_, 1);
  EXPECT_EQ(vmm_.live_vms(), 0);
  EXPECT_TRUE(storage_.prepared().empty());
}

TEST_F(TaskServiceTest, KillBeforeStartMakesWaitReturn137) {
  ASSERT_TRUE(Create("c1").ok());
  Empty empty;
  task::KillRequest kill;
  kill.set_id("c1");
  kill.set_signal(SIGKILL);
  ASSERT_TRUE(Call("Kill", kill, &empty).ok());
  task::WaitRequest wait;
  wait.set_id("c1");
  task::WaitResponse waited;
  ASSERT_TRUE(Call("Wait", wait, &waited).ok());
  EXPECT_EQ(waited.exit_status(), 137u);
  task::DeleteRequest remove;
  remove.set_id("c1");
  task::DeleteResponse removed;
  ASSERT_TRUE(Call("Delete", remove, &removed).ok());
}

TEST_F(TaskServiceTest, ExecPauseAndUnimplementedCalls) {
  ASSERT_TRUE(Create("c1").ok());
  task::StartRequest start;
  start.set_id("c1");
  task::StartResponse started;
  ASSERT_TRUE(Call("Start", start, &started).ok());
  Empty empty;
  task::PauseRequest pause;
  pause.set_id("c1");
  ASSERT_TRUE(Call("Pause", pause, &empty).ok());
  task::ExecProcessRequest exec;
  exec.set_id("c1");
  exec.set_exec_id("e1");
  exec.mutable_spec()->set_value(R"({"args":["/bin/sh"]})");
  auto refused = Call("Exec", exec, &empty);
  EXPECT_EQ(refused.code, Code::kUnknown);  // runc's shim: a plain error, so ctr says "unknown"
  EXPECT_EQ(refused.message, "cannot exec in a paused state");
  task::ResumeRequest resume;
  resume.set_id("c1");
  ASSERT_TRUE(Call("Resume", resume, &empty).ok());
  ASSERT_TRUE(Call("Exec", exec, &empty).ok());
  EXPECT_EQ(Call("Exec", exec, &empty).code, Code::kAlreadyExists);
  task::StatsRequest stats;
  stats.set_id("c1");
  task::StatsResponse stats_response;
  EXPECT_EQ(Call("Stats", stats, &stats_response).code, Code::kUnimplemented);
  task::ConnectRequest connect;
  connect.set_id("c1");
  task::ConnectResponse connected;
  ASSERT_TRUE(Call("Connect", connect, &connected).ok());
  EXPECT_EQ(connected.task_pid(), started.pid());
}

// Checkpoint (issue 19): what cannot be saved is refused with one line before the VM
// is touched; a VMM without a save operation says so; restore is refused and leaves
// no container behind.
TEST_F(TaskServiceTest, CheckpointRefusesVirtioFsWithOneLine) {
  ASSERT_TRUE(Create("c1").ok());  // the fake storage plans a virtio-fs share
  Empty empty;
  task::CheckpointTaskRequest checkpoint;
  checkpoint.set_id("c1");
  checkpoint.set_path("relative/dir");
  auto refused = Call("Checkpoint", checkpoint, &empty);
  EXPECT_EQ(refused.code, Code::kInvalidArgument) << refused.message;
  checkpoint.set_path(root_ + "/checkpoint");
  refused = Call("Checkpoint", checkpoint, &empty);
  EXPECT_EQ(refused.code, Code::kFailedPrecondition) << refused.message;
  EXPECT_NE(refused.message.find("checkpoint needs storage.driver = erofs (transport blk) and no "
                                 "volumes: QEMU 7.2 cannot migrate vhost-user-fs"),
            std::string::npos)
      << refused.message;
  EXPECT_EQ(refused.message.find('\n'), std::string::npos);
  checkpoint.set_id("nope");
  EXPECT_EQ(Call("Checkpoint", checkpoint, &empty).code, Code::kNotFound);
}

TEST_F(TaskServiceTest, CheckpointWithoutVirtioFsNeedsAVmmThatSaves) {
  storage_.plan_devices = false;  // guest mounts only, as erofs on virtio-blk needs no share
  ASSERT_TRUE(Create("c1").ok());
  Empty empty;
  task::CheckpointTaskRequest checkpoint;
  checkpoint.set_id("c1");
  checkpoint.set_path(root_ + "/checkpoint");
  std::filesystem::create_directories(checkpoint.path());
  auto refused = Call("Checkpoint", checkpoint, &empty);
  EXPECT_EQ(refused.code, Code::kFailedPrecondition) << refused.message;
  EXPECT_NE(refused.message.find("needs a running or paused task"), std::string::npos)
      << refused.message;
  task::StartRequest start;
  start.set_id("c1");
  task::StartResponse started;
  ASSERT_TRUE(Call("Start", start, &started).ok());
  refused = Call("Checkpoint", checkpoint, &empty);
  EXPECT_EQ(refused.code, Code::kUnimplemented) << refused.message;
  EXPECT_NE(refused.message.find("this VMM cannot save a running VM"), std::string::npos)
      << refused.message;
  // Paused for the save and running again after its refusal; nothing written.
  EXPECT_EQ(vmm_.pauses(), 1);
  EXPECT_EQ(vmm_.resumes(), 1);
  EXPECT_TRUE(std::filesystem::is_empty(checkpoint.path()));
}

// With a (FAKE) VMM that saves: the VM is paused, saved, the manifest written beside
// the state (restore's validation accepts it), and the VM resumed.
TEST_F(TaskServiceTest, CheckpointSavesTheVmWritesTheManifestAndResumes) {
  ASSERT_NO_FATAL_FAILURE(StartSavableC1());
  Empty empty;
  task::CheckpointTaskRequest checkpoint;
  checkpoint.set_id("c1");
  checkpoint.set_path(root_ + "/checkpoint");
  std::filesystem::create_directories(checkpoint.path());
  auto done = Call("Checkpoint", checkpoint, &empty);
  ASSERT_TRUE(done.ok()) << done.message;
  EXPECT_EQ(vmm_.pauses(), 1);
  EXPECT_EQ(vmm_.resumes(), 1);
  CheckpointHost host;
  host.beaconbox_version = BEACONBOX_VERSION;
  ASSERT_TRUE(Sha256OfFile(root_ + "/kernel").ok());
  host.kernel_sha256 = *Sha256OfFile(root_ + "/kernel");
  host.initrd_sha256 = *Sha256OfFile(root_ + "/initrd");
  host.vmm = "fake";
  host.vmm_version = "FAKE VMM 1";
  host.max_memory_mib = 4096;
  auto manifest = ValidateCheckpointDir(checkpoint.path(), host);
  ASSERT_TRUE(manifest.ok()) << manifest.error().message;
  ASSERT_EQ(manifest->files.size(), 1u);
  EXPECT_EQ(manifest->files[0].name, "vm.state");
  task::StateRequest state_request;
  state_request.set_id("c1");
  task::StateResponse state;
  ASSERT_TRUE(Call("State", state_request, &state).ok());
  EXPECT_EQ(state.status(), ::containerd::v1::types::RUNNING);
}

// CheckpointOptions.exit (containerd.runc.v1, as containerd sends it): saved, then the
// init is killed, so containerd sees the task exit as with runc's shim.
TEST_F(TaskServiceTest, CheckpointWithExitEndsTheTask) {
  ASSERT_NO_FATAL_FAILURE(StartSavableC1());
  Empty empty;
  task::CheckpointTaskRequest checkpoint;
  checkpoint.set_id("c1");
  checkpoint.set_path(root_ + "/checkpoint");
  std::filesystem::create_directories(checkpoint.path());
  containerd::runc::v1::CheckpointOptions options;
  options.set_exit(true);
  // As containerd's Go typeurl writes it: the bare message name, no "<prefix>/".
  checkpoint.mutable_options()->set_type_url("containerd.runc.v1.CheckpointOptions");
  checkpoint.mutable_options()->set_value(options.SerializeAsString());
  auto done = Call("Checkpoint", checkpoint, &empty);
  ASSERT_TRUE(done.ok()) << done.message;
  EXPECT_TRUE(std::filesystem::exists(checkpoint.path() + "/" + kCheckpointManifestName));
  task::WaitRequest wait;
  wait.set_id("c1");
  task::WaitResponse waited;
  ASSERT_TRUE(Call("Wait", wait, &waited).ok());
  EXPECT_EQ(waited.exit_status(), 137u);
}

// A paused task is saved without touching the VM's run state and stays paused.
TEST_F(TaskServiceTest, CheckpointOfAPausedTaskStaysPaused) {
  ASSERT_NO_FATAL_FAILURE(StartSavableC1());
  Empty empty;
  task::PauseRequest pause;
  pause.set_id("c1");
  ASSERT_TRUE(Call("Pause", pause, &empty).ok());
  task::CheckpointTaskRequest checkpoint;
  checkpoint.set_id("c1");
  checkpoint.set_path(root_ + "/checkpoint");
  std::filesystem::create_directories(checkpoint.path());
  auto done = Call("Checkpoint", checkpoint, &empty);
  ASSERT_TRUE(done.ok()) << done.message;
  EXPECT_EQ(vmm_.pauses(), 1);  // Task.Pause's only
  EXPECT_EQ(vmm_.resumes(), 0);
  EXPECT_TRUE(std::filesystem::exists(checkpoint.path() + "/" + kCheckpointManifestName));
  task::StateRequest state_request;
  state_request.set_id("c1");
  task::StateResponse state;
  ASSERT_TRUE(Call("State", state_request, &state).ok());
  EXPECT_EQ(state.status(), ::containerd::v1::types::PAUSED);
}

// ctr c restore --live: the checkpoint of c1 (saved by the FAKE VMM, which keeps the
// FAKE guest's process table and puts it back on restore) comes back as c2: Create
// validates the checkpoint, boots the VM from it, refreshes the guest and adopts the
// guest's container "c1" without creating anything; Start starts nothing; Kill, Wait
// and Delete of c2 reach the guest's c1.
class RestoreTest : public TaskServiceTest {
 protected:
  // c1 created, started, checkpointed into checkpoint_, killed and deleted.
  void CheckpointAndRemoveC1() {
    ASSERT_NO_FATAL_FAILURE(StartSavableC1());
    checkpoint_ = root_ + "/checkpoint";
    std::filesystem::create_directories(checkpoint_);
    Empty empty;
    task::CheckpointTaskRequest checkpoint;
    checkpoint.set_id("c1");
    checkpoint.set_path(checkpoint_);
    auto done = Call("Checkpoint", checkpoint, &empty);
    ASSERT_TRUE(done.ok()) << done.message;
    ASSERT_EQ(KillAndWait("c1", SIGKILL), 128 + SIGKILL);
    task::DeleteRequest remove;
    remove.set_id("c1");
    task::DeleteResponse removed;
    ASSERT_TRUE(Call("Delete", remove, &removed).ok());
    ASSERT_EQ(vmm_.live_vms(), 0);
    created_before_ = vmm_.created();
  }
  // Kill of `id`'s init with `signal`, then its exit status (-1: a call failed).
  int KillAndWait(const std::string& id, int signal) {
    Empty empty;
    task::KillRequest kill;
    kill.set_id(id);
    kill.set_signal(static_cast<uint32_t>(signal));
    auto killed = Call("Kill", kill, &empty);
    EXPECT_TRUE(killed.ok()) << killed.message;
    task::WaitRequest wait;
    wait.set_id(id);
    task::WaitResponse waited;
    if (!killed.ok() || !Call("Wait", wait, &waited).ok()) return -1;
    return static_cast<int>(waited.exit_status());
  }
  ttrpc::RpcStatus Restore(const std::string& id) {
    task::CreateTaskRequest request;
    request.set_id(id);
    request.set_bundle(bundle_);
    request.set_checkpoint(checkpoint_);
    task::CreateTaskResponse response;
    return Call("Create", request, &response);
  }
  // The refusal of restoring c2 now: one line, and nothing left behind.
  std::string Refusal() {
    auto refused = Restore("c2");
    EXPECT_FALSE(refused.ok());
    EXPECT_EQ(refused.message.find('\n'), std::string::npos) << refused.message;
    EXPECT_TRUE(storage_.prepared().empty());
    EXPECT_EQ(vmm_.live_vms(), 0);
    EXPECT_TRUE(sandbox_->empty());
    return refused.ok() ? "accepted" : refused.message;
  }
  std::string checkpoint_;
  int created_before_ = 0;
};

TEST_F(RestoreTest, AdoptsTheCheckpointedContainerUnderANewId) {
  CheckpointAndRemoveC1();
  const size_t calls_before = agent_.calls().size();
  auto restored = Restore("c2");
  ASSERT_TRUE(restored.ok()) << restored.message;
  ASSERT_FALSE(vmm_.specs.empty());
  EXPECT_EQ(vmm_.specs.back().restore_dir(), checkpoint_);
  ASSERT_EQ(vmm_.specs.back().restore_files_size(), 1);
  EXPECT_EQ(vmm_.specs.back().restore_files(0), "vm.state");
  EXPECT_EQ(vmm_.specs.back().restore_vmm_version(), "FAKE VMM 1");
  // The new connection's ids continue above the saved session's.
  std::string manifest_text;
  {
    std::ifstream in(checkpoint_ + "/" + kCheckpointManifestName);
    manifest_text.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto manifest = ParseCheckpointManifest(manifest_text);
  ASSERT_TRUE(manifest.ok()) << manifest.error().message;
  // Hello, CreateBundle, Create and Start were sent (stream ids 1, 3, 5, 7); Wait is
  // sent by a thread of its own and may not have been yet on a loaded machine.
  EXPECT_GE(manifest->guest_stream_id, 7u);
  EXPECT_EQ(manifest->guest_container_id, "c1");
  EXPECT_EQ(manifest->container_id, "c1");
  task::StateRequest state_request;
  state_request.set_id("c2");
  task::StateResponse state;
  ASSERT_TRUE(Call("State", state_request, &state).ok());
  EXPECT_EQ(state.status(), ::containerd::v1::types::CREATED);
  task::StartRequest start;
  start.set_id("c2");
  task::StartResponse started;
  ASSERT_TRUE(Call("Start", start, &started).ok());
  EXPECT_EQ(started.pid(), 424242u);
  ASSERT_TRUE(Call("State", state_request, &state).ok());
  EXPECT_EQ(state.status(), ::containerd::v1::types::RUNNING);
  // Refreshed and adopted; nothing created or started in the guest.
  std::vector<std::string> calls = agent_.calls();
  calls.erase(calls.begin(), calls.begin() + static_cast<long>(calls_before));
  auto called = [&calls](const std::string& method) {
    return std::find(calls.begin(), calls.end(), method) != calls.end();
  };
  EXPECT_TRUE(called("Guest.Refresh"));
  EXPECT_TRUE(called("Task.State"));
  EXPECT_FALSE(called("Guest.CreateBundle"));
  EXPECT_FALSE(called("Task.Create"));
  EXPECT_FALSE(called("Task.Start"));
  // c2's Kill reaches the guest's c1 (the FAKE guest knows no c2).
  EXPECT_EQ(KillAndWait("c2", SIGTERM), 128 + SIGTERM);
  task::DeleteRequest remove;
  remove.set_id("c2");
  task::DeleteResponse removed;
  ASSERT_TRUE(Call("Delete", remove, &removed).ok());
  EXPECT_EQ(removed.exit_status(), 128u + SIGTERM);
  EXPECT_TRUE(storage_.prepared().empty());
  EXPECT_EQ(vmm_.live_vms(), 0);
}

// With a network plugin: the restored VM gets the new attachment's network config
// marked `restored` (the guest's NIC still has the saved VM's MAC and addresses: it is
// found by name and reset, vminitd network.cc), a cold boot's is not; the attachment
// goes with the restored container.
class RestoreWithNetworkTest : public RestoreTest {
 protected:
  void SetUp() override {
    backends_.network = &network_;
    RestoreTest::SetUp();
  }
  void TearDown() override {
    RestoreTest::TearDown();
    service_.reset();
    sandbox_.reset();  // before network_ goes
  }
  testing::FakeNetwork network_;
};

TEST_F(RestoreWithNetworkTest, TheRestoredGuestIsToldToReplaceItsSavedNetwork) {
  ASSERT_NO_FATAL_FAILURE(CheckpointAndRemoveC1());
  ASSERT_TRUE(agent_.network().has_value());  // c1's cold boot
  EXPECT_FALSE(agent_.network()->restored());
  ASSERT_TRUE(network_.attached().empty());
  auto restored = Restore("c2");
  ASSERT_TRUE(restored.ok()) << restored.message;
  ASSERT_TRUE(agent_.network().has_value());
  EXPECT_TRUE(agent_.network()->restored());
  ASSERT_EQ(agent_.network()->interfaces_size(), 1);
  EXPECT_EQ(agent_.network()->interfaces(0).name(), "eth0");
  EXPECT_EQ(agent_.network()->interfaces(0).mac(), "02:00:00:00:00:01");
  EXPECT_EQ(network_.attached().size(), 1u);
  EXPECT_EQ(KillAndWait("c2", SIGKILL), 128 + SIGKILL);
  task::DeleteRequest remove;
  task::DeleteResponse removed;
  remove.set_id("c2");
  ASSERT_TRUE(Call("Delete", remove, &removed).ok());
  EXPECT_TRUE(network_.attached().empty());
  EXPECT_EQ(vmm_.live_vms(), 0);
}

TEST_F(RestoreTest, RefusesACorruptedStateAndLeavesNothing) {
  CheckpointAndRemoveC1();
  {
    std::fstream state(checkpoint_ + "/vm.state", std::ios::in | std::ios::out | std::ios::binary);
    state.seekp(2);
    state.put('X');  // same size, other content
  }
  std::string refusal = Refusal();
  EXPECT_NE(refusal.find("checkpoint refused: its file vm.state has SHA-256"), std::string::npos)
      << refusal;
  EXPECT_NE(refusal.find("(corrupted)"), std::string::npos) << refusal;
  EXPECT_EQ(vmm_.created(), created_before_);  // the VMM never ran
}

TEST_F(RestoreTest, RefusesATruncatedForeignOrOldCheckpointAndLeavesNothing) {
  CheckpointAndRemoveC1();
  const std::string manifest_path = checkpoint_ + "/" + kCheckpointManifestName;
  std::string manifest;
  {
    std::ifstream in(manifest_path);
    manifest.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(manifest_path, std::ios::trunc) << manifest.substr(0, manifest.size() / 2);
  EXPECT_NE(Refusal().find("checkpoint refused"), std::string::npos);
  std::ofstream(manifest_path, std::ios::trunc) << std::regex_replace(
      manifest, std::regex("beaconbox-checkpoint 2"), "beaconbox-checkpoint 1");
  EXPECT_NE(Refusal().find("its format 'beaconbox-checkpoint 1' (an older beaconbox)"),
            std::string::npos);
  std::filesystem::remove(manifest_path);
  EXPECT_NE(Refusal().find("no readable beaconbox-checkpoint.json"), std::string::npos);
  std::ofstream(manifest_path, std::ios::trunc) << manifest;
  std::filesystem::resize_file(checkpoint_ + "/vm.state", 3);
  EXPECT_NE(Refusal().find("(truncated)"), std::string::npos);
  EXPECT_EQ(vmm_.created(), created_before_);
}

TEST_F(RestoreTest, NamesAHostMismatchAndLeavesNothing) {
  CheckpointAndRemoveC1();
  const std::string manifest_path = checkpoint_ + "/" + kCheckpointManifestName;
  std::string manifest;
  {
    std::ifstream in(manifest_path);
    manifest.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(backends_.vm.kernel_path, std::ios::trunc) << "another FAKE kernel";
  EXPECT_NE(Refusal().find("the kernel (SHA-256) differs"), std::string::npos);
  std::ofstream(backends_.vm.kernel_path, std::ios::trunc) << "FAKE kernel";
  // The VMM version is the plugin's to compare: refused by the (FAKE) plugin, after the
  // rootfs was prepared, and undone.
  std::ofstream(manifest_path, std::ios::trunc)
      << std::regex_replace(manifest, std::regex("FAKE VMM 1"), "FAKE VMM 2");
  std::string refusal = Refusal();
  EXPECT_NE(refusal.find("FAKE: saved by 'FAKE VMM 2', this is FAKE VMM 1"), std::string::npos)
      << refusal;
  std::ofstream(manifest_path, std::ios::trunc) << manifest;
  // A restore with a terminal where the process had none.
  task::CreateTaskRequest request;
  request.set_id("c2");
  request.set_bundle(bundle_);
  request.set_checkpoint(checkpoint_);
  request.set_terminal(true);
  task::CreateTaskResponse response;
  auto refused = Call("Create", request, &response);
  EXPECT_NE(refused.message.find("restore with the same -t"), std::string::npos) << refused.message;
  // Unchanged, it restores.
  auto restored = Restore("c2");
  EXPECT_TRUE(restored.ok()) << restored.message;
}

// Stats: the guest's cgroup v2 Metrics, re-checked, as containerd's type; Pids: every
// live process with the VMM's pid, each exec marked with runc's ProcessDetails.
TEST_F(TaskServiceTest, StatsAndPidsWithExecs) {
  ASSERT_TRUE(Create("c1").ok());
  task::StartRequest start;
  start.set_id("c1");
  task::StartResponse started;
  ASSERT_TRUE(Call("Start", start, &started).ok());
  Empty empty;
  for (const char* exec_id : {"e1", "e2"}) {
    task::ExecProcessRequest exec;
    exec.set_id("c1");
    exec.set_exec_id(exec_id);
    exec.mutable_spec()->set_value(R"({"args":["/bin/sh"]})");
    ASSERT_TRUE(Call("Exec", exec, &empty).ok());
  }
  start.set_exec_id("e1");  // e2 stays created: not a process yet, as with runc
  ASSERT_TRUE(Call("Start", start, &started).ok());
  task::PidsRequest pids_request;
  pids_request.set_id("c1");
  task::PidsResponse pids;
  ASSERT_TRUE(Call("Pids", pids_request, &pids).ok());
  ASSERT_EQ(pids.processes_size(), 2);
  EXPECT_EQ(pids.processes(0).pid(), 424242u);
  EXPECT_FALSE(pids.processes(0).has_info());
  EXPECT_EQ(pids.processes(1).pid(), 424242u);
  EXPECT_EQ(pids.processes(1).info().type_url(), "containerd.runc.v1.ProcessDetails");
  ::containerd::runc::v1::ProcessDetails details;
  ASSERT_TRUE(details.ParseFromString(pids.processes(1).info().value()));
  EXPECT_EQ(details.exec_id(), "e1");
  agent_.Exit("c1", "e1", 0);
  task::WaitRequest wait;
  wait.set_id("c1");
  wait.set_exec_id("e1");
  task::WaitResponse waited;
  ASSERT_TRUE(Call("Wait", wait, &waited).ok());
  ASSERT_TRUE(Call("Pids", pids_request, &pids).ok());
  EXPECT_EQ(pids.processes_size(), 1);  // the init alone once e1 exited

  task::StatsRequest stats;
  stats.set_id("c1");
  task::StatsResponse stats_response;
  // An old guest without Stats: containerd gets "not implemented".
  EXPECT_EQ(Call("Stats", stats, &stats_response).code, Code::kUnimplemented);
  ::io::containerd::cgroups::v2::Metrics metrics;
  metrics.mutable_pids()->set_current(2);
  metrics.mutable_memory()->set_usage(1 << 20);
  agent_.AnswerStats("io.containerd.cgroups.v2.Metrics", metrics.SerializeAsString());
  ASSERT_TRUE(Call("Stats", stats, &stats_response).ok());
  EXPECT_EQ(stats_response.stats().type_url(), "io.containerd.cgroups.v2.Metrics");
  ::io::containerd::cgroups::v2::Metrics answered;
  ASSERT_TRUE(answered.ParseFromString(stats_response.stats().value()));
  EXPECT_EQ(answered.pids().current(), 2u);
  EXPECT_EQ(answered.memory().usage(), 1u << 20);
  agent_.AnswerStats("io.containerd.cgroups.v1.Metrics", metrics.SerializeAsString());
  auto refused = Call("Stats", stats, &stats_response);
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message.find("refused"), std::string::npos) << refused.message;
}

}  // namespace
}  // namespace beaconbox::shim
