#include "plugins/net-cni/conflist.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace beaconbox::cni {
namespace {

using json = nlohmann::json;

constexpr const char* kList = R"({
  "cniVersion": "1.0.0", "name": "beacon-net",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
    {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}},
    {"type": "tc-redirect-tap"}
  ]
})";

TEST(ConfList, ParsesAListAndASinglePluginConf) {
  auto list = ParseConfList(kList, "/etc/cni/net.d/10.conflist");
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_EQ(list->name, "beacon-net");
  ASSERT_EQ(list->plugins.size(), 3u);
  EXPECT_EQ(list->plugins[1].capabilities, std::vector<std::string>{"portMappings"});
  auto single = ParseConfList(R"({"cniVersion":"0.4.0","name":"n","type":"bridge"})", "x.conf");
  ASSERT_TRUE(single.ok()) << single.error().message;
  EXPECT_EQ(single->plugins.size(), 1u);
}

TEST(ConfList, BadListsNameTheFile) {
  for (const char* text :
       {"{", R"({"name":"n","plugins":[{"type":"bridge"}]})",
        R"({"cniVersion":"0.2.0","name":"n","plugins":[{"type":"bridge"}]})",
        R"({"cniVersion":"1.0.0","name":"n","plugins":[]})",
        R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]})",
        R"({"cniVersion":"1.0.0","name":"n","plugins":[{"notype":1}]})",
        R"({"cniVersion":"1.0.0","name":"../n","plugins":[{"type":"x"}]})"}) {
    auto list = ParseConfList(text, "/conf/bad.conflist");
    ASSERT_FALSE(list.ok()) << text;
    EXPECT_NE(list.error().message.find("/conf/bad.conflist"), std::string::npos)
        << list.error().message;
  }
}

TEST(ConfList, StdinCarriesNameVersionDeclaredCapabilitiesAndPrevResult) {
  auto list = ParseConfList(kList, "f");
  ASSERT_TRUE(list.ok());
  const json runtime = RuntimeConfigFor({{8081, 80, "tcp", ""}});
  const json prev = {{"cniVersion", "1.0.0"}, {"ips", json::array()}};
  json bridge = json::parse(PluginStdin(*list, 0, runtime, nullptr));
  EXPECT_EQ(bridge["name"], "beacon-net");
  EXPECT_EQ(bridge["cniVersion"], "1.0.0");
  EXPECT_FALSE(bridge.contains("runtimeConfig"));  // bridge declares no capability
  EXPECT_FALSE(bridge.contains("prevResult"));
  json portmap = json::parse(PluginStdin(*list, 1, runtime, prev));
  EXPECT_EQ(portmap["runtimeConfig"]["portMappings"][0]["hostPort"], 8081);
  EXPECT_EQ(portmap["prevResult"], prev);
}

TEST(ConfList, PortMappingsFromTheAnnotationAreChecked) {
  auto mappings = ParsePortMappings(
      R"([{"hostPort":8081,"containerPort":80,"protocol":"TCP","hostIP":"10.0.0.1"}])");
  ASSERT_TRUE(mappings.ok()) << mappings.error().message;
  EXPECT_EQ((*mappings)[0].protocol, "tcp");
  for (const char* bad : {"{}", "[1]", R"([{"hostPort":0,"containerPort":80}])",
                          R"([{"hostPort":70000,"containerPort":80}])",
                          R"([{"hostPort":1,"containerPort":80,"protocol":"icmp"}])",
                          R"([{"hostPort":1,"containerPort":80,"hostIP":"x"}])"}) {
    EXPECT_FALSE(ParsePortMappings(bad).ok()) << bad;
  }
}

TEST(ConfList, LoadFindsTheNetworkByNameAndSaysWhatItSkipped) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("net-cni-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "05-broken.conflist") << "{";
  std::ofstream(dir / "10-other.conflist")
      << R"({"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge"}]})";
  std::ofstream(dir / "20-beacon.conflist") << kList;
  auto list = LoadConfList(dir.string(), "beacon-net");
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_EQ(list->file, (dir / "20-beacon.conflist").string());
  auto missing = LoadConfList(dir.string(), "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("05-broken.conflist"), std::string::npos);
  std::ofstream(dir / "nope.conflist") << "[";
  auto named = LoadConfList(dir.string(), "nope");
  ASSERT_FALSE(named.ok());
  EXPECT_NE(named.error().message.find("nope.conflist"), std::string::npos);
  EXPECT_FALSE(LoadConfList((dir / "absent").string(), "x").ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace beaconbox::cni
