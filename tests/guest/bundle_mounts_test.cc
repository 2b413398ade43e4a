#include "guest/vminitd/bundle_mounts.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace beaconbox::guest {
namespace {

TEST(BundleMounts, ResolvesRelativeOverlayPathsAgainstTheBundle) {
  auto overlay = ResolveOverlayOptions(
      "/run/b/c1", {"lowerdir=rootfs-image:/abs/layer", "upperdir=scratch/upper",
                    "workdir=scratch/work", "index=off"});
  ASSERT_TRUE(overlay.ok()) << overlay.error().message;
  EXPECT_EQ(overlay->options,
            (std::vector<std::string>{"lowerdir=/run/b/c1/rootfs-image:/abs/layer",
                                      "upperdir=/run/b/c1/scratch/upper",
                                      "workdir=/run/b/c1/scratch/work", "index=off"}));
  EXPECT_EQ(overlay->directories,
            (std::vector<std::string>{"/run/b/c1/scratch/upper", "/run/b/c1/scratch/work"}));
}

TEST(BundleMounts, RefusesPathsLeavingTheBundle) {
  EXPECT_FALSE(ResolveOverlayOptions("/run/b/c1", {"lowerdir=../../etc"}).ok());
  EXPECT_FALSE(ResolveOverlayOptions("/run/b/c1", {"lowerdir=a::b"}).ok());
  EXPECT_FALSE(ResolveOverlayOptions("/run/b/c1", {"upperdir=x/./y"}).ok());
  EXPECT_FALSE(ResolveOverlayOptions("/run/b/c1", {"workdir="}).ok());
}

}  // namespace
}  // namespace beaconbox::guest

namespace beaconbox::guest {
namespace {

TEST(BundleMounts, ResolvesAVirtioDiskBySerial) {
  char pattern[] = "/tmp/bbx-sysblock-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string sys = pattern;
  std::filesystem::create_directories(sys + "/vda");
  std::filesystem::create_directories(sys + "/vdb");
  std::ofstream(sys + "/vda/serial") << "erofs1";
  std::ofstream(sys + "/vdb/serial") << "erofs0\n";
  auto disk =
      ResolveDiskSource("/dev/disk/by-id/virtio-erofs0", std::chrono::milliseconds(0), sys, "/dev");
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_EQ(*disk, "/dev/vdb");
  auto missing = ResolveDiskSource("/dev/disk/by-id/virtio-erofs7", std::chrono::milliseconds(50),
                                   sys, "/dev");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("erofs7"), std::string::npos);
  EXPECT_FALSE(
      ResolveDiskSource("/dev/disk/by-id/virtio-../x", std::chrono::milliseconds(0), sys, "/dev")
          .ok());
  auto other = ResolveDiskSource("tmpfs", std::chrono::milliseconds(0), sys, "/dev");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*other, "tmpfs");
  std::filesystem::remove_all(sys);
}

}  // namespace
}  // namespace beaconbox::guest
