#include "guest/vminitd/hotplug.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

namespace beaconbox::guest {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

TEST(HotplugTest, CountsKernelCpuLists) {
  EXPECT_EQ(CountCpuList("0"), 1u);
  EXPECT_EQ(CountCpuList("0-1"), 2u);
  EXPECT_EQ(CountCpuList("0-3,5,7-8"), 7u);
  EXPECT_EQ(CountCpuList(""), 0u);
  for (const char* bad : {"x", "3-1", "0-", ",", "0,,1", "0-99999"}) {
    EXPECT_FALSE(CountCpuList(bad).has_value()) << bad;
  }
}

// A sysfs look-alike: the test plays the kernel (a write of "1" to cpuN/online makes
// CPU N online in the list; "online" to a memory block's state sticks).
class FakeSysfs : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("bbx-hotplug-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "devices/system/cpu");
    fs::create_directories(root_ / "devices/system/memory");
    Write("devices/system/memory/block_size_bytes", "8000000\n");  // 128 MiB
  }
  void TearDown() override { fs::remove_all(root_); }
  void Write(const std::string& path, const std::string& text) {
    fs::create_directories((root_ / path).parent_path());
    std::ofstream(root_ / path) << text;
  }
  std::string Read(const std::string& path) {
    std::ifstream in(root_ / path);
    std::string text;
    std::getline(in, text);
    return text;
  }
  fs::path root_;
};

TEST_F(FakeSysfs, OnlinesHotAddedCpus) {
  Write("devices/system/cpu/cpu0/.keep", "");  // cpu0 has no online file (boot CPU)
  Write("devices/system/cpu/cpu1/online", "0\n");
  Write("devices/system/cpu/online", "0\n");
  // The "kernel": once cpu1/online says 1, the online list grows.
  std::thread kernel([&] {
    for (int i = 0; i < 200 && Read("devices/system/cpu/cpu1/online") != "1"; ++i) {
      std::this_thread::sleep_for(10ms);
    }
    Write("devices/system/cpu/online", "0-1\n");
  });
  Status status = OnlineCpus(2, 5s, root_.string());
  kernel.join();
  EXPECT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ(Read("devices/system/cpu/cpu1/online"), "1");
}

TEST_F(FakeSysfs, CpusThatNeverComeFailNamingTheCount) {
  Write("devices/system/cpu/online", "0\n");
  Status status = OnlineCpus(2, 100ms, root_.string());
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("only 1 of 2 vCPUs"), std::string::npos)
      << status.error().message;
}

TEST_F(FakeSysfs, OnlinesOfflineMemoryBlocks) {
  for (int i = 0; i < 4; ++i)
    Write("devices/system/memory/memory" + std::to_string(i) + "/state", "online\n");
  Write("devices/system/memory/memory40/state", "offline\n");
  EXPECT_TRUE(OnlineMemory(512, 1s, root_.string()).ok());
  EXPECT_TRUE(OnlineMemory(640, 1s, root_.string()).ok());
  EXPECT_EQ(Read("devices/system/memory/memory40/state"), "online");
  Status status = OnlineMemory(768, 100ms, root_.string());
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("only 640 of 768 MiB"), std::string::npos)
      << status.error().message;
}

}  // namespace
}  // namespace beaconbox::guest

namespace beaconbox::guest {
namespace {

using Writes = std::vector<std::pair<std::string, std::string>>;

Writes WritesFor(const std::string& json, const std::string& cpu_max = "max 100000\n") {
  auto writes = CgroupWrites(nlohmann::json::parse(json), cpu_max);
  EXPECT_TRUE(writes.ok());
  return writes.ok() ? *writes : Writes{};
}

TEST(CgroupWritesTest, WritesWhatRuncWrites) {
  EXPECT_EQ(WritesFor(R"({"memory":{"limit":1073741824},"pids":{"limit":50}})"),
            (Writes{{"memory.max", "1073741824"}, {"pids.max", "50"}}));
  EXPECT_EQ(WritesFor(R"({"memory":{"limit":-1},"pids":{"limit":0}})"),
            (Writes{{"memory.max", "max"}, {"pids.max", "max"}}));
  EXPECT_EQ(WritesFor(R"({"cpu":{"quota":200000,"period":100000}})"),
            (Writes{{"cpu.max", "200000 100000"}}));
  // What is not given stays: the period, then the quota.
  EXPECT_EQ(WritesFor(R"({"cpu":{"quota":50000}})", "150000 200000\n"),
            (Writes{{"cpu.max", "50000 200000"}}));
  EXPECT_EQ(WritesFor(R"({"cpu":{"period":50000}})", "150000 200000\n"),
            (Writes{{"cpu.max", "150000 50000"}}));
  EXPECT_EQ(WritesFor(R"({"cpu":{"quota":-1}})"), (Writes{{"cpu.max", "max 100000"}}));
  // Shares: runc's conversion to cpu.weight (1024 -> 39, 2 -> 1, 262144 -> 10000).
  EXPECT_EQ(WritesFor(R"({"cpu":{"shares":1024}})"), (Writes{{"cpu.weight", "39"}}));
  EXPECT_EQ(WritesFor(R"({"cpu":{"shares":2}})"), (Writes{{"cpu.weight", "1"}}));
  EXPECT_EQ(WritesFor(R"({"cpu":{"shares":262144}})"), (Writes{{"cpu.weight", "10000"}}));
  EXPECT_TRUE(WritesFor(R"({"memory":{"limit":"x"},"devices":[]})").empty());
}

}  // namespace
}  // namespace beaconbox::guest
