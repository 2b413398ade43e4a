// Fuzz target: the bytes are the guest agent's answers, as the shim consumes them.
// A scripted guest (a FAKE of vminitd's ttrpc API, served over a socketpair as the
// VM's guest channel) answers each call from the input; the shim core -- Sandbox and
// Container with their exit waiters and IO relays -- drives one container through
// create, start, exec, pids, kill, resize, pause, wait and delete, then tears the
// sandbox down. Afterwards nothing may be left prepared or attached, whatever the
// guest said (a leak aborts the run).
//
// Input: byte 0 chooses what the driver does (bit 0: a network backend, so
// ConfigureNetwork is called; bit 1: an exec; bit 2: a second container, so Pause and
// Resume go to the guest; bit 3: stdin and a terminal). Then records, each
//   u8 answer key (index into kKeys, modulo), u8 ttrpc code (modulo 17),
//   u16 little-endian length, that many bytes,
// queued per key. A unary call pops its key's next record: code 0 answers with the
// bytes as the response message, any other code fails the call with the bytes as
// its message. A ReadOutput stream sends each record with code 0 as one message and
// ends with the first other code. A key without records gets a valid answer, so an
// empty input is the happy path.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/ttrpc/ttrpc.h"
#include "host/shim/sandbox.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/shim/fake_backends.h"

namespace beaconbox::fuzz {
namespace {

using namespace shim;
using ttrpc::Code;
using ttrpc::RpcStatus;

// Answer keys: method, then container id and exec id where calls to the same
// method run concurrently (the exit waiters, the relays), so that which record
// answers which call does not depend on thread timing.
constexpr const char* kKeys[] = {
    "Guest.Hello",
    "Guest.ConfigureNetwork",
    "Guest.CreateBundle",
    "Guest.WriteInput",
    "Guest.ReadOutput c1  1",
    "Guest.ReadOutput c1  2",
    "Guest.ReadOutput c1 e1 1",
    "Guest.ReadOutput c1 e1 2",
    "Task.Create",
    "Task.Start",
    "Task.Exec",
    "Task.Wait c1 ",
    "Task.Wait c1 e1",
    "Task.Wait c2 ",
    "Task.Pids",
    "Task.Kill",
    "Task.ResizePty",
    "Task.Pause",
    "Task.Resume",
    "Task.Delete",
};
constexpr size_t kKeyCount = sizeof(kKeys) / sizeof(kKeys[0]);

struct Answer {
  Code code = Code::kOk;
  std::string bytes;
};

class Script {
 public:
  void Add(const std::string& key, Answer answer) { answers_[key].push_back(std::move(answer)); }
  // The next answer for `key`; false when the input gave none (left).
  bool Next(const std::string& key, Answer* answer) {
    std::lock_guard lock(mutex_);
    auto it = answers_.find(key);
    if (it == answers_.end() || it->second.empty()) return false;
    *answer = std::move(it->second.front());
    it->second.pop_front();
    return true;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::deque<Answer>> answers_;
};

struct Plan {
  bool network = false;
  bool exec = false;
  bool second_container = false;
  bool stdin_terminal = false;
  std::shared_ptr<Script> script = std::make_shared<Script>();
};

Plan ParseInput(const uint8_t* data, size_t size) {
  Plan plan;
  if (size == 0) return plan;
  plan.network = data[0] & 1;
  plan.exec = data[0] & 2;
  plan.second_container = data[0] & 4;
  plan.stdin_terminal = data[0] & 8;
  size_t at = 1;
  while (at + 4 <= size) {
    const char* key = kKeys[data[at] % kKeyCount];
    Code code = static_cast<Code>(data[at + 1] % 17);
    size_t length = data[at + 2] | (size_t{data[at + 3]} << 8);
    at += 4;
    length = std::min(length, size - at);
    plan.script->Add(key, {code, std::string(reinterpret_cast<const char*>(data + at), length)});
    at += length;
  }
  return plan;
}

// A unary answer: the script's, else `fallback` serialized.
RpcStatus Reply(Script& script, const std::string& key,
                const google::protobuf::MessageLite& fallback, std::string* out) {
  Answer answer;
  if (!script.Next(key, &answer)) {
    *out = fallback.SerializeAsString();
    return {};
  }
  if (answer.code != Code::kOk) return {answer.code, answer.bytes};
  *out = std::move(answer.bytes);
  return {};
}

template <typename Request>
Request Parse(std::string_view bytes) {
  Request request;
  request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
  return request;
}

// FAKE vminitd: answers from the script. Each method's fallback is what a healthy
// guest answers.
void RegisterScriptedGuest(ttrpc::Server& server, std::shared_ptr<Script> script) {
  constexpr char kGuest[] = "beaconbox.guest.v1.Guest";
  constexpr char kTask[] = "containerd.task.v2.Task";
  auto unary = [&server, script](const char* service, const char* method, auto fallback,
                                 auto key_of) {
    server.RegisterUnary(service, method,
                         [script, fallback, key_of](ttrpc::ServerContext&, std::string_view request,
                                                    std::string* out) {
                           return Reply(*script, key_of(request), fallback, out);
                         });
  };
  auto by_method = [](const char* key) {
    return [key](std::string_view) { return std::string(key); };
  };

  guestapi::HelloResponse hello;
  hello.set_protocol_version(1);
  hello.set_agent_version("fuzz");
  hello.set_kernel_release("6.1.0");
  unary(kGuest, "Hello", hello, by_method("Guest.Hello"));
  unary(kGuest, "ConfigureNetwork", guestapi::Empty(), by_method("Guest.ConfigureNetwork"));
  guestapi::CreateBundleResponse bundle;
  bundle.set_bundle("/run/beacon/bundles/c1");
  unary(kGuest, "CreateBundle", bundle, by_method("Guest.CreateBundle"));
  task::CreateTaskResponse created;
  created.set_pid(100);
  unary(kTask, "Create", created, by_method("Task.Create"));
  task::StartResponse started;
  started.set_pid(101);
  unary(kTask, "Start", started, by_method("Task.Start"));
  unary(kTask, "Exec", google::protobuf::Empty(), by_method("Task.Exec"));
  task::WaitResponse waited;
  waited.set_exit_status(0);
  unary(kTask, "Wait", waited, [](std::string_view bytes) {
    auto request = Parse<task::WaitRequest>(bytes);
    return "Task.Wait " + request.id() + " " + request.exec_id();
  });
  task::PidsResponse pids;
  pids.add_processes()->set_pid(100);
  unary(kTask, "Pids", pids, by_method("Task.Pids"));
  unary(kTask, "Kill", google::protobuf::Empty(), by_method("Task.Kill"));
  unary(kTask, "ResizePty", google::protobuf::Empty(), by_method("Task.ResizePty"));
  unary(kTask, "Pause", google::protobuf::Empty(), by_method("Task.Pause"));
  unary(kTask, "Resume", google::protobuf::Empty(), by_method("Task.Resume"));
  task::DeleteResponse deleted;
  deleted.set_pid(100);
  unary(kTask, "Delete", deleted, by_method("Task.Delete"));

  // stdio by pull calls: each ReadOutput answers one scripted ReadOutputResponse, and
  // once the script has none left, the last output with its end (the relay stops).
  server.RegisterUnary(kGuest, "ReadOutput",
                       [script](ttrpc::ServerContext&, std::string_view bytes, std::string* out) {
                         auto request = Parse<guestapi::ReadOutputRequest>(bytes);
                         guestapi::ReadOutputResponse last;
                         last.set_data("output\n");
                         last.set_eof(true);
                         return Reply(*script,
                                      "Guest.ReadOutput " + request.container_id() + " " +
                                          request.exec_id() + " " +
                                          std::to_string(request.stream()),
                                      last, out);
                       });
  // A healthy guest takes all the input; the script may answer otherwise.
  server.RegisterUnary(kGuest, "WriteInput",
                       [script](ttrpc::ServerContext&, std::string_view bytes, std::string* out) {
                         auto request = Parse<guestapi::WriteInputRequest>(bytes);
                         guestapi::WriteInputResponse all;
                         all.set_written(static_cast<uint32_t>(request.data().size()));
                         return Reply(*script, "Guest.WriteInput", all, out);
                       });
  unary(kGuest, "CloseInput", guestapi::Empty(), by_method("Guest.CloseInput"));
}

// A FAKE VM: its guest channel is a socketpair whose other end the scripted guest
// serves. Stopping it ends the guest connection.
class ScriptedVm final : public VmHandle {
 public:
  explicit ScriptedVm(std::shared_ptr<Script> script) {
    RegisterScriptedGuest(server_, std::move(script));
    auto [shim_end, guest_end] = SocketPair();
    channel_ = std::move(shim_end);
    serving_ =
        std::thread([this, fd = guest_end.Release()] { server_.ServeConnection(UniqueFd(fd)); });
  }
  ~ScriptedVm() override {
    server_.Shutdown();
    serving_.join();
  }
  Result<UniqueFd> ConnectGuest(std::chrono::milliseconds) override {
    if (!channel_) return MakeError(ErrorCode::kUnavailable, "scripted VM: connected already");
    return std::move(channel_);
  }
  Result<pluginapi::VmInfo> Info() override {
    pluginapi::VmInfo info;
    info.set_id("fuzz");
    return info;
  }
  Status Stop(std::chrono::milliseconds) override {
    server_.Shutdown();
    return Status::Ok();
  }
  Status Pause() override { return Status::Ok(); }
  Status Resume() override { return Status::Ok(); }

 private:
  ttrpc::Server server_;
  UniqueFd channel_;
  std::thread serving_;
};

class ScriptedVmm final : public VmmBackend {
 public:
  explicit ScriptedVmm(std::shared_ptr<Script> script) : script_(std::move(script)) {}
  Result<std::unique_ptr<VmHandle>> CreateVm(const pluginapi::VmSpec&) override {
    return std::unique_ptr<VmHandle>(std::make_unique<ScriptedVm>(script_));
  }
  Status CleanupStale(const pluginapi::VmInfo&) override { return Status::Ok(); }

 private:
  std::shared_ptr<Script> script_;
};

std::string g_root;

task::CreateTaskRequest CreateRequest(const std::string& id, const Plan& plan) {
  task::CreateTaskRequest request;
  request.set_id(id);
  request.set_bundle(g_root + "/bundle-" + id);
  request.set_stdout("/dev/null");
  request.set_stderr("/dev/null");
  if (plan.stdin_terminal) {
    request.set_stdin("/dev/null");
    request.set_terminal(true);
  }
  return request;
}

void Drive(const Plan& plan) {
  ScriptedVmm vmm(plan.script);
  testing::FakeStorage storage;
  testing::FakeNetwork network;
  testing::RecordingEvents events;
  SandboxBackends backends;
  backends.vmm = &vmm;
  backends.storage = &storage;
  if (plan.network) backends.network = &network;
  backends.vm.guest_connect_timeout = std::chrono::seconds(20);
  {
    Sandbox sandbox(backends, Status::Ok(), RuntimeLayout(g_root + "/run", g_root + "/log"), events,
                    SandboxOptions{{"default", "c1"}, g_root + "/bundle-c1", nullptr});
    auto created = sandbox.CreateContainer({"default", "c1"}, CreateRequest("c1", plan));
    if (created.ok()) {
      auto& container = **created;
      auto started = container.Start("");
      if (plan.exec) {
        task::ExecProcessRequest exec;
        exec.set_id("c1");
        exec.set_exec_id("e1");
        exec.set_stdout("/dev/null");
        exec.set_stderr("/dev/null");
        exec.mutable_spec()->set_value(R"({"args":["/bin/sh"],"cwd":"/"})");
        if (container.Exec(exec).ok()) {
          auto exec_started = container.Start("e1");
          (void)container.Pids();
          (void)container.Kill("e1", 9, false);
          (void)container.ResizePty("e1", 80, 24);
          (void)container.State("e1");
          // Only a started exec has an exit waiter: Wait on one whose Start failed
          // never returns (issue 10, the `authority` work), so it is not called here.
          if (exec_started.ok()) (void)container.Wait("e1");
          (void)container.DeleteExec("e1");
        }
      }
      std::shared_ptr<Container> second;
      if (plan.second_container) {
        auto made = sandbox.CreateContainer({"default", "c2"}, CreateRequest("c2", plan));
        if (made.ok()) second = *made;
      }
      (void)container.Pause();
      (void)container.Resume();
      (void)container.Pids();
      (void)container.Kill("", 15, true);
      (void)container.State("");
      (void)container.Wait("");  // the init's waiter runs from Create on
      (void)sandbox.DeleteContainer({"default", "c1"});
      if (second) (void)sandbox.DeleteContainer({"default", "c2"});
    }
    sandbox.Teardown();
  }
  if (!storage.prepared().empty() || !network.attached().empty()) {
    std::fprintf(stderr, "fuzz: teardown left %zu rootfs prepared and %zu networks attached\n",
                 storage.prepared().size(), network.attached().size());
    std::abort();
  }
}

void RemoveRoot() {
  std::error_code error;
  std::filesystem::remove_all(g_root, error);
}

}  // namespace
}  // namespace beaconbox::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace beaconbox;
  spdlog::set_level(spdlog::level::off);
  fuzz::g_root = shim::testing::MakeTestDir("bbx-fuzz-guest");
  if (fuzz::g_root.empty()) {
    std::fprintf(stderr, "fuzz: cannot make a test directory\n");
    std::abort();
  }
  std::atexit(fuzz::RemoveRoot);
  for (const char* id : {"c1", "c2"}) {
    std::string bundle = fuzz::g_root + "/bundle-" + id;
    std::filesystem::create_directories(bundle + "/rootfs");
    std::ofstream(bundle + "/config.json")
        << R"({"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["/bin/true"]}})";
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  beaconbox::fuzz::Drive(beaconbox::fuzz::ParseInput(data, size));
  return 0;
}
