// vmm-qemu wires up what the host decided in the VmSpec (ABI v2): the agent channel
// and guest CID, the guest's kernel arguments, each share's vhost-user socket. It
// decides none of them itself.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "plugins/vmm-qemu/qemu_vm.h"
#include "tests/plugins/common/temp_dir.h"

namespace beaconbox::qemu {
namespace {

namespace pluginapi = ::beaconbox::plugin::v1;
using ::beaconbox::plugins::testing::TempDir;
using ::testing::Contains;
using ::testing::HasSubstr;

pluginapi::VmSpec BaseSpec() {
  pluginapi::VmSpec spec;
  spec.set_id("c1");
  spec.set_namespace_("default");
  spec.set_kernel_path("/k");
  spec.set_initrd_path("/i");
  spec.set_run_dir("/run/beacon/vm/7");
  spec.set_console_log_path("/var/log/beacon/vm-default-c1.log");
  spec.set_kernel_cmdline("operator=1");
  spec.add_guest_kernel_args("panic=-1");
  spec.set_agent_token(std::string(64, 'a'));
  return spec;
}

std::string ArgAfter(const std::vector<std::string>& argv, const std::string& flag) {
  auto found = std::find(argv.begin(), argv.end(), flag);
  return found == argv.end() || found + 1 == argv.end() ? "" : *(found + 1);
}

// kernel = "auto" (the default) boots the PVH vmlinux the image build puts next to
// vm.kernel_path (no decompression); without one, the bzImage as before.
TEST(QemuCommand, AutoKernelBootsTheVmlinuxBesideTheHostKernel) {
  TempDir dir;
  pluginapi::VmSpec spec = BaseSpec();
  spec.mutable_agent_channel()->set_kind(pluginapi::AGENT_CHANNEL_VSOCK);
  spec.mutable_agent_channel()->set_port(1024);
  spec.mutable_agent_channel()->set_guest_cid(4711);
  spec.set_kernel_path(dir.Write("beaconbox-kernel-x86_64", "bz"));
  auto plan = PlanLaunch(spec);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  plan->accelerator = "tcg";
  QemuConfig config;
  EXPECT_EQ(ArgAfter(*BuildQemuCommand(spec, config, *plan), "-kernel"), spec.kernel_path())
      << "no vmlinux: the bzImage";
  EXPECT_EQ(ProbeTargetOf(spec, config).kernel, spec.kernel_path());
  const std::string vmlinux = dir.Write("beaconbox-vmlinux-x86_64", "elf");
  EXPECT_EQ(ArgAfter(*BuildQemuCommand(spec, config, *plan), "-kernel"), vmlinux);
  EXPECT_EQ(ProbeTargetOf(spec, config).kernel, vmlinux) << "the KVM probe boots the same";
  config.kernel = "";
  EXPECT_EQ(ArgAfter(*BuildQemuCommand(spec, config, *plan), "-kernel"), spec.kernel_path());
  config.kernel = "/elsewhere/vmlinux";
  EXPECT_EQ(ArgAfter(*BuildQemuCommand(spec, config, *plan), "-kernel"), "/elsewhere/vmlinux");
  EXPECT_THAT(KernelFor(config, spec).second, HasSubstr("kernel of [plugins.vmm.qemu.config]"));
}

TEST(QemuCommand, VsockWithTheHostsGuestCid) {
  pluginapi::VmSpec spec = BaseSpec();
  spec.mutable_agent_channel()->set_kind(pluginapi::AGENT_CHANNEL_VSOCK);
  spec.mutable_agent_channel()->set_port(1024);
  spec.mutable_agent_channel()->set_guest_cid(4711);
  spec.add_guest_kernel_args("beaconbox.channel=vsock:1024");
  auto plan = PlanLaunch(spec);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_TRUE(plan->use_vsock);
  EXPECT_EQ(plan->guest_cid, 4711u);
  plan->accelerator = "tcg";
  auto argv = BuildQemuCommand(spec, QemuConfig(), *plan);
  ASSERT_TRUE(argv.ok()) << argv.error().message;
  EXPECT_THAT(*argv, Contains("vhost-vsock-pci,guest-cid=4711"));
  EXPECT_EQ(ArgAfter(*argv, "-append"),
            "console=ttyS0 quiet loglevel=4 reboot=t i8042.noaux i8042.nokbd i8042.nopnp "
            "i8042.dumbkbd 8250.nr_uarts=1 tsc=reliable no_timer_check noreplace-smp "
            "cryptomgr.notests rcupdate.rcu_expedited=1 panic=-1 beaconbox.channel=vsock:1024 "
            "swiotlb=noforce page_reporting.page_reporting_order=5 operator=1");
}

// A TAP in another network namespace (net-cni) reaches QEMU as a descriptor Launch
// opened there; a TAP in the shim's namespace is opened by QEMU by name.
TEST(QemuCommand, ATapInAnotherNetnsIsPassedAsADescriptor) {
  pluginapi::VmSpec spec = BaseSpec();
  spec.mutable_agent_channel()->set_kind(pluginapi::AGENT_CHANNEL_VSOCK);
  spec.mutable_agent_channel()->set_port(1024);
  spec.mutable_agent_channel()->set_guest_cid(4711);
  auto* cni = spec.add_devices()->mutable_net();
  cni->set_tap_name("tap0");
  cni->set_mac("7e:14:c8:8b:27:26");
  cni->set_netns_path("/run/beacon/netns/default--c1");
  auto* bridge = spec.add_devices()->mutable_net();
  bridge->set_tap_name("beacon-1");
  bridge->set_mac("02:00:00:00:00:01");
  auto plan = PlanLaunch(spec);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  plan->accelerator = "tcg";
  EXPECT_FALSE(BuildQemuCommand(spec, QemuConfig(), *plan).ok());  // not opened: refused
  plan->tap_fds = {9, -1};
  auto argv = BuildQemuCommand(spec, QemuConfig(), *plan);
  ASSERT_TRUE(argv.ok()) << argv.error().message;
  EXPECT_THAT(*argv, Contains("tap,id=net0,fd=9"));
  EXPECT_THAT(*argv, Contains("tap,id=net1,ifname=beacon-1,script=no,downscript=no"));
  EXPECT_THAT(*argv, Contains("virtio-net-pci,netdev=net0,mac=7e:14:c8:8b:27:26"));
}

TEST(QemuCommand, VirtioSerialOnTheHostsSocketAndPortName) {
  pluginapi::VmSpec spec = BaseSpec();
  auto* channel = spec.mutable_agent_channel();
  channel->set_kind(pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
  channel->set_serial_port_name("beaconbox.agent");
  channel->set_unix_socket_path("/run/beacon/vm/7/agent.sock");
  auto plan = PlanLaunch(spec);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_FALSE(plan->use_vsock);
  plan->accelerator = "tcg";
  auto argv = BuildQemuCommand(spec, QemuConfig(), *plan);
  ASSERT_TRUE(argv.ok()) << argv.error().message;
  EXPECT_THAT(*argv,
              Contains("socket,id=agent,path=/run/beacon/vm/7/agent.sock,server=on,wait=off"));
  EXPECT_THAT(*argv, Contains("virtserialport,chardev=agent,name=beaconbox.agent"));
}

TEST(QemuCommand, SharesUseTheHostsVhostUserSockets) {
  pluginapi::VmSpec spec = BaseSpec();
  spec.mutable_agent_channel()->set_kind(pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
  spec.mutable_agent_channel()->set_serial_port_name("beaconbox.agent");
  spec.mutable_agent_channel()->set_unix_socket_path("/run/beacon/vm/7/agent.sock");
  auto* share = spec.add_devices()->mutable_share();
  share->set_tag("rootfs");
  share->set_host_path("/bundle/rootfs");
  share->set_vhost_user_socket("/run/beacon/vm/7/fs0.sock");
  auto plan = PlanLaunch(spec);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ASSERT_EQ(plan->virtiofsd_sockets.size(), 1u);
  EXPECT_EQ(plan->virtiofsd_sockets[0], "/run/beacon/vm/7/fs0.sock");
  plan->accelerator = "tcg";
  auto argv = BuildQemuCommand(spec, QemuConfig(), *plan);
  ASSERT_TRUE(argv.ok()) << argv.error().message;
  EXPECT_THAT(*argv, Contains("socket,id=fs0,path=/run/beacon/vm/7/fs0.sock"));

  share->clear_vhost_user_socket();
  auto refused = PlanLaunch(spec);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("share 'rootfs' has no usable vhost_user_socket"));
}

// The token sealing the agent channel goes to the guest through fw_cfg, from a file
// in the VM's private directory; it is never on the command line (any local user
// reads /proc/<pid>/cmdline), and a spec without one starts no VM.
TEST(QemuCommand, AgentTokenThroughFwCfgNeverOnTheCommandLine) {
  pluginapi::VmSpec spec = BaseSpec();
  spec.mutable_agent_channel()->set_kind(pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
  spec.mutable_agent_channel()->set_serial_port_name("beaconbox.agent");
  spec.mutable_agent_channel()->set_unix_socket_path("/run/beacon/vm/7/agent.sock");
  const std::string token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  spec.set_agent_token(token);
  auto plan = PlanLaunch(spec);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(plan->agent_token_file, "/run/beacon/vm/7/agent-token");
  plan->accelerator = "tcg";
  auto argv = BuildQemuCommand(spec, QemuConfig(), *plan);
  ASSERT_TRUE(argv.ok()) << argv.error().message;
  EXPECT_EQ(ArgAfter(*argv, "-fw_cfg"),
            "name=opt/io.beaconbox/agent-token,file=/run/beacon/vm/7/agent-token");
  for (const auto& arg : *argv) EXPECT_EQ(arg.find(token), std::string::npos) << arg;

  for (const std::string& bad :
       {std::string(), std::string("short"), std::string(64, 'A'), std::string(63, 'a') + ","}) {
    spec.set_agent_token(bad);
    auto refused = PlanLaunch(spec);
    ASSERT_FALSE(refused.ok()) << "token '" << bad << "'";
    EXPECT_THAT(refused.error().message, HasSubstr("VmSpec.agent_token"));
  }
}

TEST(QemuCommand, RefusesASpecWithoutAnAgentChannel) {
  auto plan = PlanLaunch(BaseSpec());
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.error().message, HasSubstr("agent_channel.kind 0"));
  pluginapi::VmSpec spec = BaseSpec();
  spec.mutable_agent_channel()->set_kind(pluginapi::AGENT_CHANNEL_VSOCK);
  EXPECT_FALSE(PlanLaunch(spec).ok()) << "vsock without a guest CID";
}

// Memory (issue 16): the TCG translation cache is capped (QEMU 7.2 reserves 1 GiB by
// default), a free-page-reporting balloon hands freed guest memory back, and the
// guest's swiotlb bounce buffer is off. Each test changes config_ and reads Argv().
class QemuMemoryCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = BaseSpec();
    spec_.mutable_agent_channel()->set_kind(pluginapi::AGENT_CHANNEL_VSOCK);
    spec_.mutable_agent_channel()->set_port(1024);
    spec_.mutable_agent_channel()->set_guest_cid(5);
    auto plan = PlanLaunch(spec_);
    ASSERT_TRUE(plan.ok()) << plan.error().message;
    plan_ = std::move(plan).value();
    plan_.accelerator = "tcg";
  }

  // QEMU's command line for config_ and plan_ (a test failure when refused).
  std::vector<std::string> Argv() {
    auto argv = BuildQemuCommand(spec_, config_, plan_);
    EXPECT_TRUE(argv.ok()) << argv.error().message;
    return argv.ok() ? *argv : std::vector<std::string>();
  }

  pluginapi::VmSpec spec_;
  LaunchPlan plan_;
  QemuConfig config_;
};

TEST_F(QemuMemoryCommand, TcgTranslationCacheSizeFromTheConfig) {
  EXPECT_EQ(ArgAfter(Argv(), "-accel"), "tcg,tb-size=" + std::to_string(kDefaultTcgTbSizeMib));
  config_.tcg_tb_size_mib = 64;
  EXPECT_EQ(ArgAfter(Argv(), "-accel"), "tcg,tb-size=64");
  config_.tcg_tb_size_mib = 0;  // QEMU's own default
  EXPECT_EQ(ArgAfter(Argv(), "-accel"), "tcg");
  config_.tcg_tb_size_mib = 64;  // KVM has no translation cache: never passed
  plan_.accelerator = "kvm";
  EXPECT_EQ(ArgAfter(Argv(), "-accel"), "kvm");
}

// A hot-added vCPU's TCG thread could find no free translation region and abort QEMU
// (tcg/region.c assertion, seen in e2e_beaconbox_update and bench/hotadd-loop): when
// vCPUs may be hot-added under TCG, all vCPUs share one TCG thread.
TEST_F(QemuMemoryCommand, OneTcgThreadWhenVcpusMayBeHotAdded) {
  spec_.set_vcpus(1);
  spec_.set_max_vcpus(2);
  EXPECT_EQ(ArgAfter(Argv(), "-accel"),
            "tcg,tb-size=" + std::to_string(kDefaultTcgTbSizeMib) + ",thread=single");
  config_.tcg_tb_size_mib = 0;
  EXPECT_EQ(ArgAfter(Argv(), "-accel"), "tcg,thread=single");
  spec_.set_max_vcpus(1);  // no hotplug: QEMU's default (multi-threaded TCG)
  EXPECT_EQ(ArgAfter(Argv(), "-accel"), "tcg");
  spec_.set_max_vcpus(2);
  plan_.accelerator = "kvm";
  EXPECT_EQ(ArgAfter(Argv(), "-accel"), "kvm");
}

TEST_F(QemuMemoryCommand, FreePageReportingBalloonUnlessTurnedOff) {
  config_.extra_args = {"-extra"};
  auto argv = Argv();
  EXPECT_THAT(argv, Contains("virtio-balloon-pci,id=balloon0,free-page-reporting=on"));
  // Free blocks from 128 KiB are reported, before the operator's kernel_cmdline (which
  // may set another order: vminitd takes the last one).
  EXPECT_THAT(ArgAfter(argv, "-append"), HasSubstr(" page_reporting.page_reporting_order=5"));
  ASSERT_FALSE(argv.empty());
  EXPECT_EQ(argv.back(), "-extra") << "the operator's extra_args stay last";
  config_.free_page_reporting = false;
  argv = Argv();
  for (const auto& arg : argv) EXPECT_EQ(arg.find("balloon"), std::string::npos) << arg;
  EXPECT_THAT(ArgAfter(argv, "-append"), ::testing::Not(HasSubstr("page_reporting")));
}

TEST_F(QemuMemoryCommand, NoGuestSwiotlbUnlessAsked) {
  EXPECT_THAT(ArgAfter(Argv(), "-append"), HasSubstr(" swiotlb=noforce "));
  config_.guest_swiotlb = true;
  EXPECT_THAT(ArgAfter(Argv(), "-append"), ::testing::Not(HasSubstr("swiotlb")));
}

}  // namespace
}  // namespace beaconbox::qemu
