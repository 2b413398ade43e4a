// Configuration parsing, defaults, refusals and the BEACON_* environment overrides.
#include "host/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "tests/plugin_host/test_util.h"

namespace beaconbox::config {
namespace {

using beaconbox::testing::ScopedEnv;
using beaconbox::testing::TempDir;
using ::testing::HasSubstr;

// Every override variable unset for the duration of a test.
class ConfigTest : public ::testing::Test {
 protected:
  ScopedEnv share_{"BEACON_SHARE_DIR", nullptr};
  ScopedEnv state_{"BEACON_STATE_DIR", nullptr};
  ScopedEnv log_{"BEACON_LOG_DIR", nullptr};
  ScopedEnv cni_mode_{"BEACON_CNI_MODE", nullptr};
  ScopedEnv cni_conf_{"BEACON_CNI_CONF_DIR", nullptr};
  ScopedEnv cni_bin_{"BEACON_CNI_BIN_DIR", nullptr};
  ScopedEnv cni_net_{"BEACON_CNI_NETWORK", nullptr};
  ScopedEnv ch_{"CLOUD_HYPERVISOR_PATH", nullptr};
  ScopedEnv level_{"BEACONBOX_LOG_LEVEL", nullptr};
  ScopedEnv config_{"BEACONBOX_CONFIG", nullptr};
  TempDir dir_;

  Result<Config> Parse(const std::string& text) {
    return LoadConfigFile(dir_.Write("config.toml", text));
  }
  std::string Refusal(const std::string& text) {
    auto parsed = Parse(text);
    EXPECT_FALSE(parsed.ok()) << text;
    if (parsed.ok()) return "";
    EXPECT_EQ(parsed.error().message.find('\n'), std::string::npos);
    EXPECT_THAT(parsed.error().message, HasSubstr(dir_.path() + "/config.toml"));
    return parsed.error().message;
  }
};

TEST_F(ConfigTest, EmptyFileGivesTheDocumentedDefaults) {
  auto config = Parse("");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->paths.share_dir, "/usr/share/beacon");
  EXPECT_EQ(config->paths.state_dir, "/var/lib/beacon");
  EXPECT_EQ(config->paths.log_dir, "/var/log/beacon");
  EXPECT_EQ(config->paths.run_dir, "/run/beacon");
  EXPECT_EQ(config->vm.vmm, "qemu");
  EXPECT_EQ(config->vm.vcpus, 1u);
  EXPECT_EQ(config->vm.max_vcpus, 2u);
  EXPECT_EQ(config->vm.memory_mib, 512u);
  EXPECT_EQ(config->vm.max_memory_mib, 2048u);
  EXPECT_EQ(config->vm.guest_overhead_mib, 128u);
  EXPECT_EQ(config->vm.guest_connect_timeout_ms, 60000u);
  EXPECT_EQ(config->vm.guest_call_timeout_ms, 60000u);
  EXPECT_EQ(config->vm.kill_timeout_ms, 5000u);
  EXPECT_EQ(config->network.mode, "bridge");
  EXPECT_EQ(config->storage.driver, "virtiofs");
  EXPECT_TRUE(config->plugins.empty());
}

TEST_F(ConfigTest, ShippedDefaultConfigParsesWithTheSameValues) {
  const char* source = std::getenv("BEACONBOX_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  auto config = LoadConfigFile(std::string(source) + "/config/config.toml");
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto defaults = Parse("");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(config->paths.run_dir, defaults->paths.run_dir);
  EXPECT_EQ(config->vm.memory_mib, defaults->vm.memory_mib);
  EXPECT_EQ(config->vm.kernel_path, defaults->vm.kernel_path);
  EXPECT_EQ(config->network.mode, defaults->network.mode);
  EXPECT_EQ(config->log.level, "info");
  ASSERT_GE(config->plugins.size(), 3u);
  EXPECT_EQ(config->plugins[0].kind, "vmm");
  EXPECT_EQ(config->plugins[0].name, "qemu");
}

TEST_F(ConfigTest, ReadsEveryKeyAndResolvesRelativePaths) {
  auto config = Parse(R"(
[paths]
share_dir = "/s"
state_dir = "/st"
log_dir = "/l"
run_dir = "/r"
[vm]
vmm = "cloud-hypervisor"
kernel_path = "k/vmlinuz"
initrd_path = "/abs/initrd"
kernel_cmdline = "quiet"
vcpus = 2
max_vcpus = 4
memory_mib = 256
max_memory_mib = 1024
guest_overhead_mib = 64
guest_connect_timeout_ms = 5000
guest_call_timeout_ms = 7000
kill_timeout_ms = 1500
[network]
mode = "none"
[storage]
driver = "other"
[log]
level = "debug"
file = "shim.log"
[plugins.storage.other]
path = "../plugins/other.so"
[plugins.storage.other.config]
name = "x"
count = 3
flag = true
list = ["a", "b"]
)");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->paths.share_dir, "/s");
  EXPECT_EQ(config->paths.run_dir, "/r");
  EXPECT_EQ(config->vm.vmm, "cloud-hypervisor");
  EXPECT_EQ(config->vm.kernel_path, dir_.path() + "/k/vmlinuz");
  EXPECT_EQ(config->vm.kernel_path_origin, "vm.kernel_path");
  EXPECT_EQ(config->vm.initrd_path, "/abs/initrd");
  EXPECT_EQ(config->vm.kernel_cmdline, "quiet");
  EXPECT_EQ(config->vm.vcpus, 2u);
  EXPECT_EQ(config->vm.max_vcpus, 4u);
  EXPECT_EQ(config->vm.memory_mib, 256u);
  EXPECT_EQ(config->vm.max_memory_mib, 1024u);
  EXPECT_EQ(config->vm.guest_overhead_mib, 64u);
  EXPECT_EQ(config->vm.guest_connect_timeout_ms, 5000u);
  EXPECT_EQ(config->vm.guest_call_timeout_ms, 7000u);
  EXPECT_EQ(config->vm.kill_timeout_ms, 1500u);
  EXPECT_EQ(config->network.mode, "none");
  EXPECT_EQ(config->log.level, "debug");
  EXPECT_EQ(config->log.file, dir_.path() + "/shim.log");
  ASSERT_EQ(config->plugins.size(), 1u);
  const PluginDecl& decl = config->plugins[0];
  EXPECT_EQ(decl.path,
            std::filesystem::path(dir_.path()).parent_path().string() + "/plugins/other.so");
  ASSERT_EQ(decl.settings.size(), 4u);
  std::map<std::string, ValueType> types;
  for (const auto& setting : decl.settings) types[setting.key] = setting.type;
  EXPECT_EQ(types["name"], ValueType::kString);
  EXPECT_EQ(types["count"], ValueType::kInteger);
  EXPECT_EQ(types["flag"], ValueType::kBoolean);
  EXPECT_EQ(types["list"], ValueType::kStringArray);
  EXPECT_THAT(decl.config_toml, HasSubstr("count = 3"));
  EXPECT_THAT(decl.config_toml, HasSubstr("list = [ 'a', 'b' ]"));
}

TEST_F(ConfigTest, RefusesUnknownKeysNamingFileKeyAndLine) {
  EXPECT_THAT(Refusal("[vm]\nvcpus = 1\nvcpu = 2\n"), HasSubstr("line 3: unknown key vm.vcpu"));
  EXPECT_THAT(Refusal("color = \"blue\"\n"), HasSubstr("unknown key color"));
  EXPECT_THAT(Refusal("[paths]\nshare = \"/x\"\n"), HasSubstr("unknown key paths.share"));
  EXPECT_THAT(Refusal("[plugins.vmm.q]\npath = \"q.so\"\nconfg = {}\n"),
              HasSubstr("unknown key plugins.vmm.q.confg"));
  EXPECT_THAT(Refusal("[plugins.gpu.q]\npath = \"q.so\"\n"),
              HasSubstr("unknown plugin kind in plugins.gpu"));
}

TEST_F(ConfigTest, RefusesWrongTypesAndRanges) {
  EXPECT_THAT(Refusal("[vm]\nvcpus = \"two\"\n"),
              HasSubstr("line 2: vm.vcpus must be an integer, not a string"));
  EXPECT_THAT(Refusal("[network]\nmode = 1\n"), HasSubstr("network.mode must be a string"));
  EXPECT_THAT(Refusal("vm = 3\n"), HasSubstr("vm must be a table"));
  EXPECT_THAT(Refusal("[vm]\nvcpus = 0\n"), HasSubstr("out of range"));
  EXPECT_THAT(Refusal("[vm]\nvcpus = 4\n"), HasSubstr("vm.max_vcpus (2) is below vm.vcpus (4)"));
  EXPECT_THAT(Refusal("[log]\nlevel = \"loud\"\n"), HasSubstr("log.level"));
  EXPECT_THAT(Refusal("[plugins.vmm.q]\nconfig = {}\n"), HasSubstr("plugin vmm/q has no path"));
  EXPECT_THAT(Refusal("[vm\n"), HasSubstr("line 1"));
}

TEST_F(ConfigTest, RefusesAPluginDeclaredTwice) {
  EXPECT_THAT(Refusal("[plugins.vmm.q]\npath = \"a.so\"\n[plugins.vmm.q]\npath = \"b.so\"\n"),
              HasSubstr("plugins.vmm.q"));
}

TEST_F(ConfigTest, EnvironmentBeatsTheFile) {
  ScopedEnv share("BEACON_SHARE_DIR", "/env/share");
  ScopedEnv state("BEACON_STATE_DIR", "/env/state");
  ScopedEnv log("BEACON_LOG_DIR", "/env/log");
  ScopedEnv level("BEACONBOX_LOG_LEVEL", "debug");
  auto config = Parse(
      "[paths]\nshare_dir = \"/f/share\"\nstate_dir = \"/f/state\"\nlog_dir = \"/f/log\"\n"
      "[vm]\nkernel_path = \"/f/kernel\"\n[log]\nlevel = \"warn\"\n");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->paths.share_dir, "/env/share");
  EXPECT_EQ(config->paths.state_dir, "/env/state");
  EXPECT_EQ(config->paths.log_dir, "/env/log");
  EXPECT_EQ(config->log.level, "debug");
  EXPECT_EQ(config->vm.kernel_path, "/env/share/kernel/beacon-kernel-x86_64");
  EXPECT_EQ(config->vm.initrd_path, "/env/share/kernel/beacon-initrd");
  EXPECT_EQ(config->vm.kernel_path_origin, "BEACON_SHARE_DIR");
}

TEST_F(ConfigTest, KernelFromShareDirWhenPresent) {
  dir_.Write("share/kernel/beacon-kernel-x86_64", "k");
  auto config = Parse("[paths]\nshare_dir = \"share\"\n");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->vm.kernel_path, dir_.path() + "/share/kernel/beacon-kernel-x86_64");
  EXPECT_EQ(config->vm.kernel_path_origin, "paths.share_dir");
}

// BEACON_CNI_MODE is the host's choice of network plugin; the CNI plugin's own
// variables (BEACON_CNI_BIN_DIR, ...) are not the host's: its schema names them.
TEST_F(ConfigTest, CniModeSelectsTheCniPluginButItsOwnVariablesStayItsOwn) {
  ScopedEnv mode("BEACON_CNI_MODE", "1");
  ScopedEnv bin("BEACON_CNI_BIN_DIR", "/env/bin");
  auto config = Parse(
      "[network]\nmode = \"bridge\"\n[plugins.network.cni]\npath = \"cni.so\"\n"
      "[plugins.network.cni.config]\nbin_dir = \"/file/bin\"\n");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->network.mode, "cni");
  PluginDecl cni = config->plugins.at(0);
  EXPECT_THAT(cni.config_toml, HasSubstr("bin_dir = '/file/bin'"));
  // What the plugin host does once the plugin's schema names the variable.
  EXPECT_TRUE(ApplyPluginEnvOverride(cni, "bin_dir", "BEACON_CNI_BIN_DIR"));
  EXPECT_THAT(cni.config_toml, HasSubstr("bin_dir = '/env/bin'"));
  ASSERT_EQ(cni.settings.size(), 1u);
  EXPECT_EQ(cni.settings[0].origin, "BEACON_CNI_BIN_DIR");
  EXPECT_FALSE(ApplyPluginEnvOverride(cni, "conf_dir", "BEACON_CNI_CONF_DIR"));  // unset
  EXPECT_THAT(cni.config_toml, ::testing::Not(HasSubstr("conf_dir")));
}

// A boolean key's variable (net-cni's configured_netns): 1/true/0/false become the
// boolean; other text stays a string, which the plugin host refuses by its type.
TEST_F(ConfigTest, ABooleanKeysVariableBecomesTheBoolean) {
  auto config = Parse("[network]\nmode = \"cni\"\n[plugins.network.cni]\npath = \"cni.so\"\n");
  ASSERT_TRUE(config.ok()) << config.error().message;
  for (auto [given, expected] : {std::pair{"1", "true"}, std::pair{"true", "true"},
                                 std::pair{"0", "false"}, std::pair{"false", "false"}}) {
    ScopedEnv set("BEACON_CNI_CONFIGURED_NETNS", given);
    PluginDecl cni = config->plugins.at(0);
    EXPECT_TRUE(ApplyPluginEnvOverride(cni, "configured_netns", "BEACON_CNI_CONFIGURED_NETNS",
                                       ValueType::kBoolean));
    EXPECT_THAT(cni.config_toml, HasSubstr(std::string("configured_netns = ") + expected)) << given;
    ASSERT_EQ(cni.settings.size(), 1u);
    EXPECT_EQ(cni.settings[0].type, ValueType::kBoolean);
  }
  ScopedEnv set("BEACON_CNI_CONFIGURED_NETNS", "yes");
  PluginDecl cni = config->plugins.at(0);
  EXPECT_TRUE(ApplyPluginEnvOverride(cni, "configured_netns", "BEACON_CNI_CONFIGURED_NETNS",
                                     ValueType::kBoolean));
  ASSERT_EQ(cni.settings.size(), 1u);
  EXPECT_EQ(cni.settings[0].type, ValueType::kString);
  EXPECT_EQ(cni.settings[0].origin, "BEACON_CNI_CONFIGURED_NETNS");
}

TEST_F(ConfigTest, CniModeZeroKeepsTheFileAndGarbageIsRefused) {
  {
    ScopedEnv mode("BEACON_CNI_MODE", "0");
    auto config = Parse("[network]\nmode = \"bridge\"\n");
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(config->network.mode, "bridge");
  }
  ScopedEnv mode("BEACON_CNI_MODE", "maybe");
  auto config = Parse("");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.error().message, HasSubstr("BEACON_CNI_MODE=maybe"));
}

TEST_F(ConfigTest, TheHostMapsNoPluginVariable) {
  ScopedEnv path("CLOUD_HYPERVISOR_PATH", "/opt/ch/cloud-hypervisor");
  auto config = Parse("[plugins.vmm.cloud-hypervisor]\npath = \"ch.so\"\n");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->plugins.at(0).config_toml, "");
}

TEST_F(ConfigTest, FindConfigFileHonoursBeaconboxConfig) {
  std::string path = dir_.Write("elsewhere.toml", "");
  ScopedEnv config("BEACONBOX_CONFIG", path.c_str());
  auto found = FindConfigFile();
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(*found, path);
  auto loaded = LoadConfig();
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->source, path);
}

TEST_F(ConfigTest, MissingFileIsOneLine) {
  auto config = LoadConfigFile(dir_.path() + "/nope.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.error().message, HasSubstr(dir_.path() + "/nope.toml"));
  EXPECT_THAT(config.error().message, HasSubstr("No such file"));
}

}  // namespace
}  // namespace beaconbox::config
