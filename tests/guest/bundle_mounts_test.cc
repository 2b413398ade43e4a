#include "guest/vminitd/bundle_mounts.h"

#include <gtest/gtest.h>

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
