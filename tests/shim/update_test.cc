// VM sizing at Create and Task.Update with VM hotplug, through TaskService over a real
// ttrpc connection against a Sandbox on the fakes (FAKE VMM: records the resizes).
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>

#include "host/shim/task_service.h"
#include "tests/shim/task_service_fixture.h"

namespace beaconbox::shim {
namespace {

namespace fs = std::filesystem;
using google::protobuf::Empty;
using ttrpc::Code;

constexpr uint64_t kMiB = 1 << 20;

class UpdateTest : public testing::TaskServiceFixture {
 protected:
  void SetUp() override {
    MakeBundle("bbx-update-test");
    // Seed 001: 1 vCPU / 512 MiB default, 2 vCPUs / 2 GiB maximum.
    backends_.vm.vcpus = 1;
    backends_.vm.max_vcpus = 2;
    backends_.vm.memory_mib = 512;
    backends_.vm.max_memory_mib = 2048;
    backends_.vm.guest_overhead_mib = 128;
  }
  void Start(const std::string& linux_resources, const std::string& annotations = "{}") {
    std::ofstream(bundle_ + "/config.json")
        << R"({"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["/bin/sh"]},)"
        << R"("annotations":)" << annotations << R"(,"linux":{"resources":)" << linux_resources
        << "}}";
    ServeTask();
  }
  ttrpc::RpcStatus Create() { return CreateTask("c1"); }
  ttrpc::RpcStatus Update(const std::string& resources_json) {
    task::UpdateTaskRequest request;
    request.set_id("c1");
    request.mutable_resources()->set_type_url(
        "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources");
    request.mutable_resources()->set_value(resources_json);
    Empty empty;
    return Call("Update", request, &empty);
  }
};

TEST_F(UpdateTest, TheVmIsSizedFromTheContainersResources) {
  Start(R"({"memory":{"limit":805306368},"cpu":{"quota":150000,"period":100000}})");
  ASSERT_TRUE(Create().ok());
  ASSERT_EQ(vmm_.specs.size(), 1u);
  EXPECT_EQ(vmm_.specs[0].vcpus(), 2u);
  EXPECT_EQ(vmm_.specs[0].memory_mib(), 896u);  // 768 + 128
  EXPECT_EQ(vmm_.specs[0].max_vcpus(), 2u);
  EXPECT_EQ(vmm_.specs[0].max_memory_mib(), 2048u);
}

TEST_F(UpdateTest, AnnotationsSizeTheVm) {
  Start("{}", R"({"io.beaconbox.vm.vcpus":"2","io.beaconbox.vm.memory_mib":"640"})");
  ASSERT_TRUE(Create().ok());
  ASSERT_EQ(vmm_.specs.size(), 1u);
  EXPECT_EQ(vmm_.specs[0].vcpus(), 2u);
  EXPECT_EQ(vmm_.specs[0].memory_mib(), 640u);
}

TEST_F(UpdateTest, OutOfRangeIsRefusedAtCreateLeavingNothing) {
  Start(R"({"memory":{"limit":4294967296}})");
  auto refused = Create();
  EXPECT_EQ(refused.code, Code::kInvalidArgument);
  EXPECT_NE(refused.message.find("vm.max_memory_mib"), std::string::npos) << refused.message;
  EXPECT_EQ(refused.message.find('\n'), std::string::npos);
  EXPECT_EQ(vmm_.created(), 0);
  EXPECT_TRUE(storage_.prepared().empty());
  EXPECT_FALSE(fs::exists(root_ + "/run/vm"));
}

TEST_F(UpdateTest, GrowingLimitsHotAddThenTheGuestAppliesThem) {
  Start("{}");
  ASSERT_TRUE(Create().ok());
  const std::string grow =
      R"({"memory":{"limit":1073741824},"cpu":{"quota":200000,"period":100000},)"
      R"("pids":{"limit":50}})";
  auto updated = Update(grow);
  ASSERT_TRUE(updated.ok()) << updated.message;
  // vCPUs first, then memory: 1024 + 128 MiB = 512 + 5 blocks of 128.
  auto resizes = vmm_.resizes();
  ASSERT_EQ(resizes.size(), 2u);
  EXPECT_EQ(resizes[0], (std::pair<uint32_t, uint64_t>{2, 0}));
  EXPECT_EQ(resizes[1], (std::pair<uint32_t, uint64_t>{0, 1152}));
  auto guest = agent_.last_update();
  ASSERT_TRUE(guest.has_value());
  EXPECT_EQ(guest->id(), "c1");
  EXPECT_EQ(guest->resources().value(), grow);
  EXPECT_EQ(guest->annotations().at("io.beaconbox.vm.vcpus"), "2");
  EXPECT_EQ(guest->annotations().at("io.beaconbox.vm.memory_mib"), "1152");

  // Lower limits: only the guest's cgroup changes.
  ASSERT_TRUE(Update(R"({"memory":{"limit":268435456}})").ok());
  EXPECT_EQ(vmm_.resizes().size(), 2u);
  EXPECT_EQ(agent_.last_update()->annotations().at("io.beaconbox.vm.memory_mib"), "1152");
}

TEST_F(UpdateTest, AVmmThatCannotResizeStillGetsTheLimitsApplied) {
  vmm_.can_resize = false;
  Start("{}");
  ASSERT_TRUE(Create().ok());
  ASSERT_TRUE(Update(R"({"memory":{"limit":1073741824}})").ok());
  EXPECT_TRUE(vmm_.resizes().empty());
  auto guest = agent_.last_update();
  ASSERT_TRUE(guest.has_value());
  EXPECT_EQ(guest->annotations().at("io.beaconbox.vm.memory_mib"), "512");
}

TEST_F(UpdateTest, BadValuesGetOneLineAndChangeNothing) {
  Start("{}");
  ASSERT_TRUE(Create().ok());
  for (const char* bad :
       {R"({"memory":{"limit":4294967296}})", R"({"cpu":{"quota":500000,"period":100000}})",
        R"({"memory":{"limit":"lots"}})", "not json", ""}) {
    auto refused = Update(bad);
    EXPECT_EQ(refused.code, Code::kInvalidArgument) << bad;
    EXPECT_EQ(refused.message.find('\n'), std::string::npos) << refused.message;
  }
  EXPECT_TRUE(vmm_.resizes().empty());
  EXPECT_FALSE(agent_.last_update().has_value());
  task::UpdateTaskRequest missing;
  missing.set_id("nope");
  missing.mutable_resources()->set_value("{}");
  Empty empty;
  EXPECT_EQ(Call("Update", missing, &empty).code, Code::kNotFound);
}

}  // namespace
}  // namespace beaconbox::shim
