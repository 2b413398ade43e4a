// A network namespace of the test's own for net-cni's tests (needs root: skipped
// otherwise), under a temp dir removed with it; In() runs work there, Shell() a
// command (a child forked from the thread that joined it).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

#include "plugins/common/netns.h"

namespace beaconbox::cni {

class NetnsFixture : public ::testing::Test {
 protected:
  explicit NetnsFixture(std::string prefix) : prefix_(std::move(prefix)) {}
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    dir_ = std::filesystem::temp_directory_path() / (prefix_ + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    netns_ = (dir_ / "ns").string();
    ASSERT_TRUE(plugins::CreateNetns(netns_).ok());
  }
  void TearDown() override {
    if (!netns_.empty()) (void)plugins::RemoveNetns(netns_);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  Status In(const std::function<Status()>& work) { return plugins::RunInNetns(netns_, work); }
  int Shell(const std::string& command) {
    int code = -1;
    (void)In([&] {
      code = std::system(command.c_str());
      return Status::Ok();
    });
    return code;
  }

  std::string prefix_;
  std::filesystem::path dir_;
  std::string netns_;
};

}  // namespace beaconbox::cni
