#include "plugins/net-cni/cni_result.h"

#include <gtest/gtest.h>

#include <string>

namespace beaconbox::cni {
namespace {

constexpr const char* kBridgeResult = R"({
  "cniVersion": "1.0.0",
  "interfaces": [{"name": "cni0", "mac": "62:b5:1b:af:10:53"},
                 {"name": "veth1", "mac": "e2:f0:d8:5d:b5:9f"},
                 {"name": "eth0", "mac": "7e:14:c8:8b:27:26", "sandbox": "/run/netns/x"}],
  "ips": [{"interface": 2, "address": "10.99.0.2/24", "gateway": "10.99.0.1"}],
  "routes": [{"dst": "0.0.0.0/0"}],
  "dns": {"nameservers": ["10.99.0.1"], "search": ["example.test"]}
})";

TEST(CniResult, ParsesABridgeResult) {
  auto result = ParseCniResult(kBridgeResult, "bridge");
  ASSERT_TRUE(result.ok()) << result.error().message;
  EXPECT_EQ(result->cni_version, "1.0.0");
  ASSERT_EQ(result->interfaces.size(), 3u);
  EXPECT_EQ(result->interfaces[2].sandbox, "/run/netns/x");
  ASSERT_EQ(result->ips.size(), 1u);
  EXPECT_EQ(result->ips[0].interface, 2);
  EXPECT_EQ(result->ips[0].gateway, "10.99.0.1");
  ASSERT_EQ(result->routes.size(), 1u);
  EXPECT_EQ(result->routes[0].gateway, "");
  EXPECT_EQ(result->nameservers, std::vector<std::string>{"10.99.0.1"});
  EXPECT_EQ(result->search, std::vector<std::string>{"example.test"});
}

TEST(CniResult, Reads040ResultsWithIpVersions) {
  auto result = ParseCniResult(
      R"({"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.0.3/16","interface":0}],
          "interfaces":[{"name":"eth0","sandbox":"/n"}]})",
      "bridge");
  ASSERT_TRUE(result.ok()) << result.error().message;
  EXPECT_EQ(result->ips[0].address, "10.1.0.3/16");
}

TEST(CniResult, RefusesVersionsItDoesNotSpeak) {
  for (const char* version : {"0.2.0", "0.1.0", "2.0.0", "", "1.0"}) {
    auto result = ParseCniResult(std::string(R"({"cniVersion":")") + version + R"("})", "p");
    EXPECT_FALSE(result.ok()) << version;
  }
  EXPECT_TRUE(IsSupportedCniVersion("0.4.0"));
  EXPECT_TRUE(IsSupportedCniVersion("1.0.0"));
  EXPECT_FALSE(CniVersionHasCheck("0.3.1"));
  EXPECT_TRUE(CniVersionHasCheck("0.4.0"));
}

// A buggy or hostile plugin: wrong types, out-of-range indexes, huge or deep documents.
TEST(CniResult, RefusesHostileResultsWithOneLineNamingThePlugin) {
  const std::string huge_name(100, 'a');
  const std::vector<std::string> bad = {
      "",
      "not json",
      "[]",
      R"({"cniVersion": 1})",
      R"({"cniVersion":"1.0.0","interfaces":{}})",
      R"({"cniVersion":"1.0.0","interfaces":[1]})",
      R"({"cniVersion":"1.0.0","interfaces":[{"name":")" + huge_name + R"("}]})",
      R"({"cniVersion":"1.0.0","interfaces":[{"mac":"x"}]})",
      R"({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1"}]})",
      R"({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/33"}]})",
      R"({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8","interface":5}]})",
      R"({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8","interface":-1}]})",
      R"({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8","interface":"0"}]})",
      R"({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8","gateway":"x"}]})",
      R"({"cniVersion":"1.0.0","routes":[{"dst":"0.0.0.0"}]})",
      R"({"cniVersion":"1.0.0","routes":[{"dst":"0.0.0.0/0","gw":"/etc"}]})",
      R"({"cniVersion":"1.0.0","dns":{"nameservers":["../../x"]}})",
      R"({"cniVersion":"1.0.0","dns":{"search":["a b"]}})",
      R"({"cniVersion":"1.0.0","dns":[]})",
  };
  for (const auto& text : bad) {
    auto result = ParseCniResult(text, "evil");
    ASSERT_FALSE(result.ok()) << text;
    EXPECT_NE(result.error().message.find("evil"), std::string::npos) << result.error().message;
    EXPECT_EQ(result.error().message.find('\n'), std::string::npos);
  }
}

TEST(CniResult, BoundsSizesCountsAndDepth) {
  std::string deep =
      R"({"cniVersion":"1.0.0","x":)" + std::string(10000, '[') + std::string(10000, ']') + "}";
  EXPECT_FALSE(ParseCniResult(deep, "p").ok());
  std::string many = R"({"cniVersion":"1.0.0","interfaces":[)";
  for (int i = 0; i < 65; ++i) many += std::string(i ? "," : "") + R"({"name":"e"})";
  many += "]}";
  EXPECT_FALSE(ParseCniResult(many, "p").ok());
  std::string big = R"({"cniVersion":"1.0.0","pad":")" + std::string(2 << 20, 'x') + "\"}";
  EXPECT_FALSE(ParseCniResult(big, "p").ok());
}

TEST(CniResult, ErrorMessagesAreOneLine) {
  EXPECT_EQ(CniErrorMessage(R"({"cniVersion":"1.0.0","code":11,"msg":"no\nway","details":"d"})"),
            "code 11: no|way (d)");
  EXPECT_EQ(CniErrorMessage("plain text\x01"), "plain text?");
  EXPECT_LE(CniErrorMessage(std::string(5000, 'x')).size(), 404u);
}

TEST(CniResult, ParsesCidrs) {
  std::string address;
  unsigned prefix = 0;
  bool v4 = false;
  EXPECT_TRUE(ParseCidr("10.1.2.3/24", &address, &prefix, &v4));
  EXPECT_EQ(address, "10.1.2.3");
  EXPECT_EQ(prefix, 24u);
  EXPECT_TRUE(v4);
  EXPECT_TRUE(ParseCidr("fd00::1/64", &address, &prefix, &v4));
  EXPECT_FALSE(v4);
  EXPECT_FALSE(ParseCidr("fd00::1/129", nullptr, nullptr, nullptr));
  EXPECT_FALSE(ParseCidr("10.1.2.3/", nullptr, nullptr, nullptr));
  EXPECT_FALSE(ParseCidr("10.1.2.3/1a", nullptr, nullptr, nullptr));
}

}  // namespace
}  // namespace beaconbox::cni
