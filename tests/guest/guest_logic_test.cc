#include "guest/vminitd/guest_logic.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

namespace beaconbox::guest {
namespace {

TEST(CmdlineTest, ParsesKeysValuesAndQuotes) {
  auto params = ParseCmdline(
      "console=ttyS0 quiet beaconbox.channel=virtio-serial:beaconbox.agent "
      "x=\"a b\" console=hvc0\n");
  EXPECT_EQ(params["beaconbox.channel"], "virtio-serial:beaconbox.agent");
  EXPECT_EQ(params["x"], "a b");
  EXPECT_EQ(params["console"], "hvc0");  // the last one wins
  EXPECT_TRUE(params.count("quiet"));
  EXPECT_EQ(params["quiet"], "");
  EXPECT_TRUE(ParseCmdline("").empty());
}

TEST(CmdlineTest, ChannelSpecs) {
  auto serial = ParseChannelSpec("virtio-serial:beaconbox.agent");
  ASSERT_TRUE(serial.ok());
  EXPECT_EQ(serial->kind, ChannelSpec::Kind::kVirtioSerial);
  EXPECT_EQ(serial->port_name, "beaconbox.agent");
  auto vsock = ParseChannelSpec("vsock:1024");
  ASSERT_TRUE(vsock.ok());
  EXPECT_EQ(vsock->kind, ChannelSpec::Kind::kVsock);
  EXPECT_EQ(vsock->vsock_port, 1024u);
  for (const char* bad : {"", "vsock:", "vsock:0", "vsock:12x", "vsock:99999999999",
                          "virtio-serial:", "virtio-serial:../x", "tcp:1"}) {
    auto parsed = ParseChannelSpec(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
    }
  }
}

TEST(IdTest, AcceptsContainerdStyleIds) {
  const std::string longest(128, 'x');
  for (const std::string& good :
       std::vector<std::string>{"a", "redis", "c0ffee_1.2-3", "ABC", longest}) {
    EXPECT_TRUE(ValidateId(good, "container id").ok()) << good;
  }
}

TEST(IdTest, RejectsTraversalAndOddCharacters) {
  for (const std::string& bad :
       std::vector<std::string>{"", ".", "..", "../x", "a/b", "-x", ".hidden", "a b", "a\nb",
                                std::string("a\0b", 3), std::string(129, 'x'), std::string("é")}) {
    Status s = ValidateId(bad, "container id");
    EXPECT_FALSE(s.ok()) << bad;
    if (!s.ok()) {
      EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument);
      EXPECT_NE(s.error().message.find("container id"), std::string::npos);
    }
  }
}

TEST(RelativePathTest, Traversal) {
  EXPECT_TRUE(ValidateRelativePath("rootfs").ok());
  EXPECT_TRUE(ValidateRelativePath("rootfs/data/x").ok());
  for (const char* bad : {"", "/abs", "..", "a/../b", "a//b", "./a", "a/", "a/."}) {
    EXPECT_FALSE(ValidateRelativePath(bad).ok()) << bad;
  }
}

TEST(MountOptionsTest, FlagsAndData) {
  MountOptions o = ParseMountOptions({"ro", "nosuid", "nodev", "size=64m", "mode=755", "noexec"});
  EXPECT_EQ(o.flags, static_cast<unsigned long>(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC));
  EXPECT_EQ(o.data, "size=64m,mode=755");
  EXPECT_FALSE(o.bind);
  EXPECT_FALSE(o.remount_readonly);
}

TEST(MountOptionsTest, LaterWordsOverrideEarlier) {
  MountOptions o = ParseMountOptions({"ro", "rw", "nosuid", "suid", "defaults"});
  EXPECT_EQ(o.flags, 0ul);
  EXPECT_EQ(o.data, "");
}

TEST(MountOptionsTest, BindAndPropagation) {
  MountOptions o = ParseMountOptions({"rbind", "ro", "rprivate"});
  EXPECT_TRUE(o.bind);
  EXPECT_TRUE(o.flags & MS_BIND);
  EXPECT_TRUE(o.flags & MS_REC);
  EXPECT_TRUE(o.remount_readonly);
  EXPECT_EQ(o.propagation, static_cast<unsigned long>(MS_PRIVATE | MS_REC));
  EXPECT_EQ(o.data, "");
}

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

}  // namespace
}  // namespace beaconbox::guest

namespace beaconbox::guest {
namespace {

TEST(NetworkTest, Cidr4) {
  auto cidr = ParseCidr4("10.88.0.2/16");
  ASSERT_TRUE(cidr.ok());
  EXPECT_EQ(cidr->prefix, 16u);
  const unsigned char* addr = reinterpret_cast<const unsigned char*>(&cidr->address);
  const unsigned char* mask = reinterpret_cast<const unsigned char*>(&cidr->netmask);
  EXPECT_EQ(addr[0], 10);
  EXPECT_EQ(addr[3], 2);
  EXPECT_EQ(mask[0], 255);
  EXPECT_EQ(mask[1], 255);
  EXPECT_EQ(mask[2], 0);
  EXPECT_EQ(ParseCidr4("0.0.0.0/0")->netmask, 0u);
  for (const char* bad :
       {"10.0.0.1", "10.0.0.1/33", "10.0.0.1/", "x/8", "fe80::1/64", "10.0.0.1/8x"}) {
    EXPECT_FALSE(ParseCidr4(bad).ok()) << bad;
  }
}

TEST(NetworkTest, ResolvConf) {
  auto text = RenderResolvConf({"10.0.0.1", "fd00::1"}, {"example.org", "corp"});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "nameserver 10.0.0.1\nnameserver fd00::1\nsearch example.org corp\n");
  EXPECT_FALSE(RenderResolvConf({"10.0.0.1\nnameserver 6.6.6.6"}, {}).ok());
  EXPECT_FALSE(RenderResolvConf({"dns.example"}, {}).ok());
  EXPECT_FALSE(RenderResolvConf({}, {"a b"}).ok());
}

}  // namespace
}  // namespace beaconbox::guest
