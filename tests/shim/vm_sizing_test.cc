#include "host/shim/vm_sizing.h"

#include <gtest/gtest.h>

#include <limits>

namespace beaconbox::shim {
namespace {

// Seed 001's VMResourceConfig: 1 vCPU / 512 MiB default, 2 vCPU / 2 GiB maximum.
VmSettings Seed() {
  VmSettings settings;
  settings.vcpus = 1;
  settings.max_vcpus = 2;
  settings.memory_mib = 512;
  settings.max_memory_mib = 2048;
  settings.guest_overhead_mib = 128;
  return settings;
}

ContainerResources Parse(const std::string& json) {
  auto parsed = ParseLinuxResources(json);
  EXPECT_TRUE(parsed.ok()) << parsed.error().message;
  return parsed.ok() ? *parsed : ContainerResources{};
}

TEST(VmSizingTest, ParsesTheLinuxResourcesContainerdSends) {
  auto r = Parse(R"({"memory":{"limit":1073741824,"swap":2147483648},)"
                 R"("cpu":{"shares":512,"quota":150000,"period":100000},"pids":{"limit":64}})");
  EXPECT_EQ(r.memory_limit, 1073741824);
  EXPECT_EQ(r.cpu_quota, 150000);
  EXPECT_EQ(r.cpu_period, 100000u);
  EXPECT_EQ(r.cpu_shares, 512u);
  EXPECT_EQ(r.pids_limit, 64);
  auto empty = Parse("{}");
  EXPECT_FALSE(empty.memory_limit || empty.cpu_quota || empty.cpu_shares || empty.pids_limit);
  EXPECT_FALSE(Parse(R"({"memory":null,"cpu":{"quota":null}})").memory_limit);
  EXPECT_EQ(Parse(R"({"memory":{"limit":-1}})").memory_limit, -1);
}

TEST(VmSizingTest, RefusesMalformedResourcesWithOneLine) {
  for (const char* bad : {R"([])", R"({"memory":{"limit":"1G"}})", R"({"memory":[]})",
                          R"({"cpu":{"period":-5}})", R"({"cpu":{"period":10}})",
                          R"({"cpu":{"quota":10}})", R"({"cpu":{"shares":1.5}})", "not json"}) {
    auto parsed = ParseLinuxResources(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.error().message.find('\n'), std::string::npos) << parsed.error().message;
  }
}

TEST(VmSizingTest, ReadsTheSpecsLinuxResources) {
  auto r = ResourcesOfSpec(R"({"linux":{"resources":{"memory":{"limit":268435456}}}})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->memory_limit, 268435456);
  auto none = ResourcesOfSpec(R"({"process":{}})");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->memory_limit);
}

TEST(VmSizingTest, NoResourcesGiveTheDefaults) {
  auto size = BootSizeFor({}, {}, Seed());
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, (VmSize{1, 512}));
}

TEST(VmSizingTest, TheVmFollowsTheContainersLimits) {
  // --memory-limit 1 GiB --cpus 1.5: 1024 + 128 MiB, 2 vCPUs.
  auto size = BootSizeFor(Parse(R"({"memory":{"limit":1073741824},)"
                                R"("cpu":{"quota":150000,"period":100000}})"),
                          {}, Seed());
  ASSERT_TRUE(size.ok()) << size.error().message;
  EXPECT_EQ(*size, (VmSize{2, 1152}));
  // A small limit keeps the default; a limit not a whole MiB rounds up.
  EXPECT_EQ(*BootSizeFor(Parse(R"({"memory":{"limit":104857600}})"), {}, Seed()), (VmSize{1, 512}));
  EXPECT_EQ(*BootSizeFor(Parse(R"({"memory":{"limit":943718401}})"), {}, Seed()),
            (VmSize{1, 1029}));
  // Quota without period: the OCI default period 100000.
  EXPECT_EQ(BootSizeFor(Parse(R"({"cpu":{"quota":200000}})"), {}, Seed())->vcpus, 2u);
  // Shares (a weight): ceil(shares/1024), capped, never refused.
  EXPECT_EQ(BootSizeFor(Parse(R"({"cpu":{"shares":2048}})"), {}, Seed())->vcpus, 2u);
  EXPECT_EQ(BootSizeFor(Parse(R"({"cpu":{"shares":100000}})"), {}, Seed())->vcpus, 2u);
  EXPECT_EQ(BootSizeFor(Parse(R"({"cpu":{"shares":2}})"), {}, Seed())->vcpus, 1u);
  // No limit (-1).
  EXPECT_EQ(*BootSizeFor(Parse(R"({"memory":{"limit":-1},"cpu":{"quota":-1}})"), {}, Seed()),
            (VmSize{1, 512}));
}

TEST(VmSizingTest, LimitsBeyondTheMaximaAreRefusedNamingTheKey) {
  auto memory = BootSizeFor(Parse(R"({"memory":{"limit":2147483648}})"), {}, Seed());
  ASSERT_FALSE(memory.ok());
  EXPECT_NE(memory.error().message.find("vm.max_memory_mib"), std::string::npos);
  EXPECT_EQ(memory.error().message.find('\n'), std::string::npos);
  auto cpu = BootSizeFor(Parse(R"({"cpu":{"quota":300000,"period":100000}})"), {}, Seed());
  ASSERT_FALSE(cpu.ok());
  EXPECT_NE(cpu.error().message.find("vm.max_vcpus"), std::string::npos);
  // The largest limit that fits: 2048 - 128 MiB.
  EXPECT_EQ(BootSizeFor(Parse(R"({"memory":{"limit":2013265920}})"), {}, Seed())->memory_mib,
            2048u);
}

TEST(VmSizingTest, AnnotationsSetTheSizeExplicitly) {
  std::map<std::string, std::string> annotations = {{kVcpusAnnotation, "2"},
                                                    {kMemoryAnnotation, "768"}};
  EXPECT_EQ(*BootSizeFor({}, annotations, Seed()), (VmSize{2, 768}));
  // Annotations win over the resources.
  EXPECT_EQ(*BootSizeFor(Parse(R"({"memory":{"limit":1073741824}})"), annotations, Seed()),
            (VmSize{2, 768}));
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {kVcpusAnnotation, "0"},
           {kVcpusAnnotation, "3"},
           {kVcpusAnnotation, "two"},
           {kVcpusAnnotation, "-1"},
           {kVcpusAnnotation, ""},
           {kMemoryAnnotation, "63"},
           {kMemoryAnnotation, "4096"},
           {kMemoryAnnotation, "1e3"},
           {kMemoryAnnotation, "99999999999999999999"}}) {
    auto size = BootSizeFor({}, {{key, value}}, Seed());
    ASSERT_FALSE(size.ok()) << key << "=" << value;
    EXPECT_NE(size.error().message.find(key), std::string::npos) << size.error().message;
    EXPECT_EQ(size.error().message.find('\n'), std::string::npos);
  }
}

TEST(VmSizingTest, UpdateGrowsInWholeMemoryBlocksAndNeverShrinks) {
  const VmSize current{1, 512};
  // 1 GiB + 128 MiB overhead = 1152: 640 MiB more, 5 blocks of 128.
  auto grown = GrownSizeFor(Parse(R"({"memory":{"limit":1073741824}})"), current, Seed());
  ASSERT_TRUE(grown.ok()) << grown.error().message;
  EXPECT_EQ(*grown, (VmSize{1, 1152}));
  // 600 MiB + 128 = 728: 216 MiB more, rounded up to 256.
  EXPECT_EQ(GrownSizeFor(Parse(R"({"memory":{"limit":629145600}})"), current, Seed())->memory_mib,
            768u);
  // A vCPU more for a quota of 2 CPUs.
  EXPECT_EQ(*GrownSizeFor(Parse(R"({"cpu":{"quota":200000,"period":100000}})"), current, Seed()),
            (VmSize{2, 512}));
  // Lower limits: the VM stays.
  EXPECT_EQ(*GrownSizeFor(Parse(R"({"memory":{"limit":67108864},"cpu":{"quota":50000}})"),
                          VmSize{2, 1152}, Seed()),
            (VmSize{2, 1152}));
  // Pids alone change nothing.
  EXPECT_EQ(*GrownSizeFor(Parse(R"({"pids":{"limit":10}})"), current, Seed()), current);
}

TEST(VmSizingTest, UpdateBeyondTheMaximaOrTheBlockRoomIsRefused) {
  EXPECT_FALSE(GrownSizeFor(Parse(R"({"memory":{"limit":4294967296}})"), {1, 512}, Seed()).ok());
  EXPECT_FALSE(
      GrownSizeFor(Parse(R"({"cpu":{"quota":400000,"period":100000}})"), {1, 512}, Seed()).ok());
  // Booted at 2000 MiB: 48 MiB of room is no whole block; a need of 2010 cannot be met.
  auto grown = GrownSizeFor(Parse(R"({"memory":{"limit":1973420032}})"), {1, 2000}, Seed());
  ASSERT_FALSE(grown.ok());
  EXPECT_NE(grown.error().message.find("128 MiB blocks"), std::string::npos);
}

// What containerd 1.7/2's CRI puts on a pod's sandbox container (all four, decimal).
std::map<std::string, std::string> PodAnnotations(const std::string& period,
                                                  const std::string& quota,
                                                  const std::string& shares,
                                                  const std::string& memory) {
  return {{"io.kubernetes.cri.container-type", "sandbox"},
          {"io.kubernetes.cri.sandbox-cpu-period", period},
          {"io.kubernetes.cri.sandbox-cpu-quota", quota},
          {"io.kubernetes.cri.sandbox-cpu-shares", shares},
          {"io.kubernetes.cri.sandbox-memory", memory}};
}

TEST(PodSizingTest, ReadsTheSandboxAnnotationsOfContainerdsCri) {
  auto pod = PodResourcesOf(PodAnnotations("100000", "150000", "1536", "805306368"));
  ASSERT_TRUE(pod.ok()) << pod.error().message;
  ASSERT_TRUE(pod->has_value());
  EXPECT_EQ((*pod)->cpu_period, 100000u);
  EXPECT_EQ((*pod)->cpu_quota, 150000);
  EXPECT_EQ((*pod)->cpu_shares, 1536u);
  EXPECT_EQ((*pod)->memory_limit, 805306368);
  // 1.5 CPUs -> 2 vCPUs; 768 MiB + 128 MiB overhead.
  auto size = PodBootSizeFor(**pod, {}, Seed());
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, (VmSize{2, 896}));

  // No annotation: not a sized pod (the sandbox's own spec sizes the VM).
  auto none = PodResourcesOf({{"io.kubernetes.cri.container-type", "sandbox"}});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  // containerd writes 0 for what the kubelet left unset: no limit, the defaults.
  auto zeros = PodResourcesOf(PodAnnotations("0", "0", "0", "0"));
  ASSERT_TRUE(zeros.ok());
  ASSERT_TRUE(zeros->has_value());
  EXPECT_FALSE((*zeros)->cpu_period || (*zeros)->cpu_quota || (*zeros)->cpu_shares ||
               (*zeros)->memory_limit);
  EXPECT_EQ(*PodBootSizeFor(**zeros, {}, Seed()), (VmSize{1, 512}));
  auto unlimited = PodResourcesOf(PodAnnotations("100000", "-1", "2", "-1"));
  ASSERT_TRUE(unlimited.ok());
  EXPECT_EQ(*PodBootSizeFor(**unlimited, {}, Seed()), (VmSize{1, 512}));
}

TEST(PodSizingTest, APodBeyondTheMaximaBootsAtThemAndTheExplicitAnnotationsWin) {
  auto pod = PodResourcesOf(PodAnnotations("100000", "400000", "4096", "4294967296"));
  ASSERT_TRUE(pod.ok());
  EXPECT_EQ(*PodBootSizeFor(**pod, {}, Seed()), (VmSize{2, 2048}));
  auto annotations = PodAnnotations("100000", "400000", "4096", "4294967296");
  annotations["io.beaconbox.vm.vcpus"] = "1";
  annotations["io.beaconbox.vm.memory_mib"] = "640";
  EXPECT_EQ(*PodBootSizeFor(**pod, annotations, Seed()), (VmSize{1, 640}));
  annotations["io.beaconbox.vm.memory_mib"] = "9999";
  auto refused = PodBootSizeFor(**pod, annotations, Seed());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("vm.max_memory_mib"), std::string::npos);
}

TEST(PodSizingTest, BadSandboxAnnotationsGetOneLineNamingTheAnnotation) {
  struct Case {
    const char* key;
    const char* value;
  } cases[] = {
      {"io.kubernetes.cri.sandbox-memory", "1Gi"},
      {"io.kubernetes.cri.sandbox-memory", ""},
      {"io.kubernetes.cri.sandbox-memory", "-2"},
      {"io.kubernetes.cri.sandbox-memory", "99999999999999999999"},
      {"io.kubernetes.cri.sandbox-cpu-quota", "1.5"},
      {"io.kubernetes.cri.sandbox-cpu-quota", "500"},
      {"io.kubernetes.cri.sandbox-cpu-quota", " 100000"},
      {"io.kubernetes.cri.sandbox-cpu-period", "10"},
      {"io.kubernetes.cri.sandbox-cpu-period", "2000000"},
      {"io.kubernetes.cri.sandbox-cpu-shares", "-1"},
      {"io.kubernetes.cri.sandbox-cpu-shares", "0x10"},
  };
  for (const auto& c : cases) {
    auto annotations = PodAnnotations("100000", "100000", "1024", "268435456");
    annotations[c.key] = c.value;
    auto parsed = PodResourcesOf(annotations);
    ASSERT_FALSE(parsed.ok()) << c.key << "=" << c.value;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(parsed.error().message.find(c.key), std::string::npos) << parsed.error().message;
    EXPECT_EQ(parsed.error().message.find('\n'), std::string::npos) << parsed.error().message;
  }
}

TEST(PodSizingTest, AddsContainersLimits) {
  auto half = Parse(R"({"cpu":{"quota":50000,"period":100000},"memory":{"limit":268435456}})");
  auto third = Parse(R"({"cpu":{"quota":10000,"period":30000,"shares":512}})");
  auto sum = AddResources(half, third);
  // 0.5 + 1/3 CPU at the common period 100000: 50000 + 33334.
  EXPECT_EQ(sum.cpu_quota, 83334);
  EXPECT_EQ(sum.cpu_period, 100000u);
  EXPECT_EQ(VcpusNeeded(sum), 1u);
  EXPECT_EQ(sum.cpu_shares, 512u);
  EXPECT_EQ(sum.memory_limit, 268435456);
  // Two 1.5-CPU containers need 3 vCPUs; their memory adds, the overhead counts once.
  auto big = Parse(R"({"cpu":{"quota":150000,"period":100000},"memory":{"limit":536870912}})");
  auto two = AddResources(big, big);
  EXPECT_EQ(VcpusNeeded(two), 3u);
  EXPECT_EQ(MemoryNeededMib(two, Seed()), 1024u + 128u);
  // One side without a limit adds nothing, and keeps the other's period.
  auto alone = AddResources(third, Parse(R"({"memory":{"limit":-1}})"));
  EXPECT_EQ(alone.cpu_quota, 10000);
  EXPECT_EQ(alone.cpu_period, 30000u);
  EXPECT_FALSE(alone.memory_limit);
  EXPECT_FALSE(AddResources({}, {}).cpu_quota);
  // No overflow at the extremes.
  ContainerResources huge;
  huge.memory_limit = std::numeric_limits<int64_t>::max();
  huge.cpu_shares = std::numeric_limits<uint64_t>::max();
  auto capped = AddResources(huge, huge);
  EXPECT_EQ(capped.memory_limit, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(capped.cpu_shares, std::numeric_limits<uint64_t>::max());
}

}  // namespace
}  // namespace beaconbox::shim
