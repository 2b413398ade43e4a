// The shim's side of Task.Stats (host/shim/task_metrics.h): the guest's answer is
// hostile, so only a bounded, well-formed cgroup v2 Metrics passes, rebuilt field by
// field; the VM's cost from the host's /proc rides in field 1000.
#include "host/shim/task_metrics.h"

#include <google/protobuf/io/coded_stream.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <limits>
#include <map>
#include <string>

#include "github.com/containerd/cgroups/v2/stats/metrics.pb.h"

namespace beaconbox::shim {
namespace {

namespace cgroupsv2 = ::io::containerd::cgroups::v2;

cgroupsv2::Metrics SampleMetrics() {
  cgroupsv2::Metrics metrics;
  metrics.mutable_pids()->set_current(3);
  metrics.mutable_pids()->set_limit(std::numeric_limits<uint64_t>::max());
  metrics.mutable_cpu()->set_usage_usec(123456);
  metrics.mutable_memory()->set_usage(6291456);
  metrics.mutable_memory()->set_inactive_file(786432);
  metrics.mutable_memory_events()->set_oom_kill(1);
  auto* io = metrics.mutable_io()->add_usage();
  io->set_major(254);
  io->set_rbytes(4096);
  return metrics;
}

// The fields of serialized bytes (the lite runtime has no UnknownFieldSet): number ->
// varint value or length-delimited bytes, and how many fields there were.
struct WireFields {
  int count = 0;
  std::map<int, int> times;  // number -> how many times it came
  std::map<int, uint64_t> varints;
  std::map<int, std::string> bytes;
};

WireFields ReadWireFields(const std::string& data) {
  WireFields fields;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(data.data()),
                                            static_cast<int>(data.size()));
  while (uint32_t tag = in.ReadTag()) {
    ++fields.count;
    const int number = static_cast<int>(tag >> 3);
    ++fields.times[number];
    if ((tag & 7) == 0) {
      uint64_t value = 0;
      if (!in.ReadVarint64(&value)) break;
      fields.varints[number] = value;
    } else if ((tag & 7) == 2) {
      uint32_t length = 0;
      std::string value;
      if (!in.ReadVarint32(&length) || !in.ReadString(&value, static_cast<int>(length))) break;
      fields.bytes[number] = value;
    } else {
      ADD_FAILURE() << "wire type " << (tag & 7) << " of field " << number;
      break;
    }
  }
  return fields;
}

google::protobuf::Any FromGuest(const cgroupsv2::Metrics& metrics, std::string extra = "") {
  google::protobuf::Any any;
  any.set_type_url(kCgroupV2MetricsTypeUrl);
  any.set_value(metrics.SerializeAsString() + extra);
  return any;
}

TEST(TaskMetrics, WellFormedMetricsPassUnchanged) {
  auto any = MetricsFromGuest(FromGuest(SampleMetrics()), std::nullopt);
  ASSERT_TRUE(any.ok()) << any.error().message;
  EXPECT_EQ(any->type_url(), "io.containerd.cgroups.v2.Metrics");
  cgroupsv2::Metrics metrics;
  ASSERT_TRUE(metrics.ParseFromString(any->value()));
  EXPECT_EQ(metrics.SerializeAsString(), SampleMetrics().SerializeAsString());
}

TEST(TaskMetrics, HostileAnswersAreRefusedWithOneLine) {
  auto refused = [](const google::protobuf::Any& any) {
    auto result = MetricsFromGuest(any, std::nullopt);
    if (result.ok()) return std::string("accepted");
    EXPECT_EQ(result.error().message.find('\n'), std::string::npos);
    return result.error().message;
  };
  google::protobuf::Any wrong_type = FromGuest(SampleMetrics());
  wrong_type.set_type_url("io.containerd.cgroups.v1.Metrics");
  EXPECT_NE(refused(wrong_type).find("not io.containerd.cgroups.v2.Metrics"), std::string::npos);
  wrong_type.set_type_url(std::string(100000, 'x') + "\n");
  EXPECT_LT(refused(wrong_type).size(), 400u);

  EXPECT_NE(refused(FromGuest(SampleMetrics(), std::string(kMaxGuestMetricsBytes, '\0')))
                .find("more than 65536"),
            std::string::npos);
  google::protobuf::Any garbage;
  garbage.set_type_url(kCgroupV2MetricsTypeUrl);
  garbage.set_value("\xff\xff\xff\xff");
  EXPECT_NE(refused(garbage).find("not an io.containerd.cgroups.v2.Metrics"), std::string::npos);

  cgroupsv2::Metrics many_devices = SampleMetrics();
  for (int i = 0; i < kMaxIoEntries; ++i) many_devices.mutable_io()->add_usage()->set_minor(i);
  EXPECT_NE(refused(FromGuest(many_devices)).find("IO devices"), std::string::npos);

  cgroupsv2::Metrics bad_device = SampleMetrics();
  bad_device.mutable_io()->mutable_usage(0)->set_major(uint64_t(1) << 40);
  EXPECT_NE(refused(FromGuest(bad_device)).find("device number"), std::string::npos);

  cgroupsv2::Metrics too_many_pids = SampleMetrics();
  too_many_pids.mutable_pids()->set_current(kMaxGuestPids + 1);
  EXPECT_NE(refused(FromGuest(too_many_pids)).find("pids.current"), std::string::npos);
  cgroupsv2::Metrics odd_limit = SampleMetrics();
  odd_limit.mutable_pids()->set_limit(std::numeric_limits<uint64_t>::max() - 1);
  EXPECT_NE(refused(FromGuest(odd_limit)).find("pids.max"), std::string::npos);
  odd_limit.mutable_pids()->set_limit(kMaxGuestPids);
  EXPECT_EQ(refused(FromGuest(odd_limit)), "accepted");
}

TEST(TaskMetrics, WhatTheGuestNeverFillsStaysBehind) {
  cgroupsv2::Metrics metrics = SampleMetrics();
  metrics.mutable_rdma()->add_current()->set_device(std::string(1000, 'r'));
  metrics.add_hugetlb()->set_pagesize("2MB");
  // An unknown field (number 77, a string) and one posing as the VM cost (1000); then
  // memory (field 4) and io (6) again, each holding field 77: the
  // parser merges them into the messages the shim copies.
  std::string unknown = std::string(
                            "\xea\x04\x03"
                            "abc") +
                        "\xc2\x3e\x02\x08\x01" + std::string("\x22\x06\xea\x04\x03xyz", 8) +
                        std::string("\x32\x06\xea\x04\x03xyz", 8);
  auto any = MetricsFromGuest(FromGuest(metrics, unknown), std::nullopt);
  ASSERT_TRUE(any.ok()) << any.error().message;
  cgroupsv2::Metrics passed;
  ASSERT_TRUE(passed.ParseFromString(any->value()));
  EXPECT_FALSE(passed.has_rdma());
  EXPECT_EQ(passed.hugetlb_size(), 0);
  EXPECT_EQ(passed.SerializeAsString(), SampleMetrics().SerializeAsString());
}

TEST(TaskMetrics, TheVmCostIsField1000) {
  VmCost cost;
  cost.vmm_pid = 4242;
  cost.rss_bytes = uint64_t(300) << 20;
  cost.cpu_user_usec = 1500000;
  cost.cpu_system_usec = 250000;
  auto any = MetricsFromGuest(FromGuest(SampleMetrics()), cost);
  ASSERT_TRUE(any.ok()) << any.error().message;
  cgroupsv2::Metrics metrics;
  ASSERT_TRUE(metrics.ParseFromString(any->value()));
  EXPECT_EQ(metrics.memory().usage(), 6291456u);  // containerd's fields are untouched
  const WireFields fields = ReadWireFields(any->value());
  ASSERT_EQ(fields.times.count(kVmCostField), 1u);
  ASSERT_EQ(fields.times.at(kVmCostField), 1);
  ASSERT_EQ(fields.times.size(), 6u);  // pids, cpu, memory, memory_events, io, the VM cost
  const WireFields vm = ReadWireFields(fields.bytes.at(kVmCostField));
  std::map<int, uint64_t> values = vm.varints;
  EXPECT_EQ(values[1], 4242u);
  EXPECT_EQ(values[2], uint64_t(300) << 20);
  EXPECT_EQ(values[3], 1750000u);
  EXPECT_EQ(values[4], 1500000u);
  EXPECT_EQ(values[5], 250000u);
}

TEST(VmCostTest, ParsesProcFiles) {
  // A comm may hold spaces and parentheses: fields count from the last ')'.
  const std::string stat =
      "1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 500 "
      "1000000 2000\n";
  const std::string status = "Name:\tqemu\nVmPeak:\t  9999 kB\nVmRSS:\t  307200 kB\nThreads: 3\n";
  auto cost = ParseVmCost(stat, status, 100);
  ASSERT_TRUE(cost.ok()) << cost.error().message;
  EXPECT_EQ(cost->cpu_user_usec, 2500000u);
  EXPECT_EQ(cost->cpu_system_usec, 750000u);
  EXPECT_EQ(cost->rss_bytes, uint64_t(307200) * 1024);

  EXPECT_FALSE(ParseVmCost("1234 qemu S 1", status, 100).ok());
  EXPECT_FALSE(ParseVmCost("1234 (q) S 1 2 3", status, 100).ok());
  EXPECT_FALSE(ParseVmCost(stat, "Name:\tqemu\n", 100).ok());
  EXPECT_FALSE(ParseVmCost(stat, "VmRSS:\t 12 MB\n", 100).ok());
  EXPECT_FALSE(ParseVmCost(stat, "VmRSS:\t 99999999999999999999 kB\n", 100).ok());
  EXPECT_FALSE(ParseVmCost(stat, status, 0).ok());
}

TEST(VmCostTest, ReadsALiveProcess) {
  auto cost = ReadVmCost(::getpid());
  ASSERT_TRUE(cost.ok()) << cost.error().message;
  EXPECT_EQ(cost->vmm_pid, static_cast<uint32_t>(::getpid()));
  EXPECT_GT(cost->rss_bytes, 0u);
  EXPECT_FALSE(ReadVmCost(0).ok());
  EXPECT_EQ(ReadVmCost(::getpid(), "/nonexistent").error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace beaconbox::shim
