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

// The network namespace CRI made (a path) goes to the network plugin (net-cni runs
// its CNI list there); ctr's entry without a path gives none.
TEST(SpecAdapter, KeepsTheNetworkNamespacePathForTheNetworkPlugin) {
  json spec = {{"linux",
                {{"namespaces", json::array({{{"type", "network"}, {"path", "/var/run/netns/p"}},
                                             {{"type", "pid"}}})}}}};
  auto adapted = AdaptSpecForGuest(spec.dump());
  ASSERT_TRUE(adapted.ok()) << adapted.error().message;
  EXPECT_EQ(adapted->network_namespace_path, "/var/run/netns/p");
  EXPECT_EQ(json::parse(adapted->config_json)["linux"]["namespaces"].size(), 1u);
  spec["linux"]["namespaces"][0].erase("path");
  adapted = AdaptSpecForGuest(spec.dump());
  ASSERT_TRUE(adapted.ok());
  EXPECT_EQ(adapted->network_namespace_path, "");
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

// What containerd 1.6 writes for `ctr run --mount type=bind,src=D,dst=/vol,options=rbind:ro`
// and CRI for /etc/hostname, beside its own tmpfs and proc mounts.
json SpecWithVolumes() {
  return {{"mounts", json::array({{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
                                  {{"destination", "/vol"},
                                   {"type", "bind"},
                                   {"source", "/srv/data"},
                                   {"options", json::array({"rbind", "ro"})}},
                                  {{"destination", "/scratch"},
                                   {"type", "tmpfs"},
                                   {"source", "tmpfs"},
                                   {"options", json::array({"nosuid", "size=1m"})}},
                                  {{"destination", "/etc/hostname"},
                                   {"type", "bind"},
                                   {"source", "/var/lib/c1/hostname"},
                                   {"options", json::array({"rbind", "rprivate", "ro", "rw"})}},
                                  {{"destination", "/data"},
                                   {"type", "none"},
                                   {"source", "relative/dir"},
                                   {"options", json::array({"bind"})}}})}};
}

TEST(SpecAdapter, ListsBindMountsAsVolumesInOrder) {
  auto adapted = AdaptSpecForGuest(SpecWithVolumes().dump());
  ASSERT_TRUE(adapted.ok()) << adapted.error().message;
  ASSERT_EQ(adapted->volumes.size(), 3u);
  EXPECT_EQ(adapted->volumes[0].source, "/srv/data");
  EXPECT_EQ(adapted->volumes[0].destination, "/vol");
  EXPECT_TRUE(adapted->volumes[0].read_only);
  EXPECT_TRUE(adapted->volumes[0].recursive);
  EXPECT_EQ(adapted->volumes[1].destination, "/etc/hostname");
  EXPECT_FALSE(adapted->volumes[1].read_only);  // the last of ro/rw wins
  EXPECT_EQ(adapted->volumes[2].source, "relative/dir");
  EXPECT_FALSE(adapted->volumes[2].recursive);
  // Without the plugin's guest paths (the first pass) the sources stay the host's.
  json mounts = json::parse(adapted->config_json)["mounts"];
  EXPECT_EQ(mounts[1]["source"], "/srv/data");
}

TEST(SpecAdapter, PointsEachVolumeAtItsGuestPathAndLeavesTheRest) {
  const std::vector<std::string> guest = {"volumes/0", "volumes/1", "volumes/2"};
  auto adapted = AdaptSpecForGuest(SpecWithVolumes().dump(), false, "rootfs", &guest);
  ASSERT_TRUE(adapted.ok()) << adapted.error().message;
  json mounts = json::parse(adapted->config_json)["mounts"];
  ASSERT_EQ(mounts.size(), 5u);
  EXPECT_EQ(mounts[0]["source"], "proc");
  EXPECT_EQ(mounts[1]["source"], "volumes/0");
  EXPECT_EQ(mounts[1]["options"], json::array({"rbind", "ro"}));  // crun binds it read-only
  EXPECT_EQ(mounts[2], SpecWithVolumes()["mounts"][2]);           // tmpfs: made in the guest
  EXPECT_EQ(mounts[3]["source"], "volumes/1");
  EXPECT_EQ(mounts[4]["source"], "volumes/2");

  const std::vector<std::string> too_few = {"volumes/0"};
  auto refused = AdaptSpecForGuest(SpecWithVolumes().dump(), false, "rootfs", &too_few);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("fewer than the spec's bind mounts"), std::string::npos);
}

TEST(SpecAdapter, RefusesPropagationThatCannotCrossIntoTheVm) {
  for (const char* propagation : {"shared", "rshared", "slave", "rslave"}) {
    json spec = {{"mounts", json::array({{{"destination", "/data"},
                                          {"source", "/srv/data"},
                                          {"type", "bind"},
                                          {"options", json::array({"rbind", propagation})}}})}};
    auto adapted = AdaptSpecForGuest(spec.dump());
    ASSERT_FALSE(adapted.ok()) << propagation;
    EXPECT_EQ(adapted.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(adapted.error().message.find("/srv/data"), std::string::npos);
    EXPECT_NE(adapted.error().message.find(std::string("asks for ") + propagation),
              std::string::npos);
    EXPECT_EQ(adapted.error().message.find('\n'), std::string::npos);
  }
  for (const char* propagation : {"private", "rprivate"}) {
    json spec = {{"mounts", json::array({{{"destination", "/data"},
                                          {"source", "/srv/data"},
                                          {"type", "bind"},
                                          {"options", json::array({"rbind", propagation})}}})}};
    EXPECT_TRUE(AdaptSpecForGuest(spec.dump()).ok()) << propagation;
  }
  json no_source = {{"mounts", json::array({{{"destination", "/d"}, {"type", "bind"}}})}};
  EXPECT_FALSE(AdaptSpecForGuest(no_source.dump()).ok());
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

namespace beaconbox::shim {
namespace {

// A pod's app container as containerd's CRI writes it: the pod's netns by path, the
// sandbox's IPC, UTS (and with shareProcessNamespace pid) by /proc/<sandbox pid>.
TEST(SpecAdapter, JoinsThePodsNamespacesAsTheSandboxContainersInTheGuest) {
  json spec = {
      {"root", {{"path", "rootfs"}}},
      {"linux",
       {{"namespaces", json::array({{{"type", "pid"}, {"path", "/proc/4242/ns/pid"}},
                                    {{"type", "network"}, {"path", "/var/run/netns/cni-1"}},
                                    {{"type", "ipc"}, {"path", "/proc/4242/ns/ipc"}},
                                    {{"type", "uts"}, {"path", "/proc/4242/ns/uts"}},
                                    {{"type", "mount"}}})}}},
  };
  auto adapted = AdaptSpecForGuest(spec.dump());
  ASSERT_TRUE(adapted.ok());
  auto joined = JoinPodNamespaces(adapted->config_json, 4242, 17);
  ASSERT_TRUE(joined.ok()) << joined.error().message;
  json out = json::parse(*joined);
  EXPECT_EQ(out["linux"]["namespaces"], json::array({{{"type", "pid"}, {"path", "/proc/17/ns/pid"}},
                                                     {{"type", "ipc"}, {"path", "/proc/17/ns/ipc"}},
                                                     {{"type", "uts"}, {"path", "/proc/17/ns/uts"}},
                                                     {{"type", "mount"}}}));
}

TEST(SpecAdapter, RefusesJoiningANamespaceThatIsNotTheSandboxs) {
  for (const json& entry : {json{{"type", "ipc"}, {"path", "/proc/1/ns/ipc"}},
                            json{{"type", "uts"}, {"path", "/run/uts/x"}},
                            json{{"type", "user"}, {"path", "/proc/4242/ns/user"}},
                            json{{"type", "ipc"}, {"path", "/proc/4242/ns/uts"}}}) {
    json spec = {{"linux", {{"namespaces", json::array({entry})}}}};
    auto joined = JoinPodNamespaces(spec.dump(), 4242, 17);
    ASSERT_FALSE(joined.ok()) << entry.dump();
    EXPECT_EQ(joined.error().code, ErrorCode::kNotImplemented);
    EXPECT_NE(joined.error().message.find("not implemented"), std::string::npos);
  }
  // A guest that never said its pid: nothing to join.
  json spec = {
      {"linux", {{"namespaces", json::array({{{"type", "ipc"}, {"path", "/proc/4242/ns/ipc"}}})}}}};
  EXPECT_FALSE(JoinPodNamespaces(spec.dump(), 4242, 0).ok());
  // Nothing named by path: unchanged.
  json plain = {{"linux", {{"namespaces", json::array({{{"type", "ipc"}}})}}}};
  EXPECT_EQ(json::parse(*JoinPodNamespaces(plain.dump(), 4242, 17)), plain);
}

}  // namespace
}  // namespace beaconbox::shim
