// The host's directories as a plugin reads them, and config paths defaulting under
// them (shared by net-bridge and net-cni).
#include "plugins/common/host_dirs.h"

#include <gtest/gtest.h>

#include <cstddef>

namespace beaconbox::plugins {
namespace {

TEST(HostDirs, ReadsOnlyWhatTheHostsStructHas) {
  EXPECT_EQ(HostDirsOf(nullptr).state_dir, "");
  bbx_host_services host{};
  host.struct_size = sizeof(host);
  host.state_dir = "/var/lib/beacon";
  host.run_dir = "/run/beacon";
  EXPECT_EQ(HostDirsOf(&host).state_dir, "/var/lib/beacon");
  EXPECT_EQ(HostDirsOf(&host).run_dir, "/run/beacon");
  // An older host whose struct ends before run_dir.
  host.struct_size = offsetof(bbx_host_services, run_dir);
  EXPECT_EQ(HostDirsOf(&host).state_dir, "/var/lib/beacon");
  EXPECT_EQ(HostDirsOf(&host).run_dir, "");
}

TEST(HostDirs, PathsDefaultUnderTheDirectoryOrSayWhatToSet) {
  std::string path;
  ASSERT_TRUE(DefaultPathUnder(path, "cache_dir", "/var/lib/beacon", "state", "cni").ok());
  EXPECT_EQ(path, "/var/lib/beacon/cni");
  path = "/elsewhere/db";
  ASSERT_TRUE(DefaultPathUnder(path, "db_path", "/var/lib/beacon", "state", "network.db").ok());
  EXPECT_EQ(path, "/elsewhere/db");
  path.clear();
  Status missing = DefaultPathUnder(path, "netns_dir", "", "run", "netns");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message, "config key netns_dir: no run directory given: set it");
  path = "relative/db";
  Status relative = DefaultPathUnder(path, "db_path", "/var/lib/beacon", "state", "network.db");
  ASSERT_FALSE(relative.ok());
  EXPECT_EQ(relative.error().message, "config key db_path: must be an absolute path");
}

}  // namespace
}  // namespace beaconbox::plugins
