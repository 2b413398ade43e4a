// Boots the real guest image (Debian cloud kernel + our initrd) in QEMU/TCG and
// drives vminitd over ttrpc the way the shim does: Hello, CreateBundle on a virtio-fs
// busybox rootfs, Task.Create/Start, both output streams, Wait, Delete, PowerOff.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>

#include "beaconbox/guest/v1/guest.pb.h"
#include "common/base/agent_token.h"
#include "common/ttrpc/ttrpc.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "tests/guest/vm_harness.h"

namespace beaconbox::guest::testing {
namespace {

using namespace std::chrono_literals;
namespace guestapi = ::beaconbox::guest::v1;
namespace taskapi = ::containerd::task::v2;

constexpr char kGuest[] = "beaconbox.guest.v1.Guest";
constexpr char kTask[] = "containerd.task.v2.Task";

std::string OutputDir() {
  const char* dir = std::getenv("BEACONBOX_OUTPUT_DIR");
  return dir ? dir : "_output";
}

// A client sending `token` with every call, as the shim's GuestClient does.
std::unique_ptr<ttrpc::Client> TokenClient(UniqueFd fd, const std::string& token) {
  ttrpc::Options options;
  if (!token.empty()) options.default_metadata = {{kAgentTokenMetadataKey, token}};
  return std::make_unique<ttrpc::Client>(std::move(fd), options);
}

std::string CloudKernelRelease() {
  // The image build copies the newest /boot/vmlinuz-*-cloud-amd64; its release is the
  // newest /lib/modules/*-cloud-amd64.
  std::string newest;
  FILE* ls = ::popen(
      "ls -1 /boot | sed -n 's/^vmlinuz-\\(.*-cloud-amd64\\)$/\\1/p' | sort -V | tail -n 1", "r");
  char line[256];
  if (ls && std::fgets(line, sizeof(line), ls)) newest = line;
  if (ls) ::pclose(ls);
  while (!newest.empty() && newest.back() == '\n') newest.pop_back();
  return newest;
}

class GuestBootTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure())
      std::fprintf(stderr, "---- guest console ----\n%s\n", vm_.ConsoleLog().c_str());
    client_.reset();
    vm_.Stop();
  }

  template <typename Req, typename Resp>
  ttrpc::RpcStatus Call(const char* service, const char* method, const Req& req, Resp* resp,
                        std::chrono::milliseconds timeout = 60s) {
    ttrpc::CallOptions options;
    options.timeout = timeout;
    std::string bytes;
    ttrpc::RpcStatus status =
        client_->Call(service, method, req.SerializeAsString(), &bytes, options);
    if (status.ok() && resp) {
      EXPECT_TRUE(resp->ParseFromString(bytes)) << method;
    }
    return status;
  }

  // Pulls a process's output until EOF, as the shim's IoRelay does.
  std::string ReadStream(guestapi::Stream stream) {
    guestapi::ReadOutputRequest req;
    req.set_container_id("c1");
    req.set_stream(stream);
    req.set_max_bytes(64 * 1024);
    req.set_wait_ms(10 * 1000);
    std::string out;
    for (int calls = 0; calls < 100; ++calls) {
      guestapi::ReadOutputResponse chunk;
      ttrpc::RpcStatus status = Call(kGuest, "ReadOutput", req, &chunk);
      if (!status.ok()) {
        ADD_FAILURE() << status.message;
        return out;
      }
      out += chunk.data();
      if (chunk.eof()) return out;
    }
    ADD_FAILURE() << "no EOF after 100 ReadOutput calls";
    return out;
  }

  GuestVm vm_;
  std::unique_ptr<ttrpc::Client> client_;
};

constexpr char kConfig[] = R"({
  "ociVersion": "1.0.2",
  "process": {
    "args": ["/bin/sh", "-c", "echo out; echo err >&2; exit 7"],
    "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}
  },
  "root": {"path": "rootfs"},
  "hostname": "c1",
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]}
})";

TEST_F(GuestBootTest, RunsAContainerWithCrunOverTtrpc) {
  Status started = vm_.Start(OutputDir());
  ASSERT_TRUE(started.ok()) << started.error().message;
  auto fd = vm_.ConnectAgent(30s);
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  client_ = TokenClient(std::move(*fd), vm_.agent_token());

  // Hello: the first call waits for the guest to boot (TCG: seconds).
  guestapi::HelloRequest hello;
  hello.set_protocol_version(1);
  guestapi::HelloResponse hello_resp;
  ttrpc::RpcStatus status = Call(kGuest, "Hello", hello, &hello_resp, 120s);
  ASSERT_TRUE(status.ok()) << status.message;
  auto boot_to_hello = std::chrono::steady_clock::now() - vm_.started_at();
  std::printf(
      "[ measure ] QEMU start to Hello answered: %lld ms; guest boot to vminitd serving: %llu ms\n",
      (long long)std::chrono::duration_cast<std::chrono::milliseconds>(boot_to_hello).count(),
      (unsigned long long)hello_resp.boot_to_ready_ms());
  EXPECT_EQ(hello_resp.kernel_release(), CloudKernelRelease());
  EXPECT_EQ(hello_resp.protocol_version(), 1u);

  // A bad id is refused, not crashed on.
  guestapi::CreateBundleRequest bad;
  bad.set_container_id("../etc");
  guestapi::CreateBundleResponse bad_resp;
  status = Call(kGuest, "CreateBundle", bad, &bad_resp);
  EXPECT_EQ(status.code, ttrpc::Code::kInvalidArgument) << status.message;

  guestapi::CreateBundleRequest bundle_req;
  bundle_req.set_container_id("c1");
  bundle_req.set_config_json(kConfig);
  auto* mount = bundle_req.add_mounts();
  mount->set_type("virtiofs");
  mount->set_source("rootfs");
  mount->set_target("rootfs");
  guestapi::CreateBundleResponse bundle_resp;
  status = Call(kGuest, "CreateBundle", bundle_req, &bundle_resp);
  ASSERT_TRUE(status.ok()) << status.message;
  EXPECT_EQ(bundle_resp.bundle(), "/run/beaconbox/bundles/c1");

  taskapi::CreateTaskRequest create;
  create.set_id("c1");
  create.set_bundle(bundle_resp.bundle());
  create.set_stdout("stdout");
  create.set_stderr("stderr");
  taskapi::CreateTaskResponse create_resp;
  status = Call(kTask, "Create", create, &create_resp);
  ASSERT_TRUE(status.ok()) << status.message;
  EXPECT_GT(create_resp.pid(), 1u);

  auto out = std::async(std::launch::async, [&] { return ReadStream(guestapi::STREAM_STDOUT); });
  auto err = std::async(std::launch::async, [&] { return ReadStream(guestapi::STREAM_STDERR); });
  auto exit = std::async(std::launch::async, [&] {
    taskapi::WaitRequest wait;
    wait.set_id("c1");
    taskapi::WaitResponse wait_resp;
    ttrpc::RpcStatus s = Call(kTask, "Wait", wait, &wait_resp, 120s);
    EXPECT_TRUE(s.ok()) << s.message;
    return wait_resp;
  });

  taskapi::StartRequest start;
  start.set_id("c1");
  taskapi::StartResponse start_resp;
  status = Call(kTask, "Start", start, &start_resp);
  ASSERT_TRUE(status.ok()) << status.message;
  EXPECT_EQ(start_resp.pid(), create_resp.pid());

  EXPECT_EQ(out.get(), "out\n");
  EXPECT_EQ(err.get(), "err\n");
  taskapi::WaitResponse waited = exit.get();
  EXPECT_EQ(waited.exit_status(), 7u);
  EXPECT_GT(waited.exited_at().seconds(), 0);

  taskapi::StateRequest state;
  state.set_id("c1");
  taskapi::StateResponse state_resp;
  status = Call(kTask, "State", state, &state_resp);
  ASSERT_TRUE(status.ok()) << status.message;
  EXPECT_EQ(state_resp.status(), ::containerd::v1::types::STOPPED);

  taskapi::StatsRequest stats;
  stats.set_id("c1");
  taskapi::StatsResponse stats_resp;
  // The exited container's cgroup is there until Delete: its figures, as containerd's type.
  status = Call(kTask, "Stats", stats, &stats_resp);
  ASSERT_TRUE(status.ok()) << status.message;
  EXPECT_EQ(stats_resp.stats().type_url(), "io.containerd.cgroups.v2.Metrics");
  EXPECT_FALSE(stats_resp.stats().value().empty());

  taskapi::DeleteRequest del;
  del.set_id("c1");
  taskapi::DeleteResponse del_resp;
  status = Call(kTask, "Delete", del, &del_resp);
  ASSERT_TRUE(status.ok()) << status.message;
  EXPECT_EQ(del_resp.exit_status(), 7u);

  guestapi::RemoveBundleRequest remove;
  remove.set_container_id("c1");
  guestapi::Empty empty;
  status = Call(kGuest, "RemoveBundle", remove, &empty);
  EXPECT_TRUE(status.ok()) << status.message;

  status = Call(kGuest, "PowerOff", guestapi::PowerOffRequest(), &empty);
  EXPECT_TRUE(status.ok()) << status.message;
  EXPECT_TRUE(vm_.WaitForExit(60s)) << "QEMU still running after PowerOff";
}

// Every method vminitd serves, plus one it does not: a caller without the token must
// get kUnauthenticated from each (PowerOff included: the VM must survive it).
const std::vector<std::pair<const char*, const char*>> kEveryMethod = {
    {kGuest, "Hello"},        {kGuest, "ConfigureNetwork"},
    {kGuest, "CreateBundle"}, {kGuest, "RemoveBundle"},
    {kGuest, "ReadOutput"},   {kGuest, "WriteInput"},
    {kGuest, "PowerOff"},     {kGuest, "NoSuchMethod"},
    {kTask, "Create"},        {kTask, "Start"},
    {kTask, "Delete"},        {kTask, "Pids"},
    {kTask, "Pause"},         {kTask, "Resume"},
    {kTask, "Checkpoint"},    {kTask, "Kill"},
    {kTask, "Exec"},          {kTask, "ResizePty"},
    {kTask, "CloseIO"},       {kTask, "Update"},
    {kTask, "Wait"},          {kTask, "Stats"},
    {kTask, "Connect"},       {kTask, "Shutdown"},
    {kTask, "State"},         {kGuest, "WaitOom"}};

// Calls `method` with an empty request (streams too, as a unary call opens them).
ttrpc::RpcStatus CallEmpty(ttrpc::Client& client, const char* service, const char* method,
                           const ttrpc::Metadata& metadata = {}) {
  ttrpc::CallOptions options;
  options.timeout = 30s;
  options.metadata = metadata;
  std::string response;
  return client.Call(service, method, "", &response, options);
}

// The sealed agent channel (common/base/agent_token.h): only the holder of the VM's
// token is served. A second host process that connects while the shim is connected
// gets nothing (QEMU serves one client per socket); once it gets the socket (the
// shim gone), every method answers it kUnauthenticated, with no token or a wrong one,
// and the refused PowerOff leaves the VM running.
TEST_F(GuestBootTest, SealedAgentChannelServesOnlyTheTokenHolder) {
  Status started = vm_.Start(OutputDir());
  ASSERT_TRUE(started.ok()) << started.error().message;
  ASSERT_TRUE(IsWellFormedAgentToken(vm_.agent_token()));
  auto fd = vm_.ConnectAgent(30s);
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  client_ = TokenClient(std::move(*fd), vm_.agent_token());
  guestapi::HelloRequest hello;
  hello.set_protocol_version(1);
  guestapi::HelloResponse hello_resp;
  ttrpc::RpcStatus status = Call(kGuest, "Hello", hello, &hello_resp, 120s);
  ASSERT_TRUE(status.ok()) << status.message;

  // A second process connects while the owner is connected: no answer at all.
  auto intruder_fd = vm_.ConnectAgent(5s);
  ASSERT_TRUE(intruder_fd.ok()) << intruder_fd.error().message;
  auto intruder = TokenClient(std::move(*intruder_fd), "");
  ttrpc::CallOptions short_wait;
  short_wait.timeout = 5s;
  std::string ignored;
  status = intruder->Call(kGuest, "Hello", hello.SerializeAsString(), &ignored, short_wait);
  EXPECT_TRUE(status.code == ttrpc::Code::kDeadlineExceeded ||
              status.code == ttrpc::Code::kUnavailable)
      << "a second client of the agent socket was answered: " << status.message;
  intruder.reset();
  status = Call(kGuest, "Hello", hello, &hello_resp, 60s);
  ASSERT_TRUE(status.ok()) << "the owner lost its channel: " << status.message;

  // The owner goes away; the next process to connect gets the socket, and nothing
  // without the token. (The guest's end of virtio-serial sees no disconnect: one
  // byte stream carries every host client in turn, so an answer to the intruder's
  // queued Hello may reach the stranger; it is kUnauthenticated too.)
  client_.reset();
  auto stranger_fd = vm_.ConnectAgent(5s);
  ASSERT_TRUE(stranger_fd.ok()) << stranger_fd.error().message;
  auto stranger = TokenClient(std::move(*stranger_fd), "");
  // The hand-over from one host client to the next can swallow the first exchange
  // (see above): the stranger asks again until it is answered, and it is refused.
  for (int attempt = 0; attempt < 4; ++attempt) {
    status = CallEmpty(*stranger, kGuest, "Hello");
    if (status.code != ttrpc::Code::kDeadlineExceeded) break;
  }
  EXPECT_EQ(status.code, ttrpc::Code::kUnauthenticated)
      << "the stranger's first Hello: " << status.message;
  for (const auto& [service, method] : kEveryMethod) {
    status = CallEmpty(*stranger, service, method);
    EXPECT_EQ(status.code, ttrpc::Code::kUnauthenticated)
        << service << "/" << method << " without a token: " << status.message;
  }
  std::string wrong = vm_.agent_token();
  wrong[0] = wrong[0] == '0' ? '1' : '0';
  for (const auto& [service, method] : kEveryMethod) {
    status = CallEmpty(*stranger, service, method, {{kAgentTokenMetadataKey, wrong}});
    EXPECT_EQ(status.code, ttrpc::Code::kUnauthenticated)
        << service << "/" << method << " with a wrong token: " << status.message;
  }
  stranger.reset();

  // The refused PowerOff did not happen.
  EXPECT_FALSE(vm_.WaitForExit(5s)) << "the VM powered off on a stranger's call";
  EXPECT_EQ(vm_.ConsoleLog().find("powering off"), std::string::npos);
}

// A VMM that does not deliver a token gets an agent that refuses everything (never
// an unsealed one), whatever token the caller sends.
TEST_F(GuestBootTest, WithoutADeliveredTokenEveryCallIsRefused) {
  Status started = vm_.Start(OutputDir(), /*deliver_token=*/false);
  ASSERT_TRUE(started.ok()) << started.error().message;
  auto fd = vm_.ConnectAgent(30s);
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  auto guessed = GenerateAgentToken();
  ASSERT_TRUE(guessed.ok());
  client_ = TokenClient(std::move(*fd), *guessed);
  guestapi::HelloRequest hello;
  hello.set_protocol_version(1);
  guestapi::HelloResponse hello_resp;
  ttrpc::RpcStatus status = Call(kGuest, "Hello", hello, &hello_resp, 120s);
  EXPECT_EQ(status.code, ttrpc::Code::kUnauthenticated) << status.message;
  EXPECT_NE(status.message.find("no agent token"), std::string::npos) << status.message;
  EXPECT_NE(vm_.ConsoleLog().find("no agent token"), std::string::npos);
}

}  // namespace
}  // namespace beaconbox::guest::testing
