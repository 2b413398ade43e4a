// Live plugin upgrade (issue 12): a package manager replaces a plugin file by writing
// the new one beside it and rename(2)-ing it over the old (dpkg does). A running shim
// keeps the .so it mapped -- the old inode stays alive while mapped -- and its calls
// into it keep working; the next process that loads the path (the next shim, or
// beaconbox-ctl) gets the new plugin. Rewriting the file in place instead would
// change the pages under the running shim: never do that (README).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "host/plugin_host/plugin_loader.h"
#include "tests/plugin_host/test_util.h"

namespace beaconbox {
namespace {

namespace fs = std::filesystem;
using beaconbox::testing::PluginTable;
using beaconbox::testing::TempDir;
using ::testing::HasSubstr;

// Runs beaconbox-ctl (a new process, as the next shim is) and returns its stdout.
std::string CtlPlugins(const std::string& config, const std::string& dir) {
  const std::string out_path = dir + "/ctl.out";
  pid_t pid = ::fork();
  if (pid == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    ::execl(BEACONBOX_CTL, BEACONBOX_CTL, "--config", config.c_str(), "plugins", nullptr);
    _exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::ifstream in(out_path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text.str();
  return text.str();
}

// Calls the plugin's entry again through the loaded handle: code and data of the
// mapping this process holds. Returns the version it answers.
std::string AskEntryForVersion(const plugin_host::LoadedPlugin& plugin) {
  bbx_entry_request request{sizeof(bbx_entry_request), BBX_ABI_VERSION_MIN_SUPPORTED,
                            BBX_ABI_VERSION_CURRENT};
  bbx_entry_response response{};
  response.struct_size = sizeof(response);
  plugin_host::ErrorBuffer error;
  if (plugin.entry()(&request, &response, error.get()) != BBX_OK) return "entry failed";
  return response.version ? response.version : "";
}

// The inode of `path` as mapped into this process (/proc/self/maps), 0 if not mapped.
ino_t MappedInode(const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(" " + path) == std::string::npos) continue;
    std::istringstream fields(line);
    std::string range, perms, offset, device;
    ino_t inode = 0;
    fields >> range >> perms >> offset >> device >> inode;
    return inode;
  }
  return 0;
}

TEST(PluginUpgradeTest, ARunningProcessKeepsTheOldPluginAndTheNextGetsTheNewOne) {
  TempDir dir;
  const std::string installed = dir.path() + "/vmm-fake.so";
  fs::copy_file(FIXTURE_VMM_V1, installed);
  const std::string config = dir.Write(
      "config.toml", "[network]\nmode = \"none\"\n" + PluginTable("vmm", "fake", installed));

  // The running shim: version 1 loaded and initialized.
  auto old = plugin_host::LoadedPlugin::Open(installed, "vmm", "fake", "plugin vmm/fake");
  ASSERT_TRUE(old.ok()) << old.error().message;
  ASSERT_TRUE((*old)->Init("", config::Paths{}).ok());
  EXPECT_EQ((*old)->info().version, "1.0.0");
  const ino_t old_inode = MappedInode(installed);
  ASSERT_NE(old_inode, 0u) << "the plugin is not mapped from " << installed;

  // The upgrade, as dpkg does it: the new file beside the old, renamed over it.
  const std::string staged = installed + ".dpkg-new";
  fs::copy_file(FIXTURE_VMM_V2, staged);
  ASSERT_EQ(::rename(staged.c_str(), installed.c_str()), 0);
  struct stat now {};
  ASSERT_EQ(::stat(installed.c_str(), &now), 0);
  EXPECT_NE(now.st_ino, old_inode) << "rename did not put a new file there";

  // The running process still maps the old inode, and its calls into it work.
  EXPECT_EQ(MappedInode(installed), old_inode);
  EXPECT_EQ(AskEntryForVersion(**old), "1.0.0");
  EXPECT_EQ((*old)->info().version, "1.0.0");
  auto capabilities = (*old)->Capabilities();
  EXPECT_TRUE(capabilities.ok()) << capabilities.error().message;

  // The next process loads the new file and reports the new version and the ABI.
  std::string listing = CtlPlugins(config, dir.path());
  EXPECT_THAT(listing, HasSubstr("vmm      fake               2.0.0      2    " + installed));

  // And the old handle is still good after that, then unloads cleanly.
  EXPECT_EQ(AskEntryForVersion(**old), "1.0.0");
  old->reset();
}

}  // namespace
}  // namespace beaconbox
