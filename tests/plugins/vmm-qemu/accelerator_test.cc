// The accelerator choice of the vmm-qemu plugin: verdict key and cache, verdict
// parsing, and the KVM probe against FAKE QEMU scripts (fake-qemu-kvm-*.sh, named as
// fakes: this host has no working KVM). They stand in for QEMU only under KVM; the real
// QEMU runs the TCG VM of the retry test.
#include "plugins/vmm-qemu/accelerator.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "plugins/vmm-qemu/qemu_vm.h"

namespace beaconbox::qemu {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kFakeDir = BBX_FAKE_QEMU_DIR;
const std::string kMsrAbortFake = kFakeDir + "/fake-qemu-kvm-msr-abort.sh";
const std::string kSilentFake = kFakeDir + "/fake-qemu-kvm-silent.sh";
const std::string kBootsFake = kFakeDir + "/fake-qemu-kvm-boots.sh";
constexpr char kRealQemu[] = "/usr/bin/qemu-system-x86_64";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class AcceleratorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/bbx-accel-test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    probe_log_ = dir_ + "/probes";
    ::setenv("BEACONBOX_FAKE_QEMU_PROBE_LOG", probe_log_.c_str(), 1);
    // Stand-in kernel and initrd: the fakes never read them under KVM.
    std::ofstream(dir_ + "/kernel") << "kernel";
    std::ofstream(dir_ + "/initrd") << "initrd";
    settings_.kvm_device = "/dev/null";  // opens: the probe path runs
    settings_.cache_dir = dir_ + "/state/vmm-qemu";
    settings_.probe_timeout = 5000ms;
    target_.binary = kMsrAbortFake;
    target_.kernel = dir_ + "/kernel";
    target_.initrd = dir_ + "/initrd";
    scratch_ = dir_ + "/run";
    fs::create_directories(scratch_);
  }
  void TearDown() override {
    ::unsetenv("BEACONBOX_FAKE_QEMU_PROBE_LOG");
    std::error_code error;
    fs::remove_all(dir_, error);
  }
  // Pids the fakes logged as "kvm start pid N".
  std::vector<pid_t> ProbePids() {
    std::vector<pid_t> pids;
    std::ifstream in(probe_log_);
    std::string line;
    while (std::getline(in, line)) pids.push_back(std::stoi(line.substr(line.rfind(' ') + 1)));
    return pids;
  }
  std::string VerdictFile() {
    auto key = VerdictKeyText(target_, settings_.kvm_device);
    EXPECT_TRUE(key.ok());
    return VerdictPath(settings_.cache_dir, VerdictKey(key.ok() ? *key : ""));
  }

  std::string dir_, probe_log_, scratch_;
  AcceleratorSettings settings_;
  ProbeTarget target_;
};

TEST(SanitizeLineTest, OneBoundedPrintableLine) {
  EXPECT_EQ(SanitizeLine("a\nb\r\nc\x1b[31m\xff", 100), "a | b | c?[31m?");
  EXPECT_EQ(SanitizeLine("\n\nfirst\n\n", 100), "first");
  std::string long_text(10000, 'x');
  std::string line = SanitizeLine(long_text, 50);
  EXPECT_EQ(line.size(), 50u);
  EXPECT_TRUE(line.ends_with("..."));
}

TEST_F(AcceleratorTest, KeyCoversBootBinaryKernelInitrdAndDevice) {
  auto text = VerdictKeyText(target_, "/dev/null");
  ASSERT_TRUE(text.ok()) << text.error().message;
  std::string boot_id = ReadFile("/proc/sys/kernel/random/boot_id");
  boot_id.erase(boot_id.find_last_not_of('\n') + 1);
  EXPECT_NE(text->find("boot_id=" + boot_id), std::string::npos) << *text;
  EXPECT_NE(text->find("binary=" + kMsrAbortFake), std::string::npos);
  EXPECT_NE(text->find("kvm_device=/dev/null rdev=1:3"), std::string::npos) << *text;
  const std::string key = VerdictKey(*text);
  EXPECT_EQ(key.size(), 16u);
  EXPECT_EQ(key, VerdictKey(*VerdictKeyText(target_, "/dev/null")));  // stable

  // A rebuilt kernel (new mtime and size) is a new key.
  std::ofstream(dir_ + "/kernel") << "kernel, rebuilt";
  EXPECT_NE(key, VerdictKey(*VerdictKeyText(target_, "/dev/null")));
  ProbeTarget other_binary = target_;
  other_binary.binary = kSilentFake;
  EXPECT_NE(VerdictKey(*VerdictKeyText(target_, "/dev/null")),
            VerdictKey(*VerdictKeyText(other_binary, "/dev/null")));
  EXPECT_NE(VerdictKey(*VerdictKeyText(target_, "/dev/null")),
            VerdictKey(*VerdictKeyText(target_, "/dev/zero")));

  ProbeTarget missing = target_;
  missing.kernel = dir_ + "/no-kernel";
  auto failed = VerdictKeyText(missing, "/dev/null");
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().message.find("no-kernel"), std::string::npos);
}

TEST_F(AcceleratorTest, VerdictRoundTripsAndIsWrittenAtomically) {
  KvmVerdict verdict;
  verdict.usable = false;
  verdict.reason = "qemu-system-x86_64: error: failed to set MSR 0x10a";
  verdict.probe_ms = 12;
  verdict.probed_at = 1700000000;
  verdict.boot_id = "b";
  verdict.kvm_device = "/dev/kvm";
  verdict.binary = "/usr/bin/qemu";
  verdict.kernel = "/k";
  verdict.initrd = "/i";
  const std::string path = dir_ + "/kvm-verdict-0123456789abcdef.json";
  auto absent = ReadVerdict(path);
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());

  ASSERT_TRUE(WriteVerdict(path, verdict).ok());
  auto read = ReadVerdict(path);
  ASSERT_TRUE(read.ok() && read->has_value()) << (read.ok() ? "" : read.error().message);
  const KvmVerdict& back = **read;
  EXPECT_FALSE(back.usable);
  EXPECT_EQ(back.reason, verdict.reason);
  EXPECT_EQ(back.probe_ms, 12);
  EXPECT_EQ(back.probed_at, 1700000000);
  EXPECT_EQ(back.kvm_device, "/dev/kvm");
  EXPECT_EQ(back.kernel, "/k");
  for (const auto& entry : fs::directory_iterator(dir_)) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << "temp file left";
  }
  InvalidateVerdict(path);
  EXPECT_FALSE(fs::exists(path));
  InvalidateVerdict(path);  // twice is fine
}

TEST(VerdictParseTest, RefusesWhatIsNotAVerdict) {
  EXPECT_FALSE(ParseVerdict("").ok());
  EXPECT_FALSE(ParseVerdict("not json").ok());
  EXPECT_FALSE(ParseVerdict("[1,2]").ok());
  EXPECT_FALSE(ParseVerdict(R"({"usable": true})").ok());                 // no version
  EXPECT_FALSE(ParseVerdict(R"({"version": 2, "usable": true})").ok());   // unknown version
  EXPECT_FALSE(ParseVerdict(R"({"version": 1, "usable": "yes"})").ok());  // not a bool
  auto minimal = ParseVerdict(R"({"version": 1, "usable": true, "reason": 7})");
  ASSERT_TRUE(minimal.ok());
  EXPECT_TRUE(minimal->usable);
  EXPECT_EQ(minimal->reason, "");
  // A hostile reason comes back as one bounded printable line.
  auto hostile = ParseVerdict(R"({"version": 1, "usable": false, "reason": "a\nb\u001b)" +
                              std::string(5000, 'x') + R"("})");
  ASSERT_TRUE(hostile.ok());
  EXPECT_LE(hostile->reason.size(), 480u);
  EXPECT_EQ(hostile->reason.find('\n'), std::string::npos);
  EXPECT_EQ(hostile->reason.find('\x1b'), std::string::npos);
}

TEST_F(AcceleratorTest, OversizedOrCorruptCacheFileIsAnError) {
  const std::string path = dir_ + "/kvm-verdict-x.json";
  std::ofstream(path) << std::string(100000, ' ');
  EXPECT_FALSE(ReadVerdict(path).ok());
  std::ofstream(path) << "{";
  EXPECT_FALSE(ReadVerdict(path).ok());
}

TEST_F(AcceleratorTest, TcgNeverProbes) {
  settings_.mode = "tcg";
  settings_.kvm_device = dir_ + "/no-such-kvm";
  auto choice = ChooseAccelerator(settings_, target_, scratch_);
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->accelerator, "tcg");
  EXPECT_EQ(choice->source, AcceleratorSource::kConfig);
  EXPECT_TRUE(ProbePids().empty());
  EXPECT_FALSE(fs::exists(settings_.cache_dir));
  EXPECT_EQ(CheckLineFor(settings_, choice).level, CheckLine::Level::kOk);
}

// The real QEMU and a KVM device that is not there: TCG at once, no probe, no cache.
TEST_F(AcceleratorTest, NoKvmDeviceIsTcgWithoutProbing) {
  if (fs::exists("/dev/kvm")) GTEST_SKIP() << "this host has a /dev/kvm";
  settings_.kvm_device = "/dev/kvm";
  target_.binary = kRealQemu;
  auto choice = ChooseAccelerator(settings_, target_, scratch_);
  ASSERT_TRUE(choice.ok()) << choice.error().message;
  EXPECT_EQ(choice->accelerator, "tcg");
  // No probe: it would have left a verdict in the cache dir.
  EXPECT_EQ(choice->source, AcceleratorSource::kNoDevice);
  EXPECT_FALSE(choice->kvm_broken);
  EXPECT_NE(choice->why.find("no usable /dev/kvm (No such file or directory)"), std::string::npos)
      << choice->why;
  EXPECT_FALSE(fs::exists(settings_.cache_dir));
  EXPECT_TRUE(fs::is_empty(scratch_));
  CheckLine line = CheckLineFor(settings_, choice);
  EXPECT_EQ(line.level, CheckLine::Level::kWarn);
  EXPECT_NE(line.text.find("no usable /dev/kvm"), std::string::npos);
  EXPECT_NE(line.text.find("containers use TCG (slow)"), std::string::npos);

  settings_.mode = "kvm";
  auto refused = ChooseAccelerator(settings_, target_, scratch_);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("accelerator = \"kvm\" but /dev/kvm does not open"),
            std::string::npos)
      << refused.error().message;
  EXPECT_EQ(CheckLineFor(settings_, refused).level, CheckLine::Level::kFail);
}

TEST_F(AcceleratorTest, MsrAbortFallsBackToTcgWithQemusReasonAndIsCached) {
  auto choice = ChooseAccelerator(settings_, target_, scratch_);
  ASSERT_TRUE(choice.ok()) << choice.error().message;
  EXPECT_EQ(choice->accelerator, "tcg");
  EXPECT_TRUE(choice->kvm_broken);
  EXPECT_EQ(choice->source, AcceleratorSource::kProbe);
  EXPECT_NE(choice->why.find("KVM present but cannot boot the guest: qemu-system-x86_64: error: "
                             "failed to set MSR 0x10a"),
            std::string::npos)
      << choice->why;
  EXPECT_NE(choice->why.find("exit status 134"), std::string::npos) << choice->why;
  EXPECT_EQ(choice->why.find('\n'), std::string::npos);
  EXPECT_EQ(ProbePids().size(), 1u);
  EXPECT_TRUE(fs::is_empty(scratch_)) << "probe files left";

  // The verdict is cached under the key; the next VM does not probe.
  ASSERT_EQ(choice->verdict_path, VerdictFile());
  auto cached = ReadVerdict(choice->verdict_path);
  ASSERT_TRUE(cached.ok() && cached->has_value());
  EXPECT_FALSE((*cached)->usable);
  EXPECT_EQ((*cached)->kvm_device, "/dev/null");
  auto again = ChooseAccelerator(settings_, target_, scratch_);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->accelerator, "tcg");
  EXPECT_EQ(again->source, AcceleratorSource::kCachedVerdict);
  EXPECT_NE(again->why.find("MSR 0x10a"), std::string::npos);
  EXPECT_EQ(ProbePids().size(), 1u);

  CheckLine line = CheckLineFor(settings_, again);
  EXPECT_EQ(line.level, CheckLine::Level::kWarn);
  EXPECT_TRUE(line.text.starts_with("KVM present but cannot boot the guest: qemu-system-x86_64"))
      << line.text;
  EXPECT_NE(line.text.find("; containers use TCG (slow): "), std::string::npos) << line.text;

  // accelerator = "kvm" never falls back: one line with QEMU's reason.
  settings_.mode = "kvm";
  auto refused = ChooseAccelerator(settings_, target_, scratch_);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.error().message.starts_with(
      "accelerator = \"kvm\" but KVM cannot boot the guest: qemu-system-x86_64: error: failed "
      "to set MSR 0x10a"))
      << refused.error().message;
  EXPECT_TRUE(refused.error().message.ends_with(": set accelerator = \"auto\" or \"tcg\""));
  EXPECT_EQ(CheckLineFor(settings_, refused).level, CheckLine::Level::kFail);
}

TEST_F(AcceleratorTest, SilentGuestTimesOutAndTheProbeIsKilled) {
  target_.binary = kSilentFake;
  settings_.probe_timeout = 300ms;
  auto choice = ChooseAccelerator(settings_, target_, scratch_);
  ASSERT_TRUE(choice.ok()) << choice.error().message;
  EXPECT_EQ(choice->accelerator, "tcg");
  EXPECT_NE(choice->why.find("guest kernel printed nothing in 300 ms"), std::string::npos)
      << choice->why;
  auto pids = ProbePids();
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_NE(::kill(pids[0], 0), 0) << "the probe (pid " << pids[0] << ") still runs";
  EXPECT_TRUE(fs::is_empty(scratch_)) << "probe files left";
}

TEST_F(AcceleratorTest, GuestReachingInitIsKvmAndTheProbeIsKilled) {
  target_.binary = kBootsFake;
  auto choice = ChooseAccelerator(settings_, target_, scratch_);
  ASSERT_TRUE(choice.ok()) << choice.error().message;
  EXPECT_EQ(choice->accelerator, "kvm");
  EXPECT_FALSE(choice->kvm_broken);
  EXPECT_TRUE(choice->why.starts_with("KVM usable (probed in ")) << choice->why;
  auto pids = ProbePids();
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_NE(::kill(pids[0], 0), 0) << "the probe still runs";
  CheckLine line = CheckLineFor(settings_, choice);
  EXPECT_EQ(line.level, CheckLine::Level::kOk);
  EXPECT_NE(line.text.find("KVM usable"), std::string::npos);

  auto cached = ChooseAccelerator(settings_, target_, scratch_);
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(cached->source, AcceleratorSource::kCachedVerdict);
  EXPECT_EQ(ProbePids().size(), 1u);

  // A usable verdict that a VM invalidated is probed again.
  InvalidateVerdict(cached->verdict_path);
  auto reprobed = ChooseAccelerator(settings_, target_, scratch_);
  ASSERT_TRUE(reprobed.ok());
  EXPECT_EQ(reprobed->source, AcceleratorSource::kProbe);
  EXPECT_EQ(ProbePids().size(), 2u);
}

TEST_F(AcceleratorTest, ConcurrentShimsProbeOnce) {
  target_.binary = kSilentFake;
  settings_.probe_timeout = 500ms;
  std::vector<Result<AcceleratorChoice>> results(4, MakeError(ErrorCode::kInternal, "unset"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = ChooseAccelerator(settings_, target_, scratch_); });
  }
  for (auto& thread : threads) thread.join();
  int probed = 0;
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.error().message;
    EXPECT_EQ(result->accelerator, "tcg");
    probed += result->source == AcceleratorSource::kProbe;
  }
  EXPECT_EQ(probed, 1);
  EXPECT_EQ(ProbePids().size(), 1u);
}

TEST_F(AcceleratorTest, WithoutACacheDirEveryCallProbes) {
  settings_.cache_dir.clear();
  ASSERT_TRUE(ChooseAccelerator(settings_, target_, scratch_).ok());
  ASSERT_TRUE(ChooseAccelerator(settings_, target_, scratch_).ok());
  EXPECT_EQ(ProbePids().size(), 2u);
}

TEST(ProbeCommandTest, KvmHostCpuSerialOnlyAndAKernelThatTalks) {
  ProbeTarget target{"/usr/bin/qemu-system-x86_64", "q35", "/k", "/i", 256};
  auto argv = BuildProbeCommand(target, "/run/x/console");
  std::string joined;
  for (const auto& arg : argv) joined += arg + " ";
  EXPECT_NE(joined.find("-accel kvm "), std::string::npos) << joined;
  EXPECT_NE(joined.find("-cpu host "), std::string::npos);
  EXPECT_NE(joined.find("-nodefaults "), std::string::npos);
  EXPECT_NE(joined.find("-serial file:/run/x/console "), std::string::npos);
  EXPECT_NE(joined.find("loglevel=7"), std::string::npos);
  EXPECT_EQ(joined.find("quiet"), std::string::npos);
  EXPECT_EQ(joined.find("-device"), std::string::npos);
  EXPECT_EQ(joined.find("-netdev"), std::string::npos);
}

// The real VM path: a cached "usable" verdict, then QEMU dies at start under KVM (the
// MSR fake): the verdict is removed, the re-probe says unusable, and the VM comes up
// under TCG (the fake runs the real QEMU then) with the reason in VmInfo.
TEST_F(AcceleratorTest, QemuDyingUnderACachedGoodVerdictRetriesUnderTcg) {
  const char* output = std::getenv("BEACONBOX_OUTPUT_DIR");
  const std::string kernel = output ? std::string(output) + "/beaconbox-kernel-x86_64" : "";
  const std::string initrd = output ? std::string(output) + "/beaconbox-initrd" : "";
  if (kernel.empty() || !fs::exists(kernel) || !fs::exists(initrd)) {
    GTEST_SKIP() << "no guest kernel in BEACONBOX_OUTPUT_DIR (run make)";
  }
  QemuConfig config;
  config.binary = kMsrAbortFake;
  config.kvm_device = "/dev/null";
  config.verdict_dir = settings_.cache_dir;
  beaconbox::plugin::v1::VmSpec spec;
  spec.set_id("accel-retry");
  spec.set_kernel_path(kernel);
  spec.set_initrd_path(initrd);
  spec.set_memory_mib(256);
  spec.set_run_dir(scratch_);
  spec.set_console_log_path(dir_ + "/console.log");
  spec.mutable_agent_channel()->set_kind(beaconbox::plugin::v1::AGENT_CHANNEL_VIRTIO_SERIAL);
  spec.mutable_agent_channel()->set_serial_port_name("beaconbox.agent");
  spec.mutable_agent_channel()->set_unix_socket_path(scratch_ + "/agent.sock");
  spec.set_agent_token(std::string(64, 'a'));

  target_ = ProbeTargetOf(spec, config);
  KvmVerdict stale;
  stale.usable = true;
  stale.reason = "the guest kernel reached init (an earlier boot)";
  fs::create_directories(settings_.cache_dir);
  const std::string verdict_path = VerdictFile();
  ASSERT_TRUE(WriteVerdict(verdict_path, stale).ok());

  Spawner spawner;
  auto vm = QemuVm::Create(spec, config, spawner);
  ASSERT_TRUE(vm.ok()) << vm.error().message;
  auto info = (*vm)->Info();
  EXPECT_EQ(info.accelerator(), "tcg");
  EXPECT_NE(info.accelerator_reason().find("KVM present but cannot boot the guest"),
            std::string::npos)
      << info.accelerator_reason();
  EXPECT_NE(info.accelerator_reason().find("MSR 0x10a"), std::string::npos);
  EXPECT_NE(info.accelerator_reason().find("previously cached KVM verdict"), std::string::npos);
  // Two KVM starts: the VM under the stale verdict, then the probe.
  EXPECT_EQ(ProbePids().size(), 2u);
  auto now_cached = ReadVerdict(verdict_path);
  ASSERT_TRUE(now_cached.ok() && now_cached->has_value());
  EXPECT_FALSE((*now_cached)->usable);
  pid_t qemu = static_cast<pid_t>(info.vmm_pid());
  vm->reset();
  EXPECT_NE(::kill(qemu, 0), 0) << "QEMU outlived its VM";
}

}  // namespace
}  // namespace beaconbox::qemu
