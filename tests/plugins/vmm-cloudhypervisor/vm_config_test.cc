// VmConfig JSON built from a VmSpec, the launch plan's checks, the version parse.
#include "plugins/vmm-cloudhypervisor/vm_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace beaconbox::cloudhv {
namespace {

namespace pluginapi = ::beaconbox::plugin::v1;
using nlohmann::json;
using ::testing::HasSubstr;

const std::string kToken(64, 'a');

pluginapi::VmSpec BaseSpec() {
  pluginapi::VmSpec spec;
  spec.set_id("c1");
  spec.set_kernel_path("/k/vmlinux");
  spec.set_initrd_path("/k/initrd");
  spec.set_kernel_cmdline("debug");
  spec.set_vcpus(2);
  spec.set_max_vcpus(4);
  spec.set_memory_mib(512);
  spec.set_max_memory_mib(1024);
  spec.set_run_dir("/run/bbx/vm1");
  spec.set_console_log_path("/var/log/beacon/vm.log");
  spec.add_guest_kernel_args("panic=-1");
  spec.add_guest_kernel_args("beaconbox.channel=vsock:1024");
  spec.set_agent_token(kToken);
  auto* channel = spec.mutable_agent_channel();
  channel->set_kind(pluginapi::AGENT_CHANNEL_HYBRID_VSOCK);
  channel->set_guest_cid(3);
  channel->set_port(1024);
  channel->set_unix_socket_path("/run/bbx/vm1/vsock.sock");
  return spec;
}

TEST(VmConfig, PayloadCpusMemoryConsoleVsockAndToken) {
  pluginapi::VmSpec spec = BaseSpec();
  auto plan = PlanLaunch(spec);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  auto config = BuildVmConfig(spec, *plan);
  ASSERT_TRUE(config.ok()) << config.error().message;
  const json& c = *config;
  EXPECT_EQ(c["payload"]["kernel"], "/k/vmlinux");
  EXPECT_EQ(c["payload"]["initramfs"], "/k/initrd");
  EXPECT_EQ(c["payload"]["cmdline"],
            "console=ttyS0 quiet loglevel=4 panic=-1 beaconbox.channel=vsock:1024 debug");
  EXPECT_EQ(c["cpus"], (json{{"boot_vcpus", 2}, {"max_vcpus", 4}}));
  EXPECT_EQ(c["memory"]["size"], uint64_t{512} << 20);
  EXPECT_EQ(c["memory"]["hotplug_size"], uint64_t{512} << 20);
  EXPECT_EQ(c["memory"]["shared"], true);
  EXPECT_EQ(c["serial"], (json{{"mode", "File"}, {"file", "/run/bbx/vm1/console.fifo"}}));
  EXPECT_EQ(c["console"], (json{{"mode", "Off"}}));
  EXPECT_EQ(c["vsock"]["cid"], 3);
  EXPECT_EQ(c["vsock"]["socket"], "/run/bbx/vm1/vsock.sock");
  const json& fw_cfg = c["payload"]["fw_cfg_config"];
  EXPECT_EQ(fw_cfg["kernel"], false);
  EXPECT_EQ(fw_cfg["initramfs"], false);
  EXPECT_EQ(fw_cfg["items"]["item_list"][0],
            (json{{"name", "opt/io.beaconbox/agent-token"}, {"file", "/run/bbx/vm1/agent-token"}}));
  // The token itself is in no request: only the 0600 file's path.
  EXPECT_EQ(c.dump().find(kToken), std::string::npos);
  EXPECT_FALSE(c.contains("disks"));
  EXPECT_FALSE(c.contains("net"));
  EXPECT_FALSE(c.contains("fs"));
}

TEST(VmConfig, NoHotplugSizeWithoutHeadroomAndDefaults) {
  pluginapi::VmSpec spec = BaseSpec();
  spec.set_vcpus(0);
  spec.set_max_vcpus(0);
  spec.set_memory_mib(0);
  spec.set_max_memory_mib(0);
  auto config = BuildVmConfig(spec, *PlanLaunch(spec));
  ASSERT_TRUE(config.ok());
  EXPECT_EQ((*config)["cpus"], (json{{"boot_vcpus", 1}, {"max_vcpus", 1}}));
  EXPECT_EQ((*config)["memory"]["size"], uint64_t{512} << 20);
  EXPECT_FALSE((*config)["memory"].contains("hotplug_size"));
}

TEST(VmConfig, DisksNetsAndSharesInOrder) {
  pluginapi::VmSpec spec = BaseSpec();
  auto* block = spec.add_devices()->mutable_block();
  block->set_id("data");
  block->set_host_path("/img/data.raw");
  block->set_read_only(true);
  auto* share = spec.add_devices()->mutable_share();
  share->set_tag("rootfs");
  share->set_host_path("/bundle/rootfs");
  share->set_vhost_user_socket("/run/bbx/vm1/fs0.sock");
  auto* net = spec.add_devices()->mutable_net();
  net->set_tap_name("tap0");
  net->set_mac("02:00:00:00:00:01");
  net->set_mtu(1400);
  auto plan = PlanLaunch(spec);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->virtiofsd_sockets, std::vector<std::string>{"/run/bbx/vm1/fs0.sock"});
  auto config = BuildVmConfig(spec, *plan);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ((*config)["disks"], json::array({{{"path", "/img/data.raw"},
                                              {"readonly", true},
                                              {"id", "blk-data"},
                                              {"serial", "data"}}}));
  EXPECT_EQ((*config)["net"],
            json::array(
                {{{"tap", "tap0"}, {"mac", "02:00:00:00:00:01"}, {"id", "net0"}, {"mtu", 1400}}}));
  EXPECT_EQ((*config)["fs"], json::array({{{"tag", "rootfs"},
                                           {"socket", "/run/bbx/vm1/fs0.sock"},
                                           {"num_queues", 1},
                                           {"queue_size", 1024},
                                           {"id", "fs0"}}}));
}

// A TAP in a CNI sandbox is not in vm.create's body (CH takes descriptors only with
// vm.add-net); its vm.add-net body has no tap name and one queue pair (one fd), and
// the nets around it keep their ids in the spec's order.
TEST(VmConfig, NetInAnotherNamespaceGoesByVmAddNet) {
  pluginapi::VmSpec spec = BaseSpec();
  auto* cni = spec.add_devices()->mutable_net();
  cni->set_tap_name("tap0");
  cni->set_mac("02:00:00:00:00:02");
  cni->set_mtu(1450);
  cni->set_netns_path("/run/netns/sandbox");
  auto* host = spec.add_devices()->mutable_net();
  host->set_tap_name("bbx1");
  host->set_mac("02:00:00:00:00:03");
  auto plan = PlanLaunch(spec);
  ASSERT_TRUE(plan.ok());
  auto config = BuildVmConfig(spec, *plan);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ((*config)["net"],
            json::array({{{"tap", "bbx1"}, {"mac", "02:00:00:00:00:03"}, {"id", "net1"}}}));
  auto body = NetFdConfigOf(*cni, 0);
  ASSERT_TRUE(body.ok()) << body.error().message;
  EXPECT_EQ(*body,
            (json{{"mac", "02:00:00:00:00:02"}, {"id", "net0"}, {"mtu", 1450}, {"num_queues", 2}}));
  cni->set_netns_path("relative/ns");
  EXPECT_FALSE(NetFdConfigOf(*cni, 0).ok());
  EXPECT_FALSE(BuildVmConfig(spec, *plan).ok());
  cni->set_netns_path("/run/netns/sandbox");
  cni->set_mac("bad");
  EXPECT_FALSE(BuildVmConfig(spec, *plan).ok());
}

TEST(VmConfig, RefusesHostileDeviceValues) {
  pluginapi::BlockDevice block;
  block.set_id("a,b");
  block.set_host_path("/x");
  EXPECT_FALSE(DiskConfigOf(block).ok());
  pluginapi::NetDevice net;
  net.set_tap_name("tap0");
  net.set_mac("02:00:00:00:00:0g");
  EXPECT_FALSE(NetConfigOf(net, 0).ok());
  pluginapi::Share share;
  share.set_tag("root fs");
  share.set_vhost_user_socket("/s");
  EXPECT_FALSE(FsConfigOf(share, 0).ok());
}

TEST(LaunchPlan, RefusesOtherChannelsNoTokenAndLongSockets) {
  pluginapi::VmSpec spec = BaseSpec();
  spec.mutable_agent_channel()->set_kind(pluginapi::AGENT_CHANNEL_VSOCK);
  auto plan = PlanLaunch(spec);
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.error().message, HasSubstr("hybrid vsock"));

  spec = BaseSpec();
  spec.clear_agent_token();
  plan = PlanLaunch(spec);
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.error().message, HasSubstr("agent_token"));

  spec = BaseSpec();
  spec.set_run_dir("/" + std::string(120, 'r'));
  plan = PlanLaunch(spec);
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.error().message, HasSubstr("unix socket limit"));
}

TEST(Resize, BodyInBytesAndLeavesZeroOut) {
  EXPECT_EQ(ResizeBody(3, 0), (json{{"desired_vcpus", 3}}));
  EXPECT_EQ(ResizeBody(0, 1024), (json{{"desired_ram", uint64_t{1024} << 20}}));
}

TEST(Version, MajorOfPingVersions) {
  EXPECT_EQ(*VersionMajor("v48.0"), 48);
  EXPECT_EQ(*VersionMajor("v49.0-12-gabcdef"), 49);
  EXPECT_EQ(*VersionMajor("53.0"), 53);
  EXPECT_FALSE(VersionMajor("dev").ok());
  EXPECT_FALSE(VersionMajor("v").ok());
  EXPECT_FALSE(VersionMajor("v4x").ok());
}

}  // namespace
}  // namespace beaconbox::cloudhv
