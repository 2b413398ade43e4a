#include "host/shim/runtime_layout.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "host/shim/console_logs.h"

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

// Console logs of deleted containers go after the retention, counted from the
// delete; a live VM's (locked by its VMM plugin) and other files stay.
TEST(ConsoleLogRetention, RemovesOnlyDeletedContainersLogsPastTheRetention) {
  char pattern[] = "/tmp/bbx-console-logs-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  auto make = [&](const std::string& name, int age_s) {
    std::string path = dir + "/" + name;
    std::ofstream(path) << "console\n";
    struct timespec times[2] = {{::time(nullptr) - age_s, 0}, {::time(nullptr) - age_s, 0}};
    ::utimensat(AT_FDCWD, path.c_str(), times, 0);
    return path;
  };
  const int kDay = 24 * 3600;
  auto old_log = make("vm-default--old.log", 10 * kDay);
  auto old_rotated = make("vm-default--old.log.1", 10 * kDay);
  auto orphan_rotated = make("vm-default--gone.log.1", 10 * kDay);
  auto recent_log = make("vm-default--recent.log", 1 * kDay);
  auto live_log = make("vm-default--live.log", 10 * kDay);
  auto other = make("containerd.log", 10 * kDay);
  auto just_deleted = make("vm-default--deleted.log", 10 * kDay);
  MarkConsoleLogDeleted(just_deleted);  // retention counts from the delete
  int live_fd = ::open(live_log.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(live_fd, 0);
  ASSERT_EQ(::flock(live_fd, LOCK_SH), 0);  // as vmm-qemu's CappedLog holds it

  EXPECT_EQ(SweepConsoleLogs(dir, std::chrono::seconds(7 * kDay)), 3u);
  namespace fs = std::filesystem;
  EXPECT_FALSE(fs::exists(old_log));
  EXPECT_FALSE(fs::exists(old_rotated));
  EXPECT_FALSE(fs::exists(orphan_rotated));
  EXPECT_TRUE(fs::exists(recent_log));
  EXPECT_TRUE(fs::exists(live_log));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(just_deleted));

  // Retention 0: everything not live goes at once.
  EXPECT_EQ(SweepConsoleLogs(dir, std::chrono::seconds(0)), 2u);
  EXPECT_TRUE(fs::exists(live_log));
  EXPECT_TRUE(fs::exists(other));
  ::close(live_fd);
  std::error_code ignored;
  fs::remove_all(dir, ignored);
}

}  // namespace
}  // namespace beaconbox::shim
