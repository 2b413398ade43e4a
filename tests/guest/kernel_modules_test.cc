#include "guest/vminitd/kernel_modules.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace beaconbox::guest {
namespace {

TEST(ModulesTest, Names) {
  EXPECT_EQ(ModuleName("kernel/drivers/char/hw_random/virtio-rng.ko"), "virtio_rng");
  EXPECT_EQ(ModuleName("virtio-rng"), "virtio_rng");
  EXPECT_EQ(ModuleName("kernel/fs/fuse/fuse.ko.xz"), "fuse");
}

constexpr char kModulesDep[] =
    "kernel/fs/fuse/fuse.ko:\n"
    "kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko "
    "kernel/fs/fuse/fuse.ko\n"
    "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko "
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/virtio/virtio.ko:\n"
    "kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n"
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n"
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n"
    "kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/net/a.ko: kernel/net/b.ko\n"
    "kernel/net/b.ko: kernel/net/a.ko\n";

size_t IndexOf(const std::vector<std::string>& v, const std::string& s) {
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] == s) return i;
  ADD_FAILURE() << s << " missing";
  return v.size();
}

TEST(ModulesTest, DependenciesComeFirstEachOnce) {
  auto deps = ParseModulesDep(kModulesDep);
  auto order = ResolveModuleOrder({"virtio_pci", "virtiofs", "virtio-rng", "fuse"}, deps, {});
  ASSERT_TRUE(order.ok()) << order.error().message;
  EXPECT_EQ(order->size(), 8u);
  const std::string virtio = "kernel/drivers/virtio/virtio.ko";
  const std::string ring = "kernel/drivers/virtio/virtio_ring.ko";
  EXPECT_LT(IndexOf(*order, virtio), IndexOf(*order, ring));
  EXPECT_LT(IndexOf(*order, ring), IndexOf(*order, "kernel/drivers/virtio/virtio_pci.ko"));
  EXPECT_LT(IndexOf(*order, "kernel/fs/fuse/fuse.ko"),
            IndexOf(*order, "kernel/fs/fuse/virtiofs.ko"));
  EXPECT_LT(IndexOf(*order, "kernel/drivers/virtio/virtio_pci_modern_dev.ko"),
            IndexOf(*order, "kernel/drivers/virtio/virtio_pci.ko"));
}

TEST(ModulesTest, BuiltinIsSkippedUnknownIsAnError) {
  auto deps = ParseModulesDep(kModulesDep);
  auto builtin =
      ParseModulesBuiltin("kernel/drivers/tty/serial/8250/8250.ko\nkernel/fs/ext4/ext4.ko\n");
  auto order = ResolveModuleOrder({"ext4", "fuse"}, deps, builtin);
  ASSERT_TRUE(order.ok());
  EXPECT_EQ(*order, std::vector<std::string>{"kernel/fs/fuse/fuse.ko"});
  auto missing = ResolveModuleOrder({"nosuchmod"}, deps, builtin);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("nosuchmod"), std::string::npos);
  auto cycle = ResolveModuleOrder({"a"}, deps, builtin);
  ASSERT_FALSE(cycle.ok());
  EXPECT_NE(cycle.error().message.find("cycle"), std::string::npos);
}

TEST(ModulesTest, ModuleRequestValidation) {
  EXPECT_TRUE(IsValidModuleRequest("bridge"));
  EXPECT_TRUE(IsValidModuleRequest("rtnl-link-dummy"));
  EXPECT_TRUE(IsValidModuleRequest(std::string(55, 'a')));
  EXPECT_FALSE(IsValidModuleRequest(std::string(56, 'a')));
  EXPECT_FALSE(IsValidModuleRequest(""));
  EXPECT_FALSE(IsValidModuleRequest("../bridge"));
  EXPECT_FALSE(IsValidModuleRequest("/lib/modules/x/bridge.ko"));
  EXPECT_FALSE(IsValidModuleRequest("bridge.ko"));
  EXPECT_FALSE(IsValidModuleRequest("net-pf-*"));
  EXPECT_FALSE(IsValidModuleRequest("bri dge"));
  EXPECT_FALSE(IsValidModuleRequest("-bridge"));
  EXPECT_FALSE(IsValidModuleRequest(std::string("bri\0dge", 7)));
}

TEST(ModulesTest, ModprobeArgs) {
  auto name = ParseModprobeArgs({"-q", "--", "bridge"});
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(*name, "bridge");
  // After "--" an argument that looks like an option is the name, and it is not valid.
  EXPECT_FALSE(ParseModprobeArgs({"-q", "--", "-r"}).ok());
  EXPECT_FALSE(ParseModprobeArgs({"-r", "bridge"}).ok());  // -r is taken as the name
  EXPECT_FALSE(ParseModprobeArgs({"-q", "--"}).ok());
  EXPECT_FALSE(ParseModprobeArgs({}).ok());
  EXPECT_FALSE(ParseModprobeArgs({"bridge", "veth"}).ok());
  auto path = ParseModprobeArgs({"-q", "--", "/tmp/evil.ko"});
  ASSERT_FALSE(path.ok());
  EXPECT_NE(path.error().message.find("not a module name"), std::string::npos);
}

constexpr char kOnDemand[] =
    "bridge rtnl-link-bridge: /lib/modules/6.1/kernel/net/llc/llc.ko "
    "/lib/modules/6.1/kernel/net/802/stp.ko /lib/modules/6.1/kernel/net/bridge/bridge.ko\n"
    "veth rtnl-link-veth: /lib/modules/6.1/kernel/drivers/net/veth.ko\n"
    "\n"
    "dummy rtnl-link-dummy: /lib/modules/6.1/kernel/drivers/net/dummy.ko\n";

TEST(ModulesTest, OnDemandListLookup) {
  auto bridge = OnDemandModuleFiles("bridge", kOnDemand);
  ASSERT_TRUE(bridge.ok()) << bridge.error().message;
  EXPECT_EQ(*bridge, (std::vector<std::string>{"/lib/modules/6.1/kernel/net/llc/llc.ko",
                                               "/lib/modules/6.1/kernel/net/802/stp.ko",
                                               "/lib/modules/6.1/kernel/net/bridge/bridge.ko"}));
  auto dummy = OnDemandModuleFiles("rtnl-link-dummy", kOnDemand);  // by alias
  ASSERT_TRUE(dummy.ok()) << dummy.error().message;
  EXPECT_EQ(*dummy, std::vector<std::string>{"/lib/modules/6.1/kernel/drivers/net/dummy.ko"});
  EXPECT_TRUE(OnDemandModuleFiles("rtnl_link_veth", kOnDemand).ok());  // '-' and '_' alike
  // A dependency is not a request of its own, nor is anything unlisted.
  auto stp = OnDemandModuleFiles("stp", kOnDemand);
  ASSERT_FALSE(stp.ok());
  EXPECT_EQ(stp.error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(OnDemandModuleFiles("rtnl-link-vxlan", kOnDemand).ok());
  EXPECT_FALSE(OnDemandModuleFiles("", kOnDemand).ok());
  auto bad = OnDemandModuleFiles("../../bridge", kOnDemand);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  // A broken list is an error, not a load of whatever it names.
  EXPECT_FALSE(OnDemandModuleFiles("bridge", "bridge: relative/bridge.ko\n").ok());
  EXPECT_FALSE(OnDemandModuleFiles("bridge", "bridge: /lib/../tmp/bridge.ko\n").ok());
  EXPECT_FALSE(OnDemandModuleFiles("bridge", "bridge: /lib/bridge.sh\n").ok());
  EXPECT_FALSE(OnDemandModuleFiles("bridge", "bridge:\n").ok());
  EXPECT_FALSE(OnDemandModuleFiles("bridge", "bridge /lib/bridge.ko\n").ok());
}

TEST(ModulesTest, RemovesTheListedModuleFilesOnly) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) / "remove-modules";
  fs::remove_all(dir);
  fs::create_directories(dir / "kernel/fs/fuse");
  const auto touch = [](const fs::path& path) { std::ofstream(path) << "x"; };
  touch(dir / "kernel/fs/fuse/fuse.ko");
  touch(dir / "kernel/fs/fuse/virtiofs.ko.xz");
  touch(dir / "kernel/fs/fuse/notes.txt");    // listed, not a module file: kept
  touch(dir / "kernel/fs/fuse/unlisted.ko");  // not listed: kept
  std::ofstream(dir / "modules.order") << (dir / "kernel/fs/fuse/fuse.ko").string() << "\n\n"
                                       << (dir / "kernel/fs/fuse/virtiofs.ko.xz").string() << "\n"
                                       << (dir / "kernel/fs/fuse/notes.txt").string() << "\n"
                                       << "kernel/fs/fuse/unlisted.ko\n"  // relative: ignored
                                       << (dir / "kernel/fs/fuse/gone.ko").string() << "\n";
  EXPECT_EQ(RemoveListedModuleFiles((dir / "modules.order").string()), 2);
  EXPECT_FALSE(fs::exists(dir / "kernel/fs/fuse/fuse.ko"));
  EXPECT_FALSE(fs::exists(dir / "kernel/fs/fuse/virtiofs.ko.xz"));
  EXPECT_TRUE(fs::exists(dir / "kernel/fs/fuse/notes.txt"));
  EXPECT_TRUE(fs::exists(dir / "kernel/fs/fuse/unlisted.ko"));
  EXPECT_TRUE(fs::exists(dir / "modules.order"));
  EXPECT_EQ(RemoveListedModuleFiles((dir / "no-such-order").string()), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace beaconbox::guest
