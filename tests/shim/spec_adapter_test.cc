#include "host/shim/spec_adapter.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace beaconbox::shim {
namespace {

using nlohmann::json;

TEST(SpecAdapter, RemovesNetworkNamespaceAndPointsRootAtGuestRootfs) {
  json spec = {
      {"root", {{"path", "/run/containerd/io.containerd.runtime.v2.task/default/c1/rootfs"}}},
      {"linux",
       {{"namespaces",
         json::array({{{"type", "pid"}}, {{"type", "network"}}, {{"type", "mount"}}})}}},
      {"process", {{"args", json::array({"/bin/true"})}}},
  };
  auto adapted = AdaptSpecForGuest(spec.dump());
  ASSERT_TRUE(adapted.ok()) << adapted.error().message;
  json out = json::parse(adapted->config_json);
  EXPECT_EQ(out["root"]["path"], "rootfs");
  ASSERT_EQ(out["linux"]["namespaces"].size(), 2u);
  for (const auto& ns : out["linux"]["namespaces"]) EXPECT_NE(ns["type"], "network");
  EXPECT_EQ(out["process"]["args"][0], "/bin/true");
}

TEST(SpecAdapter, PinsOciVersionTheGuestRuntimeAccepts) {
  auto adapted = AdaptSpecForGuest(json{{"ociVersion", "1.1.0-rc.1"}}.dump());
  ASSERT_TRUE(adapted.ok());
  EXPECT_EQ(json::parse(adapted->config_json)["ociVersion"], "1.0.2");
  adapted = AdaptSpecForGuest(json{{"ociVersion", "1.0.1-dev"}}.dump());
  EXPECT_EQ(json::parse(adapted->config_json)["ociVersion"], "1.0.1-dev");
}

TEST(SpecAdapter, HostHooksGoToTheShimAndStartContainerToTheGuest) {
  json hook = {{"path", "/usr/bin/nvidia-hook"}, {"args", json::array({"nvidia-hook", "x"})}};
  json spec = {{"root", {{"path", "x"}}},
               {"hooks",
                {{"prestart", json::array({hook})},
                 {"createRuntime", json::array({hook, hook})},
                 {"poststart", json::array({hook})},
                 {"poststop", json::array({{{"path", "/bin/stop"}, {"env", json::array()}}})}}}};
  auto adapted = AdaptSpecForGuest(spec.dump());
  ASSERT_TRUE(adapted.ok()) << adapted.error().message;
  EXPECT_FALSE(json::parse(adapted->config_json).contains("hooks"));
  EXPECT_TRUE(adapted->warnings.empty());
  EXPECT_EQ(adapted->hooks.prestart.size(), 1u);
  EXPECT_EQ(adapted->hooks.create_runtime.size(), 2u);
  EXPECT_EQ(adapted->hooks.poststart.size(), 1u);
  ASSERT_EQ(adapted->hooks.poststop.size(), 1u);
  EXPECT_EQ(adapted->hooks.prestart[0].args, (std::vector<std::string>{"nvidia-hook", "x"}));
  EXPECT_FALSE(adapted->hooks.prestart[0].has_env);
  EXPECT_EQ(adapted->hooks.poststop[0].args, (std::vector<std::string>{"/bin/stop"}));
  EXPECT_TRUE(adapted->hooks.poststop[0].has_env);

  spec["hooks"]["startContainer"] = json::array({{{"path", "/in/the/container"}}});
  adapted = AdaptSpecForGuest(spec.dump());
  ASSERT_TRUE(adapted.ok());
  EXPECT_EQ(json::parse(adapted->config_json)["hooks"],
            (json{{"startContainer", json::array({{{"path", "/in/the/container"}}})}}));

  spec["hooks"]["createContainer"] = json::array({hook});
  adapted = AdaptSpecForGuest(spec.dump());
  ASSERT_FALSE(adapted.ok());
  EXPECT_EQ(adapted.error().code, ErrorCode::kNotImplemented);
  for (const json& bad :
       {json{{"poststart", json::array({{{"path", "relative"}}})}},
        json{{"poststart", json::array({{{"path", "/x"}, {"args", "not an array"}}})}},
        json{{"poststart", json::array({{{"path", "/x"}, {"timeout", -1}}})}},
        json{{"poststart", "not an array"}}, json::array()}) {
    spec["hooks"] = bad;
    adapted = AdaptSpecForGuest(spec.dump());
    ASSERT_FALSE(adapted.ok()) << bad.dump();
    EXPECT_EQ(adapted.error().code, ErrorCode::kInvalidArgument) << bad.dump();
  }
}

TEST(SpecAdapter, KeepsLargeIntegersExact) {
  json spec = {{"linux", {{"resources", {{"memory", {{"limit", 9223372036854775807LL}}}}}}}};
  auto adapted = AdaptSpecForGuest(spec.dump());
  ASSERT_TRUE(adapted.ok());
  EXPECT_EQ(json::parse(adapted->config_json)["linux"]["resources"]["memory"]["limit"],
            9223372036854775807LL);
}

TEST(SpecAdapter, RefusesHostBindMountsNamingThem) {
  json spec = {{"mounts", json::array({{{"destination", "/data"},
                                        {"source", "/srv/data"},
                                        {"type", "none"},
                                        {"options", json::array({"rbind", "rw"})}}})}};
  auto adapted = AdaptSpecForGuest(spec.dump());
  ASSERT_FALSE(adapted.ok());
  EXPECT_EQ(adapted.error().code, ErrorCode::kNotImplemented);
  EXPECT_NE(adapted.error().message.find("/srv/data"), std::string::npos);
}

TEST(SpecAdapter, SharesTheVmResolvConfWhenNetworked) {
  json spec = {{"mounts", json::array({{{"destination", "/proc"}, {"type", "proc"}}})}};
  auto adapted = AdaptSpecForGuest(spec.dump(), /*share_vm_dns=*/true);
  ASSERT_TRUE(adapted.ok());
  json mounts = json::parse(adapted->config_json)["mounts"];
  ASSERT_EQ(mounts.size(), 2u);
  EXPECT_EQ(mounts[1]["destination"], "/etc/resolv.conf");
  EXPECT_EQ(mounts[1]["source"], "/etc/resolv.conf");
  auto offline = AdaptSpecForGuest(spec.dump(), /*share_vm_dns=*/false);
  EXPECT_EQ(json::parse(offline->config_json)["mounts"].size(), 1u);
}

TEST(SpecAdapter, RefusesInvalidJson) {
  EXPECT_FALSE(AdaptSpecForGuest("{not json").ok());
  EXPECT_FALSE(AdaptSpecForGuest("[]").ok());
  EXPECT_FALSE(AdaptProcessForGuest("42").ok());
}

// Found by fuzz_spec_adapter: these threw json exceptions out of a Result function.
TEST(SpecAdapter, RefusesFieldsOfAnotherTypeAndNonUtf8Rootfs) {
  for (const char* spec :
       {R"({"root":{"readonly":"yes"}})", R"({"ociVersion":1})",
        R"({"linux":{"namespaces":[{"type":7}]}})", R"({"mounts":[{"type":"bind","source":1}]})"}) {
    auto adapted = AdaptSpecForGuest(spec);
    ASSERT_FALSE(adapted.ok()) << spec;
    EXPECT_EQ(adapted.error().code, ErrorCode::kInvalidArgument) << spec;
    EXPECT_NE(adapted.error().message.find("config.json"), std::string::npos);
  }
  EXPECT_FALSE(AdaptSpecForGuest("{}", false, "root\xff").ok());
}

// 100,000 levels deep used to overflow the stack in nlohmann's recursive parse.
TEST(SpecAdapter, RefusesDeeplyNestedJsonWithOneLine) {
  std::string deep = R"({"ociVersion":"1.0.2","annotations":)" + std::string(100000, '[') +
                     std::string(100000, ']') + "}";
  auto adapted = AdaptSpecForGuest(deep);
  ASSERT_FALSE(adapted.ok());
  EXPECT_EQ(adapted.error().message,
            "config.json in the bundle nests arrays/objects deeper than 64 levels: refused");
  EXPECT_FALSE(AdaptProcessForGuest(std::string(100000, '[') + std::string(100000, ']')).ok());
}

}  // namespace
}  // namespace beaconbox::shim
