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
  client_ = std::make_unique<ttrpc::Client>(std::move(*fd));

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
  EXPECT_EQ(Call(kTask, "Stats", stats, &stats_resp).code, ttrpc::Code::kUnimplemented);

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

}  // namespace
}  // namespace beaconbox::guest::testing
