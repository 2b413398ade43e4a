// What the host decides for every VM (host/plugin_host/vm_resources.h): guest CIDs
// unique per VM, the agent channel chosen from the plugin's capabilities and the
// host's devices, the guest's kernel arguments, vhost-user sockets and log names.
#include "host/plugin_host/vm_resources.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "common/base/agent_token.h"
#include "tests/plugin_host/test_util.h"

namespace beaconbox::plugin_host {
namespace {

using beaconbox::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(GuestCid, EachVmGetsItsOwnAndAReleasedOneIsReused) {
  TempDir dir;
  std::set<uint32_t> cids;
  std::vector<GuestCid> held;
  for (int i = 0; i < 4; ++i) {
    auto cid = ReserveGuestCid(dir.path(), 42);  // the same hint: still distinct
    ASSERT_TRUE(cid.ok()) << cid.error().message;
    EXPECT_GE(cid->cid, 3u);
    EXPECT_TRUE(cids.insert(cid->cid).second) << "CID " << cid->cid << " handed out twice";
    held.push_back(std::move(cid).value());
  }
  uint32_t first = held[0].cid;
  held.erase(held.begin());  // closes its lock
  auto again = ReserveGuestCid(dir.path(), 42);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->cid, first);
}

pluginapi::Capabilities Channels(std::initializer_list<pluginapi::AgentChannelKind> kinds) {
  pluginapi::Capabilities capabilities;
  for (auto kind : kinds) capabilities.add_agent_channels(kind);
  capabilities.set_agent_token(true);
  return capabilities;
}

TEST(AgentChannel, VsockWhenBothSidesHaveIt) {
  TempDir dir;
  auto plan = PlanAgentChannel(
      Channels({pluginapi::AGENT_CHANNEL_VSOCK, pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL}), true,
      dir.path(), dir.path() + "/vm");
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(plan->channel.kind(), pluginapi::AGENT_CHANNEL_VSOCK);
  EXPECT_EQ(plan->channel.port(), kAgentVsockPort);
  EXPECT_EQ(plan->channel.guest_cid(), plan->guest_cid.cid);
  EXPECT_TRUE(plan->guest_cid.lock.valid());
}

TEST(AgentChannel, VirtioSerialWithoutHostVsockOrWhenThePluginSaysNothing) {
  TempDir dir;
  for (const auto& capabilities :
       {Channels({pluginapi::AGENT_CHANNEL_VSOCK, pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL}),
        Channels({})}) {
    auto plan = PlanAgentChannel(capabilities, false, dir.path(), "/run/beacon/vm/7");
    ASSERT_TRUE(plan.ok()) << plan.error().message;
    EXPECT_EQ(plan->channel.kind(), pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
    EXPECT_EQ(plan->channel.serial_port_name(), kAgentSerialPortName);
    EXPECT_EQ(plan->channel.unix_socket_path(), "/run/beacon/vm/7/agent.sock");
    EXPECT_FALSE(plan->guest_cid.lock.valid());
  }
}

TEST(AgentChannel, EveryPlanHasAFreshWellFormedToken) {
  TempDir dir;
  auto first = PlanAgentChannel(Channels({}), false, dir.path(), "/run/beacon/vm/7");
  auto second = PlanAgentChannel(Channels({}), false, dir.path(), "/run/beacon/vm/7");
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE(IsWellFormedAgentToken(first->token)) << first->token;
  EXPECT_TRUE(IsWellFormedAgentToken(second->token)) << second->token;
  EXPECT_NE(first->token, second->token);
}

TEST(AgentChannel, RefusesAPluginThatCannotDeliverTheToken) {
  TempDir dir;
  pluginapi::Capabilities unsealed = Channels({pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL});
  unsealed.set_agent_token(false);
  auto plan = PlanAgentChannel(unsealed, false, dir.path(), dir.path() + "/vm");
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.error().message, HasSubstr("Capabilities.agent_token"));
}

TEST(AgentChannel, RefusesAVsockOnlyPluginOnAHostWithoutVsock) {
  TempDir dir;
  auto plan = PlanAgentChannel(Channels({pluginapi::AGENT_CHANNEL_VSOCK}), false, dir.path(),
                               dir.path() + "/vm");
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.error().message, HasSubstr("/dev/vhost-vsock"));
}

TEST(AgentChannel, HybridVsockNeedsNoVhostVsockAndLivesInTheVmDirectory) {
  TempDir dir;
  auto plan = PlanAgentChannel(Channels({pluginapi::AGENT_CHANNEL_HYBRID_VSOCK}), false, dir.path(),
                               dir.path() + "/vm");
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(plan->channel.kind(), pluginapi::AGENT_CHANNEL_HYBRID_VSOCK);
  EXPECT_EQ(plan->channel.unix_socket_path(), dir.path() + "/vm/vsock.sock");
  EXPECT_EQ(plan->channel.guest_cid(), 3u);
  EXPECT_EQ(plan->channel.port(), kAgentVsockPort);
  EXPECT_EQ(plan->token.size(), 64u);
  EXPECT_THAT(GuestKernelArgs(plan->channel, 512, 512),
              ElementsAre("panic=-1", "beaconbox.channel=vsock:1024"));
}

TEST(GuestKernelArgs, ChannelPanicAndMemoryHotplug) {
  pluginapi::AgentChannel vsock;
  vsock.set_kind(pluginapi::AGENT_CHANNEL_VSOCK);
  vsock.set_port(1024);
  EXPECT_THAT(
      GuestKernelArgs(vsock, 512, 2048),
      ElementsAre("panic=-1", "beaconbox.channel=vsock:1024", "memhp_default_state=online"));
  pluginapi::AgentChannel serial;
  serial.set_kind(pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
  serial.set_serial_port_name("beaconbox.agent");
  EXPECT_THAT(GuestKernelArgs(serial, 512, 512),
              ElementsAre("panic=-1", "beaconbox.channel=virtio-serial:beaconbox.agent"));
}

TEST(ShareSockets, EachShareGetsOneUnderTheVmDirectory) {
  pluginapi::VmSpec spec;
  spec.add_devices()->mutable_share()->set_tag("rootfs");
  spec.add_devices()->mutable_block()->set_id("disk");
  spec.add_devices()->mutable_share()->set_tag("data");
  ASSERT_TRUE(AssignShareSockets(spec, "/run/beacon/vm/7").ok());
  EXPECT_EQ(spec.devices(0).share().vhost_user_socket(), "/run/beacon/vm/7/fs0.sock");
  EXPECT_EQ(spec.devices(2).share().vhost_user_socket(), "/run/beacon/vm/7/fs1.sock");
  Status too_long = AssignShareSockets(spec, "/" + std::string(120, 'x'));
  ASSERT_FALSE(too_long.ok());
  EXPECT_THAT(too_long.error().message, HasSubstr("unix socket limit"));
}

}  // namespace
}  // namespace beaconbox::plugin_host
