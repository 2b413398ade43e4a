// Helpers for the net-bridge tests: a private network namespace per test, a
// temporary state directory, and running ip/nft inside that namespace.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

namespace beaconbox::net::testing {

inline std::string TempDir(const char* tag) {
  std::string pattern = std::filesystem::temp_directory_path() / (std::string(tag) + "-XXXXXX");
  char* made = ::mkdtemp(pattern.data());
  return made != nullptr ? std::string(made) : std::string();
}

// Runs a shell command (from this thread, so inside its netns); returns stdout and
// sets *exit_code.
inline std::string Shell(const std::string& command, int* exit_code = nullptr) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    output.append(buffer.data(), n);
  int status = ::pclose(pipe);
  if (exit_code != nullptr) *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return output;
}

inline ino_t NetnsInode(const char* path = "/proc/thread-self/ns/net") {
  struct stat info {};
  return ::stat(path, &info) == 0 ? info.st_ino : 0;
}

// Every test of this fixture runs in a fresh network namespace entered by the test
// thread with unshare(CLONE_NEWNET) and left again in TearDown. The kernel frees
// the namespace (bridge, TAPs, nftables) once nothing refers to it, so nothing
// outlives the test even when it fails. Subclasses must destroy what they opened
// before NetnsTest::TearDown runs.
class NetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_dir_ = TempDir("bbx-net-test");
    ASSERT_FALSE(state_dir_.empty());
    original_netns_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(original_netns_, 0);
    ino_t before = NetnsInode();
    ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << "unshare(CLONE_NEWNET): " << std::strerror(errno);
    in_netns_ = true;
    ASSERT_NE(NetnsInode(), before) << "not in a new network namespace; refusing to go on";
  }
  void TearDown() override {
    if (in_netns_) {
      EXPECT_EQ(::setns(original_netns_, CLONE_NEWNET), 0) << std::strerror(errno);
    }
    if (original_netns_ >= 0) ::close(original_netns_);
    std::error_code ec;
    if (!state_dir_.empty()) std::filesystem::remove_all(state_dir_, ec);
  }

  std::string state_dir_;
  int original_netns_ = -1;
  bool in_netns_ = false;
};

}  // namespace beaconbox::net::testing
