// ChVm against bad VMM binaries (FAKE shell scripts standing in for a broken
// cloud-hypervisor) and, when the guest is built, a whole VM through the TEST DOUBLE
// fake-cloud-hypervisor (QEMU TCG underneath): one clear line each, nothing left.
#include "plugins/vmm-cloudhypervisor/ch_vm.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "tests/plugins/common/temp_dir.h"

namespace beaconbox::cloudhv {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
using plugins::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

pluginapi::VmSpec SpecIn(const TempDir& dir, const std::string& kernel, const std::string& initrd) {
  pluginapi::VmSpec spec;
  spec.set_id("t1");
  spec.set_namespace_("ns");
  spec.set_kernel_path(kernel);
  spec.set_initrd_path(initrd);
  spec.set_vcpus(1);
  spec.set_memory_mib(256);
  fs::create_directories(dir / "vm");
  spec.set_run_dir(dir / "vm");
  spec.set_console_log_path(dir / "console.log");
  spec.set_agent_token(std::string(64, 'c'));
  spec.add_guest_kernel_args("panic=-1");
  spec.add_guest_kernel_args("beaconbox.channel=vsock:1024");
  auto* channel = spec.mutable_agent_channel();
  channel->set_kind(pluginapi::AGENT_CHANNEL_HYBRID_VSOCK);
  channel->set_guest_cid(3);
  channel->set_port(1024);
  channel->set_unix_socket_path(dir / "vm/vsock.sock");
  return spec;
}

// What a failed create may leave: nothing in the VM's directory.
void ExpectRunDirEmpty(const TempDir& dir) {
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(dir / "vm")) left.push_back(entry.path());
  EXPECT_TRUE(left.empty()) << "left: " << ::testing::PrintToString(left);
}

struct BadVmm : ::testing::Test {
  TempDir dir;
  plugins::Spawner spawner;
  ChConfig config;
  pluginapi::VmSpec spec;
  void SetUp() override {
    spec = SpecIn(dir, dir.Write("vmlinux", "k"), dir.Write("initrd", "i"));
    config.api_socket_timeout = 1s;
    config.api_call_timeout = 2s;
    config.kvm_device = "/nonexistent/kvm";
  }
};

TEST_F(BadVmm, MissingOrNotExecutableBinary) {
  config.binary = dir / "no-such-cloud-hypervisor";
  auto vm = ChVm::Create(spec, config, spawner);
  ASSERT_FALSE(vm.ok());
  EXPECT_THAT(vm.error().message, HasSubstr("is missing or not executable (config key binary"));
  EXPECT_THAT(vm.error().message, HasSubstr("CLOUD_HYPERVISOR_PATH"));
  config.binary = dir.Write("cloud-hypervisor", "#!/bin/sh\n", 0644);
  vm = ChVm::Create(spec, config, spawner);
  ASSERT_FALSE(vm.ok());
  EXPECT_THAT(vm.error().message, HasSubstr("not executable"));
  ExpectRunDirEmpty(dir);
}

TEST_F(BadVmm, ExitsDuringStartWithItsLogTail) {
  config.binary = dir.Write("cloud-hypervisor",
                            "#!/bin/sh\necho 'Error: cannot open /dev/kvm: No such file' >&2\n"
                            "exit 1\n",
                            0755);
  auto vm = ChVm::Create(spec, config, spawner);
  ASSERT_FALSE(vm.ok());
  EXPECT_THAT(vm.error().message, HasSubstr("cloud-hypervisor exited before it opened its API"));
  EXPECT_THAT(vm.error().message, HasSubstr("cannot open /dev/kvm: No such file"));
  EXPECT_THAT(vm.error().message, HasSubstr("no usable /nonexistent/kvm"));
  EXPECT_THAT(vm.error().message, Not(HasSubstr("\n")));
  ExpectRunDirEmpty(dir);
}

TEST_F(BadVmm, ApiSocketNeverAppears) {
  config.binary =
      dir.Write("cloud-hypervisor", "#!/bin/sh\necho 'starting up' >&2\nexec sleep 60\n", 0755);
  auto vm = ChVm::Create(spec, config, spawner);
  ASSERT_FALSE(vm.ok());
  EXPECT_THAT(vm.error().message, HasSubstr("did not open its API socket"));
  EXPECT_THAT(vm.error().message, HasSubstr("within 1000 ms"));
  EXPECT_THAT(vm.error().message, HasSubstr("starting up"));
  ExpectRunDirEmpty(dir);
}

// The double reporting an old version (its TEST ONLY option): refused at vmm.ping with
// one line naming the version, CH ended, nothing left.
TEST_F(BadVmm, TooOldVersion) {
  config.binary = dir.Write("cloud-hypervisor",
                            std::string("#!/bin/sh\nexec ") + BBX_FAKE_CH_BINARY +
                                " --test-only-version v40.1.0 \"$@\"\n",
                            0755);
  config.api_socket_timeout = 10s;
  auto vm = ChVm::Create(spec, config, spawner);
  ASSERT_FALSE(vm.ok());
  EXPECT_THAT(vm.error().message, HasSubstr("is v40.1.0, too old: this plugin needs v48+"));
  EXPECT_THAT(vm.error().message, Not(HasSubstr("\n")));
  ExpectRunDirEmpty(dir);
}

// A CNI net whose namespace cannot be opened: refused after vm.create with one line
// naming the TAP and the namespace, before any boot; CH ended, nothing left.
TEST_F(BadVmm, CniTapWhoseNamespaceIsGone) {
  config.binary = BBX_FAKE_CH_BINARY;
  config.api_socket_timeout = 10s;
  auto* net = spec.add_devices()->mutable_net();
  net->set_tap_name("tap0");
  net->set_mac("02:00:00:00:00:07");
  net->set_netns_path(dir / "gone-netns");
  auto vm = ChVm::Create(spec, config, spawner);
  ASSERT_FALSE(vm.ok());
  EXPECT_THAT(vm.error().message, HasSubstr("open TAP"));
  EXPECT_THAT(vm.error().message, HasSubstr(dir / "gone-netns"));
  EXPECT_THAT(vm.error().message, Not(HasSubstr("\n")));
  ExpectRunDirEmpty(dir);
}

// kernel = "auto" boots the vmlinux the image build puts next to the host's kernel.
TEST(KernelFor, AutoTakesTheVmlinuxBesideTheHostKernel) {
  TempDir dir;
  pluginapi::VmSpec spec;
  spec.set_kernel_path(dir.Write("beaconbox-kernel-x86_64", "bz"));
  ChConfig config;
  EXPECT_EQ(KernelFor(config, spec).first, spec.kernel_path()) << "no vmlinux: the host's";
  const std::string vmlinux = dir.Write("beaconbox-vmlinux-x86_64", "elf");
  EXPECT_EQ(KernelFor(config, spec).first, vmlinux);
  config.kernel = "";
  EXPECT_EQ(KernelFor(config, spec).first, spec.kernel_path());
  config.kernel = "/elsewhere/vmlinux";
  EXPECT_EQ(KernelFor(config, spec).first, "/elsewhere/vmlinux");
  EXPECT_THAT(KernelFor(config, spec).second, HasSubstr("kernel of [plugins.vmm.cloud-hypervisor"));
  EXPECT_THAT(VmlinuxProblem(spec.kernel_path()), HasSubstr("is not an ELF vmlinux"));
  EXPECT_THAT(VmlinuxProblem(dir / "none"), HasSubstr("is missing or unreadable"));
  EXPECT_EQ(VmlinuxProblem(dir.Write("elf", std::string("\x7f"
                                                        "ELF\x02\x01",
                                                        6))),
            "");
}

// A whole VM through the double: boot, the agent over the hybrid vsock, pause and
// resume, a call the double does not emulate (one clear line), stop, nothing left.
TEST(ThroughTheDouble, BootsConnectsPausesAndStops) {
  const char* output = std::getenv("BEACONBOX_OUTPUT_DIR");
  const std::string kernel = std::string(output ? output : "") + "/beaconbox-kernel-x86_64";
  const std::string initrd = std::string(output ? output : "") + "/beaconbox-initrd";
  if (::access(kernel.c_str(), R_OK) != 0 || ::access(initrd.c_str(), R_OK) != 0) {
    GTEST_SKIP() << "the guest is not built (" << kernel << "): run make";
  }
  TempDir dir;
  plugins::Spawner spawner;
  ChConfig config;
  config.binary = BBX_FAKE_CH_BINARY;
  config.kvm_device = "/nonexistent/kvm";
  pluginapi::VmSpec spec = SpecIn(dir, kernel, initrd);
  auto vm = ChVm::Create(spec, config, spawner);
  ASSERT_TRUE(vm.ok()) << vm.error().message;
  EXPECT_EQ((*vm)->version(), "v48.0-fake");
  EXPECT_FALSE(fs::exists(dir / "vm/agent-token")) << "the token file outlived vm.boot";
  auto fd = (*vm)->ConnectGuest(120s);
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  // The double accepts for QEMU's virtio-serial socket at once; the guest's own
  // word that its agent serves (with the token from fw_cfg) is on the console.
  std::string console;
  for (int i = 0; i < 900 && console.find("vminitd: serving on") == std::string::npos; ++i) {
    std::this_thread::sleep_for(200ms);
    console = plugins::testing::ReadAll(dir / "console.log");
  }
  EXPECT_THAT(console, HasSubstr("vminitd: serving on"));
  EXPECT_THAT(console, Not(HasSubstr("no agent token")));
  pluginapi::VmInfo info = (*vm)->Info();
  EXPECT_EQ(info.guest_channel(), "hybrid-vsock:" + (dir / "vm/vsock.sock") + ":1024");
  ASSERT_GE(info.pids_size(), 1);
  EXPECT_TRUE((*vm)->Pause().ok());
  auto paused = (*vm)->VmmInfo();
  ASSERT_TRUE(paused.ok());
  EXPECT_THAT(*paused, HasSubstr("\"state\":\"Paused\""));
  EXPECT_TRUE((*vm)->Resume().ok());
  spec.set_max_vcpus(2);
  Status removed = (*vm)->RemoveDevice("blk-x");
  ASSERT_FALSE(removed.ok());
  EXPECT_THAT(removed.error().message,
              HasSubstr("cloud-hypervisor API vm.remove-device: HTTP 500"));
  const pid_t vmm = static_cast<pid_t>(info.vmm_pid());
  EXPECT_TRUE((*vm)->Stop(10s).ok());
  EXPECT_NE(::kill(vmm, 0), 0) << "the VMM outlived Stop";
  vm->reset();
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(dir / "vm")) left.push_back(entry.path());
  EXPECT_TRUE(left.empty()) << "left: " << ::testing::PrintToString(left);
}

}  // namespace
}  // namespace beaconbox::cloudhv
