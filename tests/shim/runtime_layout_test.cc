#include "host/shim/runtime_layout.h"

#include <gtest/gtest.h>

namespace beaconbox::shim {
namespace {

TEST(RuntimeLayoutTest, KeysEveryPathByNamespaceAndId) {
  RuntimeLayout layout("/run/beacon", "/var/log/beacon");
  const ContainerKey a{"default", "c1"};
  const ContainerKey b{"k8s.io", "c1"};
  EXPECT_EQ(*layout.VmDir(a), "/run/beacon/vm/default--c1");
  EXPECT_EQ(*layout.VmDir(b), "/run/beacon/vm/k8s.io--c1");
  EXPECT_EQ(layout.ConsoleLogPath(a), "/var/log/beacon/vm-default--c1.log");
  EXPECT_NE(layout.ConsoleLogPath(a), layout.ConsoleLogPath(b));
  EXPECT_NE(*layout.ShimSocketPath("/run/containerd/containerd.sock", a),
            *layout.ShimSocketPath("/run/containerd/containerd.sock", b));
  EXPECT_NE(*layout.ShimSocketPath("/a.sock", a), *layout.ShimSocketPath("/b.sock", a));
  EXPECT_EQ(*layout.ShimSocketPath("/x", a), *layout.ShimSocketPath("/x", a));
  EXPECT_EQ(RuntimeLayout::StateFilePath("/b"), "/b/beaconbox-state.json");
  EXPECT_EQ(RuntimeLayout::AddressFilePath("/b"), "/b/address");
}

TEST(RuntimeLayoutTest, SeparatorCannotBeForged) {
  // "a-" + "-b" would read like "a--b"; containerd refuses such names, so do we.
  EXPECT_EQ(KeyFileName({"a", "b"}), "a--b");
  EXPECT_TRUE(KeyFileName({"a-", "b"}).starts_with("h-"));
  EXPECT_TRUE(KeyFileName({"a", "-b"}).starts_with("h-"));
  EXPECT_TRUE(KeyFileName({"a", "../x"}).starts_with("h-"));
  EXPECT_TRUE(KeyFileName({"a", "x/y"}).starts_with("h-"));
  EXPECT_NE(KeyFileName({"a", "-b"}), KeyFileName({"a-", "b"}));
}

TEST(RuntimeLayoutTest, SocketPathsFitSunPathOrHashOrFail) {
  const std::string long_id(76, 'x');
  RuntimeLayout layout("/run/beacon", "/var/log/beacon");
  auto vm_dir = layout.VmDir({"default", long_id});
  ASSERT_TRUE(vm_dir.ok());
  EXPECT_TRUE(vm_dir->starts_with("/run/beacon/vm/h-"));
  EXPECT_LE(vm_dir->size() + RuntimeLayout::kVmSocketNameRoom, RuntimeLayout::kMaxSocketPath);
  auto socket = layout.ShimSocketPath("/run/containerd/containerd.sock", {"default", long_id});
  ASSERT_TRUE(socket.ok());
  EXPECT_LE(socket->size(), RuntimeLayout::kMaxSocketPath);

  RuntimeLayout deep("/" + std::string(100, 'd'), "/log");
  auto refused = deep.VmDir({"default", "c1"});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("paths.run_dir"), std::string::npos);
  EXPECT_FALSE(deep.ShimSocketPath("/x", {"default", "c1"}).ok());
}

TEST(RuntimeLayoutTest, OnlyItsOwnVmDirsAreRemovable) {
  RuntimeLayout layout("/run/beacon/", "/log");
  EXPECT_TRUE(layout.IsVmDir("/run/beacon/vm/default--c1"));
  EXPECT_FALSE(layout.IsVmDir("/run/beacon/vm/"));
  EXPECT_FALSE(layout.IsVmDir("/run/beacon/vm/.."));
  EXPECT_FALSE(layout.IsVmDir("/run/beacon/vm/a/../../etc"));
  EXPECT_FALSE(layout.IsVmDir("/etc"));
}

}  // namespace
}  // namespace beaconbox::shim
