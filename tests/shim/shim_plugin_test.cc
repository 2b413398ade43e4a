// Sandbox and TaskService through the real plugin host (PluginHost::Load of a
// config), the shim's adapter over it (plugin_backends) and the C ABI, with
// fake-vmm-guest.so as the VMM (its VMs are a fake guest agent on a socketpair) and
// the plugin host's fixture storage and network plugins. No VM; milliseconds.
#include <gtest/gtest.h>
#include <signal.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/base/file_util.h"
#include "common/base/process_start_time.h"
#include "host/config/config.h"
#include "host/plugin_host/plugin_host.h"
#include "host/shim/plugin_backends.h"
#include "host/shim/sandbox.h"
#include "host/shim/sandbox_state.h"
#include "host/shim/shim_actions.h"
#include "host/shim/shim_record.h"
#include "host/shim/task_service.h"
#include "tests/shim/fake_backends.h"

namespace beaconbox::shim {
namespace {

namespace fs = std::filesystem;
using google::protobuf::Empty;
using ttrpc::Code;

constexpr char kTaskService[] = "containerd.task.v2.Task";
constexpr char kSpec[] =
    R"({"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["/bin/true"],"cwd":"/"}})";
const ContainerKey kC1{"default", "c1"};

std::vector<std::string> Lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class ShimPluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::MakeTestDir("bbx-shim-plugin-test");
    ASSERT_FALSE(root_.empty());
    for (const char* dir : {"run", "log", "state", "share"})
      fs::create_directories(root_ + "/" + dir);
    // The fixture plugins log the requests of release and detach through the host.
    previous_logger_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>(
        "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_));
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  void TearDown() override {
    if (client_) client_->Close();
    server_.Shutdown();
    if (serving_.joinable()) serving_.join();
    service_.reset();
    sandbox_.reset();
    plugins_.reset();
    spdlog::set_default_logger(previous_logger_);
    fs::remove_all(root_);
  }

  std::string vmm_calls_path() const { return root_ + "/vmm-calls"; }
  std::vector<std::string> vmm_calls() const { return Lines(vmm_calls_path()); }
  std::string log() {
    spdlog::default_logger()->flush();
    return log_.str();
  }

  // Loads the plugins of a config whose fake VMM plugin takes `vmm_config` (TOML lines).
  std::unique_ptr<PluginBackends> LoadPlugins(const std::string& vmm_config = "") {
    std::string text = "[paths]\nshare_dir = \"" + root_ + "/share\"\nstate_dir = \"" + root_ +
                       "/state\"\nlog_dir = \"" + root_ + "/log\"\nrun_dir = \"" + root_ +
                       "/run\"\n"
                       "[vm]\nvmm = \"fake-guest\"\nkernel_path = \"/fake/kernel\"\n"
                       "initrd_path = \"/fake/initrd\"\nguest_connect_timeout_ms = 2000\n"
                       "[network]\nmode = \"fake\"\n[storage]\ndriver = \"fake\"\n"
                       "[plugins.vmm.fake-guest]\npath = \"" FAKE_VMM_GUEST_PLUGIN
                       "\"\n"
                       "[plugins.vmm.fake-guest.config]\nrecord_path = \"" +
                       vmm_calls_path() + "\"\n" + vmm_config +
                       "\n[plugins.network.fake]\npath = \"" FIXTURE_NETWORK
                       "\"\n"
                       "[plugins.storage.fake]\npath = \"" FIXTURE_STORAGE "\"\n";
    std::string config_path = root_ + "/config.toml";
    std::ofstream(config_path) << text;
    auto config = config::LoadConfigFile(config_path);
    EXPECT_TRUE(config.ok()) << config.error().message;
    if (!config.ok()) return nullptr;
    auto host = plugin_host::PluginHost::Load(std::move(config).value());
    EXPECT_TRUE(host.ok()) << host.error().message;
    if (!host.ok()) return nullptr;
    return std::make_unique<PluginBackends>(std::move(host).value());
  }

  std::string MakeBundle(const std::string& id) {
    std::string bundle = root_ + "/bundles/" + id;
    fs::create_directories(bundle + "/rootfs");
    std::ofstream(bundle + "/config.json") << kSpec;
    return bundle;
  }

  // A Sandbox for kC1 over the plugins, as the shim's main makes it.
  void MakeSandbox(const std::string& vmm_config = "", AfterStepHook hook = nullptr) {
    plugins_ = LoadPlugins(vmm_config);
    ASSERT_TRUE(plugins_);
    bundle_ = MakeBundle(kC1.id);
    sandbox_ = std::make_unique<Sandbox>(plugins_->backends(), Status::Ok(), plugins_->layout(),
                                         events_, SandboxOptions{kC1, bundle_, std::move(hook)});
  }

  // TaskService on one end of a socketpair, a ttrpc client on the other.
  void Serve(const std::string& vmm_config = "") {
    MakeSandbox(vmm_config);
    ASSERT_TRUE(sandbox_);
    service_ = std::make_unique<TaskService>(*sandbox_, kC1.namespace_name, [] {});
    service_->Register(server_);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    serving_ = std::thread([this, fd = fds[1]] { server_.ServeConnection(UniqueFd(fd)); });
    client_ = std::make_unique<ttrpc::Client>(UniqueFd(fds[0]));
  }

  ttrpc::RpcStatus Call(const char* method, const google::protobuf::MessageLite& request,
                        google::protobuf::MessageLite* response) {
    ttrpc::CallOptions options;
    options.metadata.emplace_back("containerd-namespace-ttrpc", kC1.namespace_name);
    options.timeout = std::chrono::seconds(10);
    return ttrpc::CallProto(*client_, kTaskService, method, request, response, options);
  }

  task::CreateTaskRequest CreateRequest() {
    task::CreateTaskRequest request;
    request.set_id(kC1.id);
    request.set_bundle(bundle_);
    auto* mount = request.add_rootfs();
    mount->set_type("overlay");
    mount->set_source("overlay");
    mount->add_options("lowerdir=/a");
    return request;
  }

  // The fixtures released the rootfs and detached the network of kC1 (each logs the
  // request bytes, which carry namespace and id), the fake VMM destroyed every VM it
  // created, and no state file or VM directory is left.
  void ExpectEverythingReleased() {
    std::string text = log();
    EXPECT_GE(Count(text, "release request"), 1u) << text;
    EXPECT_GE(Count(text, "detach request"), 1u) << text;
    for (const std::string& line :
         {std::string("release request"), std::string("detach request")}) {
      size_t at = text.rfind(line);
      if (at == std::string::npos) continue;
      // The request bytes follow (a protobuf message: its first byte is a newline).
      std::string request = text.substr(at, 64);
      EXPECT_NE(request.find("default"), std::string::npos) << request;
      EXPECT_NE(request.find("c1"), std::string::npos) << request;
    }
    auto calls = vmm_calls();
    EXPECT_EQ(std::count(calls.begin(), calls.end(), "vm_create default/c1"),
              std::count(calls.begin(), calls.end(), "vm_destroy default/c1"));
    EXPECT_FALSE(fs::exists(bundle_ + "/beaconbox-state.json"));
    EXPECT_TRUE(!fs::exists(root_ + "/run/vm") || fs::is_empty(root_ + "/run/vm"));
  }

  std::string root_, bundle_;
  std::ostringstream log_;
  std::shared_ptr<spdlog::logger> previous_logger_;
  testing::RecordingEvents events_;
  std::unique_ptr<PluginBackends> plugins_;
  std::unique_ptr<Sandbox> sandbox_;
  std::unique_ptr<TaskService> service_;
  ttrpc::Server server_;
  std::thread serving_;
  std::unique_ptr<ttrpc::Client> client_;
};

TEST_F(ShimPluginTest, CreateStartWaitDeleteThroughTaskService) {
  Serve("guest_exit_status = 3");
  task::CreateTaskResponse created;
  auto create = CreateRequest();
  ASSERT_TRUE(Call("Create", create, &created).ok());
  EXPECT_NE(created.pid(), 0u);
  // The host completed the VmSpec (agent socket under the VM's run dir, console log
  // named by namespace and id) before it crossed the ABI.
  ASSERT_FALSE(vmm_calls().empty()) << log();
  EXPECT_EQ(vmm_calls().front(), "vm_create default/c1");
  EXPECT_TRUE(fs::exists(root_ + "/log/vm-default--c1.log"));

  task::StartRequest start;
  start.set_id(kC1.id);
  task::StartResponse started;
  ASSERT_TRUE(Call("Start", start, &started).ok());
  EXPECT_EQ(started.pid(), created.pid());

  task::WaitRequest wait;
  wait.set_id(kC1.id);
  task::WaitResponse waited;
  ASSERT_TRUE(Call("Wait", wait, &waited).ok());
  EXPECT_EQ(waited.exit_status(), 3u);

  task::StateRequest state_request;
  state_request.set_id(kC1.id);
  task::StateResponse state;
  ASSERT_TRUE(Call("State", state_request, &state).ok());
  EXPECT_EQ(state.status(), ::containerd::v1::types::STOPPED);
  EXPECT_EQ(state.exit_status(), 3u);

  task::DeleteRequest remove;
  remove.set_id(kC1.id);
  task::DeleteResponse removed;
  ASSERT_TRUE(Call("Delete", remove, &removed).ok());
  EXPECT_EQ(removed.exit_status(), 3u);
  EXPECT_EQ(Call("State", state_request, &state).code, Code::kNotFound);
  EXPECT_EQ(events_.topics(), (std::vector<std::string>{"/tasks/create", "/tasks/start",
                                                        "/tasks/exit", "/tasks/delete"}));
  ExpectEverythingReleased();
}

TEST_F(ShimPluginTest, KillOfACreatedTaskReports137) {
  Serve();
  task::CreateTaskResponse created;
  auto create = CreateRequest();
  ASSERT_TRUE(Call("Create", create, &created).ok());
  Empty empty;
  task::KillRequest kill;
  kill.set_id(kC1.id);
  kill.set_signal(SIGKILL);
  ASSERT_TRUE(Call("Kill", kill, &empty).ok());
  task::WaitRequest wait;
  wait.set_id(kC1.id);
  task::WaitResponse waited;
  ASSERT_TRUE(Call("Wait", wait, &waited).ok());
  EXPECT_EQ(waited.exit_status(), 137u);
  EXPECT_EQ(Call("Kill", kill, &empty).code, Code::kNotFound);
  task::DeleteRequest remove;
  remove.set_id(kC1.id);
  task::DeleteResponse removed;
  ASSERT_TRUE(Call("Delete", remove, &removed).ok());
  EXPECT_EQ(removed.exit_status(), 137u);
  ExpectEverythingReleased();
}

TEST_F(ShimPluginTest, PauseAndResumeReachTheVmmPluginWhenAloneInTheVm) {
  Serve();
  task::CreateTaskResponse created;
  auto create = CreateRequest();
  ASSERT_TRUE(Call("Create", create, &created).ok());
  task::StartRequest start;
  start.set_id(kC1.id);
  task::StartResponse started;
  ASSERT_TRUE(Call("Start", start, &started).ok());
  Empty empty;
  task::PauseRequest pause;
  pause.set_id(kC1.id);
  ASSERT_TRUE(Call("Pause", pause, &empty).ok());
  task::ResumeRequest resume;
  resume.set_id(kC1.id);
  ASSERT_TRUE(Call("Resume", resume, &empty).ok());
  auto calls = vmm_calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "vm_pause default/c1"), 1);
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "vm_resume default/c1"), 1);
  task::KillRequest kill;
  kill.set_id(kC1.id);
  kill.set_signal(SIGKILL);
  ASSERT_TRUE(Call("Kill", kill, &empty).ok());
  task::WaitRequest wait;
  wait.set_id(kC1.id);
  task::WaitResponse waited;
  ASSERT_TRUE(Call("Wait", wait, &waited).ok());
  task::DeleteRequest remove;
  remove.set_id(kC1.id);
  task::DeleteResponse removed;
  ASSERT_TRUE(Call("Delete", remove, &removed).ok());
  ExpectEverythingReleased();
}

// Fault injection through the plugin's config: a refused vm_create and a guest that
// fails Task.Create each undo the earlier steps through the plugins.
TEST_F(ShimPluginTest, AFailedVmCreateReleasesStorageAndNetwork) {
  MakeSandbox("fail_create = true");
  auto container = sandbox_->CreateContainer(kC1, CreateRequest());
  ASSERT_FALSE(container.ok());
  EXPECT_EQ(container.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(container.error().message.find("fail_create"), std::string::npos)
      << container.error().message;
  // The half-made VM is cleaned up by the plugin, named by namespace and id.
  auto calls = vmm_calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0], "vm_create refused default/c1");
  EXPECT_EQ(calls[1], "vm_cleanup_stale default/c1 " + root_ + "/run/vm/default--c1");
  ExpectEverythingReleased();
}

TEST_F(ShimPluginTest, AGuestFailingTaskCreateLeavesNothing) {
  MakeSandbox("fail_guest_method = \"Task.Create\"");
  auto container = sandbox_->CreateContainer(kC1, CreateRequest());
  ASSERT_FALSE(container.ok());
  auto calls = vmm_calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "vm_destroy default/c1"), 1);
  ExpectEverythingReleased();
}

// What `delete` does after the shim died at each step of Create: it tears down from
// the state file as that step left it, through the plugins.
TEST_F(ShimPluginTest, TheStateFileOfEveryStepLetsTeardownReleaseEverything) {
  std::vector<std::pair<std::string, std::string>> snapshots;  // step, state file
  MakeSandbox("", [&](std::string_view step, const std::map<std::string, std::string>&) {
    snapshots.emplace_back(step, *ReadSmallFile(sandbox_->state_path()));
  });
  ASSERT_TRUE(sandbox_->CreateContainer(kC1, CreateRequest()).ok());
  ASSERT_EQ(snapshots.size(), kCreateSteps.size());

  SandboxBackends backends = plugins_->backends();
  for (const auto& [step, text] : snapshots) {
    auto record = ParseRecord(text);
    ASSERT_TRUE(record.ok()) << step;
    size_t releases = Count(log(), "release request");
    size_t detaches = Count(log(), "detach request");
    size_t cleanups = 0;
    for (const auto& call : vmm_calls()) cleanups += call.starts_with("vm_cleanup_stale ");
    std::string copy = root_ + "/state-copy.json";
    ASSERT_TRUE(WriteFileAtomic(copy, text).ok());
    TeardownFromRecord(*record, backends, plugins_->layout(), nullptr, copy);
    EXPECT_EQ(Count(log(), "release request"), releases + 1) << step;
    EXPECT_EQ(Count(log(), "detach request"), detaches + (step == "rootfs-prepared" ? 0 : 1))
        << step;
    size_t cleanups_after = 0;
    for (const auto& call : vmm_calls()) cleanups_after += call.starts_with("vm_cleanup_stale ");
    EXPECT_EQ(cleanups_after - cleanups,
              step == "rootfs-prepared" || step == "network-attached" ? 0u : 1u)
        << step;
    EXPECT_FALSE(fs::exists(copy)) << step;
  }
  ASSERT_TRUE(sandbox_->DeleteContainer(kC1).ok());
  ExpectEverythingReleased();
}

// A shim killed after Create, whose `delete` action containerd never ran (containerd
// 1.7 removed the bundle first): what it left, as it left it. Its state file is under
// the state dir beside its shim record (pid of a process that is gone), its socket
// file stays, and the bundle is gone.
class DeadShimTest : public ShimPluginTest {
 protected:
  void SetUp() override {
    ShimPluginTest::SetUp();
    const char* previous = std::getenv("BEACONBOX_CONFIG");
    if (previous != nullptr) previous_config_ = previous;
  }
  // Runs `start` for the app container `id` of pod p1, whose shim answers (a listening
  // socket stands in for it, so `start` forks nothing), and checks that it released
  // the dead shim LeaveDeadShim made.
  void StartAppContainerAndExpectTheDeadShimReleased(const std::string& id) {
    LeaveDeadShim();
    const RuntimeLayout layout = plugins_->layout();
    UniqueFd pod_shim = BindSocket(*layout.ShimSocketPath(kAddress, {kC1.namespace_name, "p1"}));
    ASSERT_EQ(::listen(pod_shim.get(), 4), 0);
    const std::string app = root_ + "/bundles/" + id;
    fs::create_directories(app);
    std::ofstream(app + "/config.json")
        << R"({"ociVersion":"1.0.2","root":{"path":"rootfs"},"annotations":{)"
        << R"("io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-id":"p1"}})";
    // containerd runs `start` in the bundle, where the shim log FIFO is (a plain file
    // here): what `start` logs goes there, never to stdout or stderr.
    std::ofstream(app + "/log") << "";
    const fs::path cwd = fs::current_path();
    fs::current_path(app);
    UniqueFd saved_stdin(::dup(STDIN_FILENO));
    UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ::dup2(null_fd.get(), STDIN_FILENO);
    ::testing::internal::CaptureStdout();
    ::testing::internal::CaptureStderr();
    Status started = RunStart(Flags(id, app, "start"), "containerd-shim-beaconbox-v1");
    const std::string printed = ::testing::internal::GetCapturedStdout();
    const std::string errors = ::testing::internal::GetCapturedStderr();
    ::dup2(saved_stdin.get(), STDIN_FILENO);
    std::cin.clear();
    fs::current_path(cwd);
    auto logger = std::make_shared<spdlog::logger>(
        "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_));
    spdlog::set_default_logger(logger);  // the test's again
    ASSERT_TRUE(started.ok()) << started.error().message;
    EXPECT_EQ(printed, "unix://" + *layout.ShimSocketPath(kAddress, {kC1.namespace_name, "p1"}));
    EXPECT_EQ(errors, "");
    const std::string start_log = *ReadSmallFile(app + "/log");
    EXPECT_EQ(Count(start_log, "default/c1: its shim (pid "), 1u) << start_log;
    ExpectDeadShimReleased(start_log);
  }
  void TearDown() override {
    if (previous_config_.empty()) {
      ::unsetenv("BEACONBOX_CONFIG");
    } else {
      ::setenv("BEACONBOX_CONFIG", previous_config_.c_str(), 1);
    }
    ShimPluginTest::TearDown();
  }

  void LeaveDeadShim() {
    plugins_ = LoadPlugins();
    ASSERT_TRUE(plugins_);
    ::setenv("BEACONBOX_CONFIG", (root_ + "/config.toml").c_str(), 1);
    const RuntimeLayout layout = plugins_->layout();
    bundle_ = MakeBundle(kC1.id);
    state_path_ = layout.SandboxStatePath(kC1);
    fs::create_directories(layout.ShimRecordDir());
    sandbox_ = std::make_unique<Sandbox>(plugins_->backends(), Status::Ok(), layout, events_,
                                         SandboxOptions{kC1, bundle_, nullptr, state_path_});
    ASSERT_TRUE(sandbox_->CreateContainer(kC1, CreateRequest()).ok());
    // The shim dies: its VM with it (here: deleted), its state file as it was.
    const std::string state = *ReadSmallFile(state_path_);
    ASSERT_TRUE(sandbox_->DeleteContainer(kC1).ok());
    sandbox_.reset();
    ASSERT_TRUE(WriteFileAtomic(state_path_, state).ok());
    fs::remove_all(bundle_);
    log_offset_ = log().size();
    stale_cleanups_ = StaleCleanups();

    pid_t gone = ::fork();
    if (gone == 0) _exit(0);
    ::waitpid(gone, nullptr, 0);
    ShimRecord record{
        kC1, gone, 4242, root_ + "/config.toml", *layout.ShimSocketPath(kAddress, kC1), bundle_};
    record_path_ = layout.ShimRecordPath(kC1);
    ASSERT_TRUE(SaveShimRecord(record_path_, record).ok());
    socket_path_ = record.socket_path;
    fs::create_directories(layout.ShimSocketDir());
    BindSocket(socket_path_);  // closed at once: nobody answers
  }

  UniqueFd BindSocket(const std::string& path) {
    fs::create_directories(fs::path(path).parent_path());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return fd;
  }

  ShimFlags Flags(const std::string& id, const std::string& bundle, const std::string& action) {
    ShimFlags flags;
    flags.namespace_name = kC1.namespace_name;
    flags.id = id;
    flags.containerd_address = kAddress;
    flags.bundle = bundle;
    flags.action = action;
    return flags;
  }

  // The fake VMM's stale cleanups of c1's VM directory (a dead shim's VmInfo is the
  // plugin's, without the namespace the host adds to its own requests).
  size_t StaleCleanups() const {
    auto calls = vmm_calls();
    return std::count_if(calls.begin(), calls.end(), [this](const std::string& call) {
      return call.starts_with("vm_cleanup_stale ") &&
             call.ends_with(" " + root_ + "/run/vm/default--c1");
    });
  }

  // Everything the dead shim's state file names was released once more through the
  // plugins (rootfs and network, as `new_log` says, and the VMM's stale cleanup), and
  // its record, state file and socket are gone.
  void ExpectDeadShimReleased(const std::string& new_log) {
    EXPECT_EQ(Count(new_log, "release request"), 1u) << new_log;
    EXPECT_EQ(Count(new_log, "detach request"), 1u) << new_log;
    EXPECT_EQ(StaleCleanups(), stale_cleanups_ + 1) << new_log;
    EXPECT_FALSE(fs::exists(record_path_));
    EXPECT_FALSE(fs::exists(state_path_));
    EXPECT_FALSE(fs::exists(socket_path_));
  }

  static constexpr char kAddress[] = "/run/containerd-test/containerd.sock";
  std::string previous_config_, state_path_, record_path_, socket_path_;
  size_t log_offset_ = 0, stale_cleanups_ = 0;
};

TEST_F(DeadShimTest, DeleteReleasesFromTheShimRecordWithoutTheBundle) {
  LeaveDeadShim();
  ::testing::internal::CaptureStdout();
  Status deleted = RunDelete(Flags(kC1.id, bundle_, "delete"));
  const std::string response = ::testing::internal::GetCapturedStdout();
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_FALSE(response.empty());  // the DeleteResponse, and nothing logged into it
  ExpectDeadShimReleased(log().substr(log_offset_));
}

// The next container's `start` releases it.
TEST_F(DeadShimTest, TheNextStartSweepsIt) { StartAppContainerAndExpectTheDeadShimReleased("a1"); }

// A container started again under the id of a shim that died without its `delete`
// (containerd 1.7 removed the bundle first): that shim's leftovers are released before
// the new shim records itself under the same name, not overwritten and leaked.
TEST_F(DeadShimTest, AStartUnderTheSameIdReleasesTheDeadShimFirst) {
  StartAppContainerAndExpectTheDeadShimReleased(kC1.id);
}

// A shim that still runs (this process, with its start time) is never swept.
TEST_F(DeadShimTest, ALiveShimIsLeftToItself) {
  LeaveDeadShim();
  ShimRecord live = *LoadShimRecord(record_path_);
  live.shim_pid = ::getpid();
  live.shim_start_time = ProcessStartTime(::getpid());
  ASSERT_TRUE(SaveShimRecord(record_path_, live).ok());
  ::testing::internal::CaptureStdout();
  Status deleted = RunDelete(Flags(kC1.id, bundle_, "delete"));
  (void)::testing::internal::GetCapturedStdout();
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(Count(log().substr(log_offset_), "release request"), 0u);
  EXPECT_EQ(StaleCleanups(), stale_cleanups_);
  EXPECT_TRUE(fs::exists(record_path_));
  EXPECT_TRUE(fs::exists(state_path_));
}

}  // namespace
}  // namespace beaconbox::shim
