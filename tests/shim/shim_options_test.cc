#include "host/shim/shim_options.h"

#include <google/protobuf/any.pb.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/base/file_util.h"
#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"

namespace beaconbox::shim {
namespace {

namespace fs = std::filesystem;

template <typename Message>
std::string AnyOf(const Message& message) {
  google::protobuf::Any any;
  any.PackFrom(message);
  return any.SerializeAsString();
}

TEST(ShimStartOptionsTest, RuncOptionsGiveTheShimCgroup) {
  EXPECT_EQ(ParseShimStartOptions("")->shim_cgroup, "");
  containerd::runc::v1::Options runc;
  runc.set_shim_cgroup("/bbx/shim");
  runc.set_binary_name("runc");
  // containerd's type URL (typeurl) is the bare full name, protobuf's has a prefix.
  google::protobuf::Any bare;
  bare.set_type_url("containerd.runc.v1.Options");
  bare.set_value(runc.SerializeAsString());
  EXPECT_EQ(ParseShimStartOptions(bare.SerializeAsString())->shim_cgroup, "/bbx/shim");
  EXPECT_EQ(ParseShimStartOptions(AnyOf(runc))->shim_cgroup, "/bbx/shim");
  // Another runtime's options type: nothing for this shim.
  google::protobuf::Any other;
  other.set_type_url("runtimeoptions.v1.Options");
  other.set_value(runc.SerializeAsString());
  EXPECT_EQ(ParseShimStartOptions(other.SerializeAsString())->shim_cgroup, "");
  auto garbage = ParseShimStartOptions("\xff\xff\xff");
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().code, ErrorCode::kInvalidArgument);
  bare.set_value("\x1a\xff");  // field 3 with a length running past the end
  EXPECT_FALSE(ParseShimStartOptions(bare.SerializeAsString()).ok());
}

// runtimeoptions.v1.Options as CRI sends a runtime's `options` table {ConfigPath = ...}
// and `ctr run --runtime-config-path` sends it: type_url = 1, config_path = 2.
std::string RuntimeOptionsAny(const std::string& type_url, const std::string& config_path) {
  std::string value;
  if (!type_url.empty()) value += "\x0a" + std::string(1, char(type_url.size())) + type_url;
  value += "\x12" + std::string(1, char(config_path.size())) + config_path;
  google::protobuf::Any any;
  any.set_type_url("runtimeoptions.v1.Options");
  any.set_value(value);
  return any.SerializeAsString();
}

TEST(ShimStartOptionsTest, RuntimeOptionsNameTheConfigFile) {
  auto options = ParseShimStartOptions(RuntimeOptionsAny("", "/etc/beaconbox/other.toml"));
  ASSERT_TRUE(options.ok()) << options.error().message;
  EXPECT_EQ(options->config_path, "/etc/beaconbox/other.toml");
  EXPECT_EQ(options->shim_cgroup, "");
  options = ParseShimStartOptions(RuntimeOptionsAny("toml", "/etc/b.toml"));
  ASSERT_TRUE(options.ok()) << options.error().message;
  EXPECT_EQ(options->config_path, "/etc/b.toml");
  // runc's options never carry a config path.
  containerd::runc::v1::Options runc;
  runc.set_shim_cgroup("/bbx/shim");
  EXPECT_EQ(ParseShimStartOptions(AnyOf(runc))->config_path, "");
  // A relative path is refused with one line naming it.
  auto relative = ParseShimStartOptions(RuntimeOptionsAny("", "beaconbox.toml"));
  ASSERT_FALSE(relative.ok());
  EXPECT_NE(relative.error().message.find("'beaconbox.toml' is not an absolute path"),
            std::string::npos)
      << relative.error().message;
  // Also with a line break in it: still one line.
  relative = ParseShimStartOptions(RuntimeOptionsAny("", "a\nb.toml"));
  ASSERT_FALSE(relative.ok());
  EXPECT_EQ(relative.error().message.find('\n'), std::string::npos) << relative.error().message;
  // A truncated message is refused.
  google::protobuf::Any truncated;
  truncated.set_type_url("runtimeoptions.v1.Options");
  truncated.set_value("\x12\x40/etc");
  EXPECT_FALSE(ParseShimStartOptions(truncated.SerializeAsString()).ok());
}

class ShimFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/bbx-shim-options-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    root_ = dir;
  }
  void TearDown() override { fs::remove_all(root_); }
  void Write(const std::string& path, const std::string& text) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << text;
  }
  std::string root_;
};

TEST_F(ShimFilesTest, TheShimJoinsAnExistingCgroupV2GroupOnly) {
  const std::string cgroup_root = root_ + "/cgroup";
  Write(cgroup_root + "/cgroup.controllers", "cpu memory\n");
  Write(cgroup_root + "/bbx/shim/cgroup.procs", "");
  ASSERT_TRUE(JoinShimCgroup(4242, "/bbx/shim", cgroup_root).ok());
  EXPECT_EQ(*ReadSmallFile(cgroup_root + "/bbx/shim/cgroup.procs"), "4242");
  for (const char* bad : {"", "bbx/shim", "/bbx/../../etc", "/.."}) {
    auto refused = JoinShimCgroup(4242, bad, cgroup_root);
    ASSERT_FALSE(refused.ok()) << bad;
    EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(JoinShimCgroup(4242, "/absent", cgroup_root).error().code, ErrorCode::kNotFound);
}

TEST_F(ShimFilesTest, WithCgroupV1TheShimJoinsTheGroupInEveryHierarchy) {
  const std::string cgroup_root = root_ + "/cgroup";
  for (const char* hierarchy : {"cpu", "memory", "systemd", "unified"}) {
    Write(cgroup_root + "/" + hierarchy + "/cgroup.procs", "");
  }
  fs::create_symlink("cpu", cgroup_root + "/cpuacct");
  auto missing = JoinShimCgroup(4242, "/bbx/shim", cgroup_root);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  for (const char* hierarchy : {"cpu", "memory", "systemd"}) {
    Write(cgroup_root + "/" + hierarchy + "/bbx/shim/cgroup.procs", "");
  }
  ASSERT_TRUE(JoinShimCgroup(4242, "/bbx/shim", cgroup_root).ok());
  for (const char* hierarchy : {"cpu", "memory", "systemd"}) {
    EXPECT_EQ(*ReadSmallFile(cgroup_root + "/" + hierarchy + "/bbx/shim/cgroup.procs"), "4242");
  }
  EXPECT_FALSE(fs::exists(cgroup_root + "/unified/bbx"));
}

TEST_F(ShimFilesTest, TheShimsOomScoreIsItsParentsPlusOne) {
  const std::string proc = root_ + "/proc";
  Write(proc + "/1/oom_score_adj", "-999\n");
  Write(proc + "/2/oom_score_adj", "0\n");
  ASSERT_TRUE(AdjustShimOomScore(2, 1, proc).ok());
  EXPECT_EQ(*ReadSmallFile(proc + "/2/oom_score_adj"), "-998");
  Write(proc + "/1/oom_score_adj", "1000\n");
  ASSERT_TRUE(AdjustShimOomScore(2, 1, proc).ok());
  EXPECT_EQ(*ReadSmallFile(proc + "/2/oom_score_adj"), "1000");  // at most the maximum
  Write(proc + "/1/oom_score_adj", "x\n");
  EXPECT_FALSE(AdjustShimOomScore(2, 1, proc).ok());
  EXPECT_FALSE(AdjustShimOomScore(2, 3, proc).ok());  // no such parent
}

}  // namespace
}  // namespace beaconbox::shim
