// ABI conformance: every plugin in ${BEACONBOX_OUTPUT_DIR}/plugins negotiates within
// the offered range, respects the host's struct sizes and error buffer, has its
// required ops, answers its entry without side effects, and inits and finis with an
// empty config without touching the system. The same suite runs on test plugins built
// against a newer header (every table grew a trailing member) and an older one (tables
// ending before their optional hooks): both load in this host.
#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "host/plugin_host/plugin_host.h"
#include "host/plugin_host/plugin_loader.h"

namespace beaconbox::plugin_host {
namespace {

namespace fs = std::filesystem;

std::string PluginDir() {
  const char* output = std::getenv("BEACONBOX_OUTPUT_DIR");
  return std::string(output ? output : "_output") + "/plugins";
}

std::vector<std::string> AllPlugins() {
  std::vector<std::string> paths;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(PluginDir(), error)) {
    if (entry.path().extension() == ".so") paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

std::set<std::string> Entries(const std::string& dir) {
  std::set<std::string> names;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

size_t OpenFds() { return Entries("/proc/self/fd").size(); }
size_t Threads() { return Entries("/proc/self/task").size(); }

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "bbx-abi-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TempDir() {
    std::error_code error;
    fs::remove_all(path_, error);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(AbiConformance, PluginsWereBuilt) {
  EXPECT_FALSE(AllPlugins().empty()) << "no plugin .so in " << PluginDir() << ": run make first";
}

// config/config.toml documents each plugin's keys: the built plugins accept them.
TEST(AbiConformance, ShippedConfigMatchesTheBuiltPluginsSchemas) {
  const char* source = std::getenv("BEACONBOX_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  auto config = config::LoadConfigFile(std::string(source) + "/config/config.toml");
  ASSERT_TRUE(config.ok()) << config.error().message;
  for (const config::PluginDecl& decl : config->plugins) {
    std::string built = PluginDir() + "/" + fs::path(decl.path).filename().string();
    if (!fs::exists(built)) continue;
    auto plugin = LoadedPlugin::Open(built, decl.kind, decl.name, "config/config.toml");
    ASSERT_TRUE(plugin.ok()) << plugin.error().message;
    Status valid = (*plugin)->ValidateSettings(decl.settings);
    EXPECT_TRUE(valid.ok()) << valid.error().message;
  }
}

class PluginConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto opened = LoadedPlugin::Open(GetParam(), "", "", "plugin");
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    plugin_ = std::move(opened).value();
  }
  std::shared_ptr<LoadedPlugin> plugin_;
};

TEST_P(PluginConformance, NegotiatesWithinTheOfferedRangeAndHasRequiredOps) {
  // Open already refused anything outside [MIN_SUPPORTED, CURRENT], a too small
  // answer or ops table, and missing required ops; here the details.
  const PluginInfo& info = plugin_->info();
  EXPECT_GE(info.abi_version, BBX_ABI_VERSION_MIN_SUPPORTED);
  EXPECT_LE(info.abi_version, BBX_ABI_VERSION_CURRENT);
  EXPECT_FALSE(info.version.empty()) << "the plugin reports no version";
  EXPECT_LE(plugin_->response().struct_size, sizeof(bbx_entry_response));
  EXPECT_GE(plugin_->common().struct_size, offsetof(bbx_plugin_common_ops, fini) + sizeof(void*));
  // The file is named <kind>-<name>.so by convention (net- for network).
  std::string stem = fs::path(GetParam()).stem().string();
  if (stem.starts_with("fixture-")) return;
  std::string kind_prefix = info.kind == "network" ? "net" : info.kind;
  EXPECT_TRUE(stem.starts_with(kind_prefix + "-")) << stem << " is a " << info.kind << " plugin";
}

TEST_P(PluginConformance, RefusesOrStaysWithinARangeItDoesNotSpeak) {
  bbx_entry_request request{sizeof(bbx_entry_request), BBX_ABI_VERSION_CURRENT + 100,
                            BBX_ABI_VERSION_CURRENT + 200};
  bbx_entry_response response{};
  response.struct_size = sizeof(response);
  ErrorBuffer error;
  bbx_status status = plugin_->entry()(&request, &response, error.get());
  if (status == BBX_OK) {
    EXPECT_GE(response.abi_version, request.abi_min);
    EXPECT_LE(response.abi_version, request.abi_max);
  } else {
    EXPECT_EQ(status, BBX_ERR_ABI_MISMATCH);
    EXPECT_NE(error.Message(""), "") << "refusal without a message";
  }
}

TEST_P(PluginConformance, WritesNoFurtherThanTheHostsStructSize) {
  // A host that knows the answer only up to `version` (no schema, no ops).
  constexpr uint32_t kOldSize = offsetof(bbx_entry_response, config_keys);
  alignas(bbx_entry_response) unsigned char buffer[sizeof(bbx_entry_response) + 64];
  std::memset(buffer, 0xAB, sizeof(buffer));
  auto* response = reinterpret_cast<bbx_entry_response*>(buffer);
  response->struct_size = kOldSize;
  bbx_entry_request request{sizeof(bbx_entry_request), BBX_ABI_VERSION_MIN_SUPPORTED,
                            BBX_ABI_VERSION_CURRENT};
  ErrorBuffer error;
  ASSERT_EQ(plugin_->entry()(&request, response, error.get()), BBX_OK) << error.Message("");
  EXPECT_LE(response->struct_size, kOldSize);
  for (size_t i = kOldSize; i < sizeof(buffer); ++i) {
    ASSERT_EQ(buffer[i], 0xAB) << "byte " << i << " written beyond struct_size " << kOldSize;
  }
}

TEST_P(PluginConformance, TruncatesItsErrorMessageToTheBuffer) {
  bbx_entry_request request{sizeof(bbx_entry_request), BBX_ABI_VERSION_CURRENT + 100,
                            BBX_ABI_VERSION_CURRENT + 200};
  bbx_entry_response response{};
  response.struct_size = sizeof(response);
  char text[16];
  std::memset(text, 0xAB, sizeof(text));
  bbx_error error{text, 8};
  if (plugin_->entry()(&request, &response, &error) == BBX_OK) GTEST_SKIP() << "no refusal";
  EXPECT_NE(std::memchr(text, '\0', 8), nullptr) << "message not NUL-terminated within capacity";
  for (size_t i = 8; i < sizeof(text); ++i) EXPECT_EQ(static_cast<unsigned char>(text[i]), 0xAB);
  bbx_error no_buffer{nullptr, 0};
  EXPECT_NE(plugin_->entry()(&request, &response, &no_buffer), BBX_OK);
}

TEST_P(PluginConformance, EntryIsRepeatableAndWithoutSideEffects) {
  TempDir cwd;
  std::string old_cwd = fs::current_path().string();
  ASSERT_EQ(::chdir(cwd.path().c_str()), 0);
  size_t fds = OpenFds();
  size_t threads = Threads();
  bbx_entry_request request{sizeof(bbx_entry_request), BBX_ABI_VERSION_MIN_SUPPORTED,
                            BBX_ABI_VERSION_CURRENT};
  for (int i = 0; i < 3; ++i) {
    bbx_entry_response response{};
    response.struct_size = sizeof(response);
    ErrorBuffer error;
    ASSERT_EQ(plugin_->entry()(&request, &response, error.get()), BBX_OK);
    EXPECT_EQ(response.abi_version, plugin_->response().abi_version);
    EXPECT_EQ(response.kind, plugin_->response().kind);
    EXPECT_STREQ(response.name, plugin_->response().name);
    EXPECT_EQ(response.kind_ops, plugin_->response().kind_ops);
  }
  EXPECT_EQ(OpenFds(), fds) << "entry opened file descriptors";
  EXPECT_EQ(Threads(), threads) << "entry started threads";
  EXPECT_TRUE(Entries(cwd.path()).empty()) << "entry created files in the working directory";
  ASSERT_EQ(::chdir(old_cwd.c_str()), 0);
}

TEST_P(PluginConformance, DeclaresAWellFormedConfigSchema) {
  std::set<std::string> names;
  for (const ConfigKeyInfo& key : plugin_->info().config_keys) {
    EXPECT_FALSE(key.name.empty());
    EXPECT_TRUE(names.insert(key.name).second) << "key " << key.name << " declared twice";
    EXPECT_NE(key.type, config::ValueType::kOther) << key.name << ": unknown bbx_config_type";
    EXPECT_FALSE(key.description.empty()) << key.name << " has no description";
    if (key.default_value.empty()) continue;
    // The default, as written in TOML, has the declared type.
    toml::table parsed;
    try {
      parsed = toml::parse("v = " + key.default_value);
    } catch (const toml::parse_error& error) {
      ADD_FAILURE() << key.name << " default " << key.default_value << ": " << error.description();
      continue;
    }
    const toml::node* value = parsed.get("v");
    config::ValueType type = config::ValueType::kOther;
    if (value->is_string()) type = config::ValueType::kString;
    if (value->is_integer()) type = config::ValueType::kInteger;
    if (value->is_boolean()) type = config::ValueType::kBoolean;
    if (value->is_array()) type = config::ValueType::kStringArray;
    EXPECT_EQ(type, key.type) << key.name << " default " << key.default_value;
  }
}

TEST_P(PluginConformance, InitsAndFinisWithAnEmptyConfigWithoutTouchingTheSystem) {
  TempDir dirs;
  config::Paths paths{dirs.path() + "/share", dirs.path() + "/state", dirs.path() + "/log",
                      dirs.path() + "/run"};
  for (const auto& dir : {paths.share_dir, paths.state_dir, paths.log_dir, paths.run_dir}) {
    fs::create_directories(dir);
  }
  size_t fds = OpenFds();
  {
    auto opened = LoadedPlugin::Open(GetParam(), "", "", "plugin");
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    Status init = (*opened)->Init("", paths);
    ASSERT_TRUE(init.ok()) << init.error().message;
    EXPECT_NE((*opened)->instance(), nullptr);
    // NULL optional ops come back as kNotImplemented from the host's wrappers.
    if ((*opened)->kind() == BBX_PLUGIN_KIND_VMM) {
      VmmPlugin vmm(*opened);
      const auto& ops = vmm.info().ops;
      if (std::find(ops.begin(), ops.end(), "vm_cleanup_stale") == ops.end()) {
        EXPECT_EQ(vmm.CleanupStale(pluginapi::VmInfo()).error().code, ErrorCode::kNotImplemented);
      }
    } else if ((*opened)->kind() == BBX_PLUGIN_KIND_NETWORK) {
      NetworkPlugin network(*opened);
      const auto& ops = network.info().ops;
      if (std::find(ops.begin(), ops.end(), "list_leases") == ops.end()) {
        EXPECT_EQ(network.ListLeases().error().code, ErrorCode::kNotImplemented);
      }
    }
  }  // fini, unload
  for (const auto& dir : {paths.share_dir, paths.state_dir, paths.log_dir, paths.run_dir}) {
    EXPECT_TRUE(Entries(dir).empty()) << "init/fini left files in " << dir;
  }
  EXPECT_EQ(OpenFds(), fds) << "init/fini leaked file descriptors";
}

TEST_P(PluginConformance, CommonHooksCheckAndCapabilitiesAnswerWellFormedMessages) {
  TempDir dirs;
  config::Paths paths{dirs.path() + "/share", dirs.path() + "/state", dirs.path() + "/log",
                      dirs.path() + "/run"};
  Status init = plugin_->Init("", paths);
  ASSERT_TRUE(init.ok()) << init.error().message;
  auto report = plugin_->Check();
  if (plugin_->Has("check")) {
    ASSERT_TRUE(report.ok()) << report.error().message;
    for (const auto& line : report->lines()) {
      EXPECT_FALSE(line.what().empty()) << "a check line names nothing";
      EXPECT_FALSE(line.detail().empty()) << line.what() << ": a check line without detail";
      EXPECT_EQ(line.detail().find('\n'), std::string::npos) << line.what();
    }
  } else {
    EXPECT_EQ(report.error().code, ErrorCode::kNotImplemented);
  }
  auto capabilities = plugin_->Capabilities();
  ASSERT_TRUE(capabilities.ok()) << capabilities.error().message;
  // The ops a capability promises are there.
  if (capabilities->pause()) {
    EXPECT_TRUE(plugin_->Has("vm_pause") && plugin_->Has("vm_resume"));
  }
  if (capabilities->resize_vcpus() || capabilities->resize_memory()) {
    EXPECT_TRUE(plugin_->Has("vm_resize"));
  }
  if (capabilities->hotplug_disks() || capabilities->hotplug_shares() ||
      capabilities->hotplug_nics()) {
    EXPECT_TRUE(plugin_->Has("vm_add_device"));
  }
  EXPECT_TRUE(!fs::exists(dirs.path() + "/state") || fs::is_empty(dirs.path() + "/state"))
      << "check or capabilities changed the system";
}

std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = fs::path(info.param).stem().string();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Built, PluginConformance, ::testing::ValuesIn(AllPlugins()), TestName);
// Built against a newer header (bigger tables, keys and answer) and an older one
// (tables ending before their optional hooks, which trap if called).
INSTANTIATE_TEST_SUITE_P(GrownTables, PluginConformance,
                         ::testing::Values(FIXTURE_NEWER_VMM, FIXTURE_NEWER_NETWORK,
                                           FIXTURE_NEWER_STORAGE, FIXTURE_OLDER_VMM,
                                           FIXTURE_OLDER_NETWORK),
                         TestName);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(PluginConformance);

}  // namespace
}  // namespace beaconbox::plugin_host
