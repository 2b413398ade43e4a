#include "plugins/common/path_search.h"

#include <gtest/gtest.h>

#include "tests/plugins/common/temp_dir.h"

namespace beaconbox::plugins {
namespace {

using testing::TempDir;

TEST(FindInPathTest, FirstExecutableMatchInOrder) {
  TempDir first;
  TempDir second;
  first.Write("tool", "not executable", 0644);
  const std::string found = second.Write("tool", "#!/bin/sh\n", 0755);
  const std::string later = TempDir().path();  // already removed: a missing directory
  const std::string search = later + ":" + first.path() + ":" + second.path();
  EXPECT_EQ(FindInPath("tool", search.c_str()), found);
}

TEST(FindInPathTest, APathIsKeptAndAMissingNameFallsBackToUsrBin) {
  EXPECT_EQ(FindInPath("./relative/tool", "/bin"), "./relative/tool");
  EXPECT_EQ(FindInPath("/opt/qemu/bin/qemu", "/bin"), "/opt/qemu/bin/qemu");
  TempDir empty;
  EXPECT_EQ(FindInPath("no-such-tool-bbx", empty.path().c_str()), "/usr/bin/no-such-tool-bbx");
}

TEST(FindInPathTest, UsesPathFromTheEnvironmentByDefault) {
  TempDir dir;
  const std::string found = dir.Write("bbx-env-tool", "#!/bin/sh\n", 0755);
  const char* saved = std::getenv("PATH");
  const std::string old_path = saved ? saved : "";
  ::setenv("PATH", ("/nonexistent:" + dir.path()).c_str(), 1);
  EXPECT_EQ(FindInPath("bbx-env-tool"), found);
  ::setenv("PATH", old_path.c_str(), 1);
}

}  // namespace
}  // namespace beaconbox::plugins
