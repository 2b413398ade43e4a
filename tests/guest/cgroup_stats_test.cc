// The guest's cgroup v2 parsing (guest/vminitd/cgroup_stats.h): real kernel output,
// then odd and hostile contents, each bounded and never read as a number it is not.
#include "guest/vminitd/cgroup_stats.h"

#include <gtest/gtest.h>

#include <limits>

namespace beaconbox::guest {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

// Linux 6.1's files of a container cgroup (trimmed).
constexpr char kCpuStat[] =
    "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 7\n"
    "nr_throttled 2\nthrottled_usec 999\n";
constexpr char kMemoryStat[] =
    "anon 4321792\nfile 1048576\nkernel_stack 32768\nslab 262144\nsock 0\nshmem 0\n"
    "file_mapped 524288\nfile_dirty 0\nfile_writeback 0\nanon_thp 0\ninactive_anon 4194304\n"
    "active_anon 4096\ninactive_file 786432\nactive_file 262144\nunevictable 0\n"
    "slab_reclaimable 131072\nslab_unreclaimable 131072\npgfault 2345\npgmajfault 3\n"
    "workingset_refault_anon 0\nworkingset_refault_file 0\n";
constexpr char kIoStat[] =
    "254:0 rbytes=1048576 wbytes=4096 rios=12 wios=1 dbytes=0 dios=0\n"
    "7:0 rbytes=512 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n";

TEST(CgroupValue, NumbersMaxAndNothingElse) {
  EXPECT_EQ(ParseCgroupValue("123\n"), 123u);
  EXPECT_EQ(ParseCgroupValue("  42  "), 42u);
  EXPECT_EQ(ParseCgroupValue("max\n"), kMax);
  EXPECT_EQ(ParseCgroupValue("18446744073709551615"), kMax);
  EXPECT_EQ(ParseCgroupValue("-1"), 0u);  // as containerd reads a negative value
  EXPECT_EQ(ParseCgroupValue("18446744073709551616"), std::nullopt);  // overflow
  EXPECT_EQ(ParseCgroupValue("99999999999999999999999"), std::nullopt);
  EXPECT_EQ(ParseCgroupValue(""), std::nullopt);
  EXPECT_EQ(ParseCgroupValue("\n"), std::nullopt);
  EXPECT_EQ(ParseCgroupValue("12 34"), std::nullopt);
  EXPECT_EQ(ParseCgroupValue("0x10"), std::nullopt);
  EXPECT_EQ(ParseCgroupValue("+5"), std::nullopt);
  EXPECT_EQ(ParseCgroupValue("-"), std::nullopt);
  EXPECT_EQ(ParseCgroupValue("maximum"), std::nullopt);
  EXPECT_EQ(ParseCgroupValue(std::string_view("1\0"
                                              "2",
                                              3)),
            std::nullopt);
}

TEST(CgroupFlatKeyed, ReadsKernelOutputAndSkipsWhatIsNotKeyValue) {
  auto values = ParseFlatKeyed(kCpuStat);
  EXPECT_EQ(values.size(), 6u);
  EXPECT_EQ(values["usage_usec"], 123456u);
  values = ParseFlatKeyed(
      "good 1\nthree words here\nonlykey\nUpper 5\nbad-key 6\nneg -3\nhuge "
      "99999999999999999999999\n"
      "\n\n  spaced\t 7 \nmaxed max\n" +
      std::string(65, 'k') + " 8\n");
  EXPECT_EQ(values.size(), 4u);
  EXPECT_EQ(values["good"], 1u);
  EXPECT_EQ(values["neg"], 0u);
  EXPECT_EQ(values["spaced"], 7u);
  EXPECT_EQ(values["maxed"], kMax);
  EXPECT_EQ(values.count("huge"), 0u);
  EXPECT_EQ(values.count("Upper"), 0u);
}

TEST(CgroupFlatKeyed, KeepsAtMostTheBound) {
  std::string many;
  for (int i = 0; i < 10000; ++i) many += "k" + std::to_string(i) + " " + std::to_string(i) + "\n";
  EXPECT_EQ(ParseFlatKeyed(many).size(), kMaxFlatKeyedEntries);
  EXPECT_TRUE(ParseFlatKeyed(std::string(1 << 16, '\n')).empty());
  EXPECT_TRUE(ParseFlatKeyed(std::string(1 << 16, ' ')).empty());
}

TEST(CgroupIoStat, ReadsDevicesAndSkipsMalformedLines) {
  auto entries = ParseIoStat(kIoStat);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].major(), 254u);
  EXPECT_EQ(entries[0].minor(), 0u);
  EXPECT_EQ(entries[0].rbytes(), 1048576u);
  EXPECT_EQ(entries[0].wbytes(), 4096u);
  EXPECT_EQ(entries[0].rios(), 12u);
  EXPECT_EQ(entries[0].wios(), 1u);
  entries = ParseIoStat(
      "nodevice rbytes=1\n8 rbytes=1\n:1 rbytes=1\n1: rbytes=1\n99999999999:1 rbytes=1\n"
      "8:0\n8:16 rbytes=x wbytes=-1 rios=5 junk wios==3\n");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].minor(), 16u);
  EXPECT_EQ(entries[0].rbytes(), 0u);
  EXPECT_EQ(entries[0].rios(), 5u);
  std::string many;
  for (int i = 0; i < 1000; ++i) many += "8:" + std::to_string(i) + " rbytes=1\n";
  EXPECT_EQ(ParseIoStat(many).size(), kMaxIoDevices);
}

TEST(CgroupMetrics, FromTheKernelsFiles) {
  CgroupFiles files;
  files.cpu_stat = kCpuStat;
  files.memory_stat = kMemoryStat;
  files.memory_current = "6291456\n";
  files.memory_max = "67108864\n";
  files.memory_swap_current = "0\n";
  files.memory_swap_max = "max\n";
  files.memory_events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\n";
  files.pids_current = "3\n";
  files.pids_max = "max\n";
  files.io_stat = kIoStat;
  auto metrics = MetricsFromCgroupFiles(files);
  EXPECT_EQ(metrics.pids().current(), 3u);
  EXPECT_EQ(metrics.pids().limit(), kMax);
  EXPECT_EQ(metrics.cpu().usage_usec(), 123456u);
  EXPECT_EQ(metrics.cpu().user_usec(), 100000u);
  EXPECT_EQ(metrics.cpu().system_usec(), 23456u);
  EXPECT_EQ(metrics.cpu().nr_throttled(), 2u);
  EXPECT_EQ(metrics.cpu().throttled_usec(), 999u);
  EXPECT_EQ(metrics.memory().usage(), 6291456u);
  EXPECT_EQ(metrics.memory().usage_limit(), 67108864u);
  EXPECT_EQ(metrics.memory().swap_limit(), kMax);
  EXPECT_EQ(metrics.memory().anon(), 4321792u);
  EXPECT_EQ(metrics.memory().inactive_file(), 786432u);
  EXPECT_EQ(metrics.memory().pgmajfault(), 3u);
  EXPECT_EQ(metrics.memory_events().max(), 12u);
  EXPECT_EQ(metrics.memory_events().oom_kill(), 1u);
  EXPECT_EQ(metrics.io().usage_size(), 2);
}

TEST(CgroupMetrics, MissingOrGarbledFilesGiveZeros) {
  auto metrics = MetricsFromCgroupFiles(CgroupFiles{});
  EXPECT_EQ(metrics.pids().current(), 0u);
  EXPECT_EQ(metrics.memory().usage(), 0u);
  EXPECT_FALSE(metrics.has_memory_events());
  EXPECT_EQ(metrics.io().usage_size(), 0);
  CgroupFiles garbled;
  garbled.memory_current = "lots\n";
  garbled.pids_current = "-7";
  garbled.cpu_stat = std::string(1000, '\xff');
  garbled.memory_events = "oom_kill\n";
  metrics = MetricsFromCgroupFiles(garbled);
  EXPECT_EQ(metrics.memory().usage(), 0u);
  EXPECT_EQ(metrics.pids().current(), 0u);
  EXPECT_EQ(metrics.cpu().usage_usec(), 0u);
  EXPECT_FALSE(metrics.has_memory_events());
}

TEST(CgroupOom, CountsOomKills) {
  EXPECT_EQ(OomKillCount("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n"), 2u);
  EXPECT_EQ(OomKillCount("oom 5\n"), 0u);
  EXPECT_EQ(OomKillCount(""), 0u);
  EXPECT_EQ(OomKillCount("oom_kill many\n"), 0u);
}

TEST(CgroupDir, FromProcCgroup) {
  EXPECT_EQ(*CgroupDirFromProcCgroup("0::/default/c1\n"), "/sys/fs/cgroup/default/c1");
  EXPECT_EQ(*CgroupDirFromProcCgroup("12:memory:/old\n0::/ns/id\n"), "/sys/fs/cgroup/ns/id");
  EXPECT_EQ(CgroupDirFromProcCgroup("").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(CgroupDirFromProcCgroup("1:name=systemd:/x\n").error().code, ErrorCode::kNotFound);
  for (const char* bad : {"0::/\n", "0::\n", "0::relative\n", "0::/a/../../etc\n", "0::/a//b\n",
                          "0::/a/./b\n", "0::/..\n", "0::/a/\n"}) {
    auto dir = CgroupDirFromProcCgroup(bad);
    EXPECT_FALSE(dir.ok()) << bad;
    if (!dir.ok()) {
      EXPECT_EQ(dir.error().code, ErrorCode::kInvalidArgument) << bad;
      EXPECT_EQ(dir.error().message.find('\n'), std::string::npos);
    }
  }
  EXPECT_FALSE(CgroupDirFromProcCgroup(std::string("0::/a\0b\n", 8)).ok());
  EXPECT_FALSE(CgroupDirFromProcCgroup("0::/" + std::string(5000, 'a')).ok());
}

}  // namespace
}  // namespace beaconbox::guest
