// vminitd takes the spec's net.* sysctls from crun and writes them itself, in the VM's
// root network namespace (guest/vminitd/net_sysctl.h): containerd 2 sets
// net.ipv4.ip_unprivileged_port_start on every CRI sandbox.
#include "guest/vminitd/net_sysctl.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace beaconbox::guest {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

TEST(NetSysctlTest, TakesNetSysctlsAndLeavesTheOthersForCrun) {
  std::string spec = json{{"ociVersion", "1.0.2"},
                          {"linux",
                           {{"sysctl",
                             {{"net.ipv4.ip_unprivileged_port_start", "0"},
                              {"net.ipv4.ping_group_range", "0 2147483647"},
                              {"kernel.shm_rmid_forced", "1"}}}}}}
                         .dump();
  auto taken = TakeNetSysctls(spec);
  ASSERT_TRUE(taken.ok()) << taken.error().message;
  ASSERT_EQ(taken->size(), 2u);
  EXPECT_EQ((*taken)[0].name, "net.ipv4.ip_unprivileged_port_start");
  EXPECT_EQ((*taken)[0].value, "0");
  EXPECT_EQ((*taken)[1].value, "0 2147483647");
  json written = json::parse(spec);
  EXPECT_EQ(written["linux"]["sysctl"], (json{{"kernel.shm_rmid_forced", "1"}}));
  EXPECT_EQ(written["ociVersion"], "1.0.2");
}

TEST(NetSysctlTest, ASpecWithoutNetSysctlsIsLeftAsItIs) {
  for (std::string spec : {std::string(R"({"process":{"args":["sh"]},  "linux":{}})"),
                           std::string(R"({"linux":{"sysctl":{"kernel.msgmax":"8192"}}})"),
                           std::string(R"({"linux":{"sysctl":null}})"), std::string("{}")}) {
    const std::string before = spec;
    auto taken = TakeNetSysctls(spec);
    ASSERT_TRUE(taken.ok()) << before;
    EXPECT_TRUE(taken->empty());
    EXPECT_EQ(spec, before);  // byte for byte
  }
}

TEST(NetSysctlTest, HostileNamesAndValuesAreRefusedNamingTheSysctl) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"net.ipv4..x", "1"},
      {"net.ipv4.conf/../../kernel/x", "1"},
      {"net.ipv4", "1"},
      {"net.ipv4.x y", "1"},
      {"net." + std::string(300, 'a') + ".x", "1"},
      {"net.ipv4.ip_forward", ""},
      {"net.ipv4.ip_forward", "1\n2"},
      {"net.ipv4.ip_forward", std::string(257, '1')},
      {"kernel.x.y", "1"},
  };
  for (const auto& [name, value] : bad) {
    Status status = ValidateNetSysctl({name, value});
    ASSERT_FALSE(status.ok()) << name << "=" << value;
    EXPECT_EQ(status.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(status.error().message.rfind("sysctl \"", 0), 0u) << status.error().message;
  }
  std::string spec = R"({"linux":{"sysctl":{"net.ipv4..x":"1"}}})";
  EXPECT_FALSE(TakeNetSysctls(spec).ok());
  spec = R"({"linux":{"sysctl":{"net.ipv4.ip_forward":1}}})";
  auto taken = TakeNetSysctls(spec);
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().message,
            "config.json: linux.sysctl \"net.ipv4.ip_forward\" is not a string");
  spec = R"({"linux":{"sysctl":["net.ipv4.ip_forward"]}})";
  EXPECT_FALSE(TakeNetSysctls(spec).ok());
  json many = json::object();
  for (int i = 0; i < 65; ++i) many["net.ipv4.x" + std::to_string(i)] = "1";
  spec = json{{"linux", {{"sysctl", many}}}}.dump();
  EXPECT_FALSE(TakeNetSysctls(spec).ok());
}

TEST(NetSysctlTest, WritesEachUnderProcSysAndNamesTheOneThatFails) {
  const fs::path root = fs::temp_directory_path() / ("net-sysctl-" + std::to_string(::getpid()));
  fs::create_directories(root / "net" / "ipv4");
  std::ofstream(root / "net" / "ipv4" / "ip_unprivileged_port_start") << "1024\n";
  EXPECT_EQ(NetSysctlPath({"net.ipv4.ip_unprivileged_port_start", "0"}, root.string()),
            (root / "net/ipv4/ip_unprivileged_port_start").string());
  ASSERT_TRUE(ApplyNetSysctls({{"net.ipv4.ip_unprivileged_port_start", "0"}}, root.string()).ok());
  std::stringstream text;
  text << std::ifstream(root / "net" / "ipv4" / "ip_unprivileged_port_start").rdbuf();
  EXPECT_EQ(text.str(), "0");
  // A sysctl this kernel lacks: one line naming it (no file is made).
  Status missing = ApplyNetSysctls({{"net.ipv4.no_such_key", "1"}}, root.string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("sysctl net.ipv4.no_such_key"), std::string::npos)
      << missing.error().message;
  EXPECT_FALSE(fs::exists(root / "net" / "ipv4" / "no_such_key"));
  // A symlink is not followed.
  fs::create_symlink(root / "elsewhere", root / "net" / "ipv4" / "link");
  EXPECT_FALSE(ApplyNetSysctls({{"net.ipv4.link", "1"}}, root.string()).ok());
  EXPECT_FALSE(fs::exists(root / "elsewhere"));
  fs::remove_all(root);
}

}  // namespace
}  // namespace beaconbox::guest
