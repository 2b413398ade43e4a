// A TaskService served over a real ttrpc connection (socketpair) against a Sandbox on
// the fakes, reached the way containerd reaches it. The TaskService and Update tests
// derive from it; each writes its own bundle config.json before ServeTask.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "host/shim/task_service.h"
#include "tests/shim/fake_backends.h"

namespace beaconbox::shim::testing {

class TaskServiceFixture : public ::testing::Test {
 protected:
  static constexpr char kService[] = "containerd.task.v2.Task";

  // Makes root_ (a fresh temp dir named after `name`) and bundle_/rootfs.
  void MakeBundle(const std::string& name) {
    root_ = MakeTestDir(name);
    ASSERT_FALSE(root_.empty());
    bundle_ = root_ + "/bundle";
    std::filesystem::create_directories(bundle_ + "/rootfs");
    backends_.vmm = &vmm_;
    backends_.storage = &storage_;
  }

  // The sandbox for container "c1" of namespace "default" on backends_, its
  // TaskService registered and served; shutdowns_ counts the service's shutdown calls.
  void ServeTask() {
    sandbox_ = std::make_unique<Sandbox>(backends_, Status::Ok(),
                                         RuntimeLayout(root_ + "/run", root_ + "/log"), events_,
                                         SandboxOptions{{"default", "c1"}, bundle_, nullptr});
    service_ = std::make_unique<TaskService>(*sandbox_, "default", [this] { ++shutdowns_; });
    service_->Register(server_);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    serving_ = std::thread([this, fd = fds[1]] { server_.ServeConnection(UniqueFd(fd)); });
    client_ = std::make_unique<ttrpc::Client>(UniqueFd(fds[0]));
  }

  void TearDown() override {
    if (client_) client_->Close();
    server_.Shutdown();
    if (serving_.joinable()) serving_.join();
    if (sandbox_) sandbox_->Teardown();
    if (!root_.empty()) std::filesystem::remove_all(root_);
  }

  ttrpc::RpcStatus Call(const char* method, const google::protobuf::MessageLite& request,
                        google::protobuf::MessageLite* response) {
    ttrpc::CallOptions options;
    options.metadata.emplace_back("containerd-namespace-ttrpc", "default");
    options.timeout = std::chrono::seconds(10);
    return ttrpc::CallProto(*client_, kService, method, request, response, options);
  }

  ttrpc::RpcStatus CreateTask(const std::string& id) {
    task::CreateTaskRequest request;
    request.set_id(id);
    request.set_bundle(bundle_);
    task::CreateTaskResponse response;
    return Call("Create", request, &response);
  }

  std::string root_, bundle_;
  SandboxBackends backends_;
  FakeGuestAgent agent_;
  FakeVmm vmm_{agent_};
  FakeStorage storage_;
  RecordingEvents events_;
  std::unique_ptr<Sandbox> sandbox_;
  std::unique_ptr<TaskService> service_;
  std::atomic<int> shutdowns_{0};
  ttrpc::Server server_;
  std::thread serving_;
  std::unique_ptr<ttrpc::Client> client_;
};

}  // namespace beaconbox::shim::testing
