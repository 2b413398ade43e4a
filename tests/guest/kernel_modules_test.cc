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
