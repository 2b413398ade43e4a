#include "host/shim/translate.h"

#include <gtest/gtest.h>

#include "host/shim/sandbox_state.h"

namespace beaconbox::shim {
namespace {

const ContainerKey kKey{"default", "c1"};

TEST(TranslateTest, ContainerdMountsBecomeTheStorageRequest) {
  ContainerdMounts mounts;
  auto* overlay = mounts.Add();
  overlay->set_type("overlay");
  overlay->set_source("overlay");
  overlay->add_options("lowerdir=/l");
  overlay->add_options("upperdir=/u");
  AdaptedSpec spec;
  spec.root_read_only = true;
  auto request = StorageRequestFor(kKey, "/b", mounts, spec);
  EXPECT_EQ(request.container_id(), "c1");
  EXPECT_EQ(request.namespace_(), kKey.namespace_name);
  EXPECT_EQ(request.bundle(), "/b");
  EXPECT_TRUE(request.rootfs_read_only());
  ASSERT_EQ(request.rootfs_size(), 1);
  EXPECT_EQ(request.rootfs(0).type(), "overlay");
  EXPECT_EQ(request.rootfs(0).options(1), "upperdir=/u");
}

TEST(TranslateTest, CtrRootfsDirectoryBecomesOneRbind) {
  AdaptedSpec spec;
  spec.host_root_path = "/srv/rootfs";
  auto request = StorageRequestFor(kKey, "/b", {}, spec);
  ASSERT_EQ(request.rootfs_size(), 1);
  EXPECT_EQ(request.rootfs(0).type(), "bind");
  EXPECT_EQ(request.rootfs(0).source(), "/srv/rootfs");
  EXPECT_EQ(request.rootfs(0).options(0), "rbind");
  spec.host_root_path = "/b/rootfs";  // the bundle's own: nothing to add
  EXPECT_EQ(StorageRequestFor(kKey, "/b", {}, spec).rootfs_size(), 0);
  spec.host_root_path = "rootfs";
  EXPECT_EQ(StorageRequestFor(kKey, "/b", {}, spec).rootfs_size(), 0);
}

TEST(TranslateTest, VolumesGoToTheStorageRequestWithAbsoluteSources) {
  AdaptedSpec spec;
  spec.volumes = {{"/srv/data", "/vol", true, true}, {"rel/file", "/etc/x", false, false}};
  auto request = StorageRequestFor(kKey, "/b", {}, spec);
  ASSERT_EQ(request.volumes_size(), 2);
  EXPECT_EQ(request.volumes(0).source(), "/srv/data");
  EXPECT_EQ(request.volumes(0).destination(), "/vol");
  EXPECT_TRUE(request.volumes(0).read_only());
  EXPECT_TRUE(request.volumes(0).recursive());
  EXPECT_EQ(request.volumes(1).source(), "/b/rel/file");
  EXPECT_FALSE(request.volumes(1).read_only());
  EXPECT_FALSE(request.volumes(1).recursive());
}

TEST(TranslateTest, GuestVolumePathsComeOnePerVolumeAndRelative) {
  pluginapi::MountPlan plan;
  EXPECT_TRUE(GuestVolumePathsFor(plan, 0).ok());
  auto none = GuestVolumePathsFor(plan, 2);  // a plugin that cannot share volumes
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::kNotImplemented);
  EXPECT_NE(none.error().message.find("cannot share volumes"), std::string::npos);
  plan.add_guest_volume_paths("volumes/0");
  plan.add_guest_volume_paths("volumes/1");
  auto paths = GuestVolumePathsFor(plan, 2);
  ASSERT_TRUE(paths.ok());
  EXPECT_EQ(*paths, (std::vector<std::string>{"volumes/0", "volumes/1"}));
  for (const char* bad : {"/etc", "../x", "volumes/../../x", ""}) {
    plan.set_guest_volume_paths(1, bad);
    EXPECT_FALSE(GuestVolumePathsFor(plan, 2).ok()) << bad;
  }
}

TEST(TranslateTest, MountPlanBecomesTheGuestBundleRequest) {
  pluginapi::MountPlan plan;
  auto* mount = plan.add_guest_mounts();
  mount->set_type("virtiofs");
  mount->set_source("rootfs-c1");
  mount->add_options("ro");
  plan.set_guest_rootfs("layers/top");
  auto request = BundleRequestFor(kKey, plan, "{}");
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(request->container_id(), "c1");
  EXPECT_EQ(request->rootfs(), "layers/top");
  ASSERT_EQ(request->mounts_size(), 1);
  EXPECT_EQ(request->mounts(0).type(), "virtiofs");
  EXPECT_EQ(request->mounts(0).options(0), "ro");

  plan.clear_guest_rootfs();
  EXPECT_EQ(*GuestRootfsFor(plan), "rootfs");
  for (const char* bad : {"/abs", "../up", "a/../b", "a//b", "./a"}) {
    plan.set_guest_rootfs(bad);
    EXPECT_FALSE(BundleRequestFor(kKey, plan, "{}").ok()) << bad;
  }
}

TEST(TranslateTest, AttachmentBecomesTheGuestNetworkConfig) {
  pluginapi::NetworkAttachment attachment;
  attachment.set_mac("02:00:00:00:00:01");
  attachment.set_mtu(1400);
  auto* address = attachment.add_addresses();
  address->set_address("10.88.0.2");
  address->set_prefix_length(16);
  auto* route = attachment.add_routes();
  route->set_destination("0.0.0.0/0");
  route->set_gateway("10.88.0.1");
  attachment.add_dns_servers("10.88.0.1");
  attachment.add_dns_search("example.test");
  auto config = GuestNetworkFor(attachment);
  ASSERT_EQ(config.interfaces_size(), 1);
  EXPECT_EQ(config.interfaces(0).name(), "eth0");
  EXPECT_EQ(config.interfaces(0).mac(), "02:00:00:00:00:01");
  EXPECT_EQ(config.interfaces(0).mtu(), 1400u);
  EXPECT_EQ(config.interfaces(0).addresses(0), "10.88.0.2/16");
  EXPECT_EQ(config.routes(0).device(), "eth0");
  EXPECT_EQ(config.routes(0).gateway(), "10.88.0.1");
  EXPECT_EQ(config.dns_servers(0), "10.88.0.1");
  EXPECT_EQ(config.dns_search(0), "example.test");
}

TEST(TranslateTest, SettingsPlanAndAttachmentBecomeTheVmSpec) {
  VmSettings settings;
  settings.kernel_path = "/k";
  settings.initrd_path = "/i";
  settings.kernel_cmdline = "quiet";
  settings.vcpus = 2;
  settings.memory_mib = 256;
  pluginapi::MountPlan plan;
  plan.add_devices()->mutable_share()->set_tag("rootfs");
  pluginapi::NetworkAttachment attachment;
  attachment.set_tap_name("tap0");
  attachment.set_mac("02:00:00:00:00:01");
  attachment.set_mtu(1500);
  auto spec =
      VmSpecFor(settings, {kKey, "/run/vm/default--c1", "/log/vm.log", 42}, plan, &attachment);
  EXPECT_EQ(spec.id(), kKey.id);
  EXPECT_EQ(spec.namespace_(), kKey.namespace_name);
  EXPECT_EQ(spec.kernel_path(), "/k");
  EXPECT_EQ(spec.kernel_cmdline(), "quiet");
  EXPECT_EQ(spec.vcpus(), 2u);
  EXPECT_EQ(spec.memory_mib(), 256u);
  EXPECT_EQ(spec.run_dir(), "/run/vm/default--c1");
  EXPECT_EQ(spec.console_log_path(), "/log/vm.log");
  EXPECT_EQ(spec.owner_pid(), 42);
  ASSERT_EQ(spec.devices_size(), 2);
  EXPECT_EQ(spec.devices(0).share().tag(), "rootfs");
  EXPECT_EQ(spec.devices(1).net().tap_name(), "tap0");
  EXPECT_EQ(spec.devices(1).net().id(), "eth0");
  EXPECT_EQ(VmSpecFor(settings, {}, plan, nullptr).devices_size(), 1);
}

TEST(SandboxStateTest, RoundTripsAndRefusesGarbage) {
  SandboxRecord record;
  record.sandbox = kKey;
  record.shim_pid = 7;
  record.vm_dir = "/run/vm/default--c1";
  record.network = Step::kStarted;
  record.vm = Step::kDone;
  record.vm_info.add_pids(11);
  record.vm_info.add_pids(12);
  record.vm_info.add_pid_start_times(123456789012ull);
  record.vm_info.add_pid_start_times(42);
  record.containers.push_back({kKey, "/b", Step::kDone});
  auto parsed = ParseRecord(SerializeRecord(record));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->sandbox, kKey);
  EXPECT_EQ(parsed->network, Step::kStarted);
  EXPECT_EQ(parsed->vm, Step::kDone);
  EXPECT_EQ(parsed->vm_info.pids_size(), 2);
  ASSERT_EQ(parsed->vm_info.pid_start_times_size(), 2);
  EXPECT_EQ(parsed->vm_info.pid_start_times(0), 123456789012ull);
  EXPECT_EQ(parsed->vm_info.pid_start_times(1), 42u);
  ASSERT_EQ(parsed->containers.size(), 1u);
  EXPECT_EQ(parsed->containers[0].rootfs, Step::kDone);
  EXPECT_EQ(parsed->containers[0].bundle, "/b");
  EXPECT_FALSE(ParseRecord("not json").ok());
  EXPECT_FALSE(ParseRecord(R"({"version": 99})").ok());
  // Wrong types are ignored, never thrown on.
  auto odd = ParseRecord(R"({"version":1,"vm":{"step":3,"info":{"pids":["x"]}},"containers":[1]})");
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(odd->vm, Step::kNone);
  // A file of an older shim has no start times: none are made up.
  auto old = ParseRecord(R"({"version":1,"vm":{"step":"done","info":{"pids":[11,12]}}})");
  ASSERT_TRUE(old.ok()) << old.error().message;
  EXPECT_EQ(old->vm_info.pids_size(), 2);
  EXPECT_EQ(old->vm_info.pid_start_times_size(), 0);
}

}  // namespace
}  // namespace beaconbox::shim
