// CniNetwork with FAKE CNI plugins (shell scripts logging their calls): what runs on
// a failed ADD and what is left. Needs root (the plugin makes a network namespace).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "plugins/net-cni/cni_network.h"

namespace beaconbox::cni {
namespace {

namespace fs = std::filesystem;

class CniNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    dir_ = fs::temp_directory_path() / ("net-cni-net-" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "bin");
    fs::create_directories(dir_ / "conf");
    // FAKE plugins: log "<type> <command>", print a result or fail.
    WriteScript("fakeok",
                "echo '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.9.0.2/24\"}]}'");
    WriteScript(
        "fakefail",
        "echo '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"broken on purpose\"}'; exit 1");
    config_.conf_dir = (dir_ / "conf").string();
    config_.bin_dirs = {(dir_ / "bin").string()};
    config_.network_name = "fake";
    config_.cache_dir = (dir_ / "cache").string();
    config_.netns_dir = (dir_ / "netns").string();
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void WriteScript(const std::string& name, const std::string& body) {
    const fs::path path = dir_ / "bin" / name;
    std::ofstream(path) << "#!/bin/sh\ncat > /dev/null\necho \"" << name << " $CNI_COMMAND\" >> "
                        << (dir_ / "calls").string() << "\n"
                        << body << "\n";
    fs::permissions(path, fs::perms::owner_all);
  }
  std::string Calls() {
    std::ifstream in(dir_ / "calls");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  fs::path dir_;
  CniConfig config_;
};

TEST_F(CniNetworkTest, AFailedAddUndoesThePluginsThatRanAndLeavesNothing) {
  std::ofstream(dir_ / "conf" / "fake.conflist")
      << R"({"cniVersion":"1.0.0","name":"fake","plugins":[{"type":"fakeok"},{"type":"fakefail"},{"type":"fakeok"}]})";
  CniNetwork network(config_, nullptr);
  plugin::v1::NetworkAttachRequest request;
  request.set_namespace_("default");
  request.set_container_id("c1");
  auto attached = network.Attach(request);
  ASSERT_FALSE(attached.ok());
  EXPECT_NE(attached.error().message.find("CNI plugin fakefail ADD"), std::string::npos);
  EXPECT_NE(attached.error().message.find("broken on purpose"), std::string::npos);
  // ADD fakeok, ADD fakefail, then DEL fakefail (its error only logged), DEL fakeok;
  // the third plugin never ran.
  EXPECT_EQ(Calls(), "fakeok ADD\nfakefail ADD\nfakefail DEL\nfakeok DEL\n");
  EXPECT_FALSE(fs::exists(dir_ / "cache" / "default--c1.json"));
  EXPECT_FALSE(fs::exists(dir_ / "netns" / "default--c1"));
  // Detach of what is gone succeeds and runs nothing.
  EXPECT_TRUE(network.Detach("default", "c1").ok());
  EXPECT_EQ(Calls(), "fakeok ADD\nfakefail ADD\nfakefail DEL\nfakeok DEL\n");
}

TEST_F(CniNetworkTest, DetachRunsDelFromTheCacheEvenWhenTheConflistIsGone) {
  std::ofstream(dir_ / "conf" / "fake.conflist")
      << R"({"cniVersion":"1.0.0","name":"fake","plugins":[{"type":"fakeok"},{"type":"fakefail"}]})";
  // A cache as a shim that died during ADD leaves it (result null).
  CachedAttachment cached;
  cached.container_namespace = "default";
  cached.container_id = "c2";
  cached.cni_container_id = "default--c2";
  cached.ifname = "eth0";
  cached.netns = (dir_ / "netns" / "gone").string();
  cached.conf_file = "x";
  cached.conf_list = {{"name", "fake"},
                      {"cniVersion", "1.0.0"},
                      {"plugins", {{{"type", "fakeok"}}, {{"type", "fakeok"}}}}};
  cached.runtime_config = nlohmann::json::object();
  fs::create_directories(dir_ / "cache");
  std::ofstream(dir_ / "cache" / "default--c2.json") << SerializeCachedAttachment(cached);
  fs::remove(dir_ / "conf" / "fake.conflist");
  CniNetwork network(config_, nullptr);
  auto leases = network.ListLeases();
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->leases_size(), 1);
  EXPECT_EQ(leases->leases(0).container_id(), "c2");
  // Its owner (pid 0) is gone: gc runs DEL for it.
  auto report = network.Reconcile();
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->released_leases_size(), 1);
  EXPECT_EQ(Calls(), "fakeok DEL\nfakeok DEL\n");
  EXPECT_FALSE(fs::exists(dir_ / "cache" / "default--c2.json"));
}

}  // namespace
}  // namespace beaconbox::cni
