// The plugin host against the fixture plugins: loading, the typed wrappers, and each
// refusal, one line naming the config file, the plugin and the cause, with nothing
// left loaded.
#include "host/plugin_host/plugin_host.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

#include "host/plugin_host/plugin_loader.h"
#include "tests/plugin_host/test_util.h"

namespace beaconbox::plugin_host {
namespace {

using beaconbox::testing::GoodConfig;
using beaconbox::testing::PluginTable;
using beaconbox::testing::TempDir;
using ::testing::HasSubstr;

// True while `path` is mapped into this process.
bool Mapped(const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(path) != std::string::npos) return true;
  }
  return false;
}

class PluginHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>(
        "test", std::make_shared<spdlog::sinks::ostream_sink_st>(log_));
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  void TearDown() override { spdlog::set_default_logger(previous_); }

  Result<std::unique_ptr<PluginHost>> LoadText(const std::string& text) {
    config_path_ = dir_.Write("config.toml", text);
    auto config = config::LoadConfigFile(config_path_);
    if (!config.ok()) return config.error();
    return PluginHost::Load(std::move(config).value());
  }

  // Loads `text`, expects a refusal, checks it is one line naming the file and
  // `plugin` and that no fixture stays mapped, and returns it.
  std::string Refusal(const std::string& text, const std::string& plugin) {
    auto host = LoadText(text);
    EXPECT_FALSE(host.ok());
    if (host.ok()) return "";
    const std::string& message = host.error().message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_THAT(message, HasSubstr("config " + config_path_ + ": "));
    EXPECT_THAT(message, HasSubstr("plugin " + plugin));
    for (const char* fixture :
         {FIXTURE_VMM, FIXTURE_NETWORK, FIXTURE_STORAGE, FIXTURE_ABI99, FIXTURE_NO_ENTRY,
          FIXTURE_SMALL_RESPONSE, FIXTURE_NO_VM_CREATE, FIXTURE_ABI_V1}) {
      EXPECT_FALSE(Mapped(fixture)) << fixture << " still loaded after: " << message;
    }
    return message;
  }

  std::ostringstream log_;
  std::shared_ptr<spdlog::logger> previous_;
  TempDir dir_;
  std::string config_path_;
};

TEST_F(PluginHostTest, LoadsOnePluginOfEachKindAndDescribesThem) {
  auto host = LoadText(GoodConfig());
  ASSERT_TRUE(host.ok()) << host.error().message;
  auto plugins = (*host)->plugins();
  ASSERT_EQ(plugins.size(), 3u);
  EXPECT_EQ(plugins[0].kind, "vmm");
  EXPECT_EQ(plugins[0].name, "fake");
  EXPECT_EQ(plugins[0].version, "9.9.9");
  EXPECT_EQ(plugins[0].abi_version, BBX_ABI_VERSION_CURRENT);
  EXPECT_EQ(plugins[0].path, FIXTURE_VMM);
  EXPECT_THAT(plugins[0].ops,
              ::testing::ElementsAre("init", "fini", "vm_create", "vm_connect_guest", "vm_info",
                                     "vm_stop", "vm_destroy", "vm_resume"));
  EXPECT_THAT(plugins[1].ops, ::testing::ElementsAre("init", "fini", "attach", "detach"));
  EXPECT_THAT(plugins[2].ops, ::testing::ElementsAre("init", "fini", "prepare", "release"));
  EXPECT_EQ(plugins[0].config_keys.size(), 5u);
  EXPECT_NE((*host)->network(), nullptr);
  EXPECT_THAT(log_.str(), HasSubstr("[vmm/fake] init config: "));
}

TEST_F(PluginHostTest, HandsEachPluginItsOwnTableAsToml) {
  auto host = LoadText(GoodConfig() +
                       "[plugins.vmm.fake.config]\ngreeting = \"hi\"\ncount = 7\nverbose = true\n"
                       "tags = [\"a\"]\n");
  ASSERT_TRUE(host.ok()) << host.error().message;
  EXPECT_THAT(log_.str(), HasSubstr("[vmm/fake] init config: count = 7\ngreeting = 'hi'\ntags = "
                                    "[ 'a' ]\nverbose = true"));
  EXPECT_THAT(log_.str(), HasSubstr("[storage/fake] init config: \n"));
}

TEST_F(PluginHostTest, TypedWrappersCallThroughAndOwnTheirHandles) {
  auto loaded = LoadText(GoodConfig());
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  std::unique_ptr<PluginHost> host = std::move(loaded).value();

  pluginapi::VmSpec spec;
  spec.set_id("c1");
  spec.set_console_log_path(dir_.Write("console.log", "boot line 1\nboot line 2\n"));
  auto vm = host->vmm().CreateVm(spec);
  ASSERT_TRUE(vm.ok()) << vm.error().message;
  auto info = (*vm)->Info();
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->id(), "fixture-vm");
  auto fd = (*vm)->ConnectGuest(std::chrono::milliseconds(10));
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  EXPECT_GE(fd->get(), 0);
  EXPECT_TRUE((*vm)->Stop(std::chrono::milliseconds(10)).ok());
  EXPECT_EQ((*vm)->ConsoleTail(12), "boot line 2\n");

  // A NULL optional op is refused naming the plugin and the op.
  Status paused = (*vm)->Pause();
  ASSERT_FALSE(paused.ok());
  EXPECT_EQ(paused.error().code, ErrorCode::kNotImplemented);
  EXPECT_THAT(paused.error().message, HasSubstr("vmm plugin fake does not implement vm_pause"));
  // A failing op: the plugin's status and message come through.
  Status resumed = (*vm)->Resume();
  ASSERT_FALSE(resumed.ok());
  EXPECT_EQ(resumed.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(resumed.error().message, "vmm plugin fake: vm_resume: fixture cannot resume");
  EXPECT_EQ(host->vmm().CleanupStale(*info).error().code, ErrorCode::kNotImplemented);

  auto attachment = host->network()->Attach(pluginapi::NetworkAttachRequest());
  ASSERT_TRUE(attachment.ok()) << attachment.error().message;
  EXPECT_EQ(attachment->tap_name(), "tap-fixture");
  EXPECT_TRUE(host->network()->Detach("ns1", "c1").ok());
  // The request carries namespace (field 2) and id (field 1).
  EXPECT_THAT(log_.str(), HasSubstr("[network/fake] detach request \n\x02"
                                    "c1\x12\x03ns1"));
  EXPECT_EQ(host->network()->ListLeases().error().code, ErrorCode::kNotImplemented);
  EXPECT_EQ(host->network()->Reconcile().error().code, ErrorCode::kNotImplemented);

  auto plan = host->storage().Prepare(pluginapi::StoragePrepareRequest());
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(plan->devices_size(), 0);
  EXPECT_TRUE(host->storage().Release("ns1", "c1", "/bundle").ok());
  EXPECT_THAT(log_.str(), HasSubstr("[storage/fake] release request \n\x02"
                                    "c1\x12\x03ns1"));

  // The VM keeps its plugin loaded after the host goes: vm_destroy, then fini, then unload.
  host.reset();
  EXPECT_TRUE(Mapped(FIXTURE_VMM));
  EXPECT_EQ(log_.str().find("[vmm/fake] fini"), std::string::npos);
  vm->reset();
  std::string log = log_.str();
  size_t destroyed = log.find("[vmm/fake] vm_destroy");
  size_t finished = log.find("[vmm/fake] fini");
  ASSERT_NE(destroyed, std::string::npos);
  ASSERT_NE(finished, std::string::npos);
  EXPECT_LT(destroyed, finished);
  EXPECT_FALSE(Mapped(FIXTURE_VMM));
}

TEST_F(PluginHostTest, NetworkModeNoneNeedsNoNetworkPlugin) {
  auto host = LoadText(
      "[vm]\nvmm = \"fake\"\n[network]\nmode = \"none\"\n[storage]\n"
      "driver = \"fake\"\n" +
      PluginTable("vmm", "fake", FIXTURE_VMM) + PluginTable("storage", "fake", FIXTURE_STORAGE));
  ASSERT_TRUE(host.ok()) << host.error().message;
  EXPECT_EQ((*host)->network(), nullptr);
}

TEST_F(PluginHostTest, RefusesMissingFile) {
  std::string missing = dir_.path() + "/plugins/nope.so";
  std::string message = Refusal(GoodConfig(PluginTable("vmm", "other", missing)), "vmm/other");
  EXPECT_THAT(message, HasSubstr(missing));
  EXPECT_THAT(message, HasSubstr("file not found"));
  // The plugins loaded before it were finished and unloaded.
  EXPECT_THAT(log_.str(), HasSubstr("[storage/fake] fini"));
}

TEST_F(PluginHostTest, RefusesFileThatIsNotASharedObject) {
  std::string bogus = dir_.Write("bogus.so", "not an ELF file");
  EXPECT_THAT(Refusal(GoodConfig(PluginTable("vmm", "bogus", bogus)), "vmm/bogus"),
              HasSubstr("cannot load it"));
}

TEST_F(PluginHostTest, RefusesUnresolvableSymbols) {
  EXPECT_THAT(
      Refusal(GoodConfig(PluginTable("vmm", "fake2", FIXTURE_UNDEFINED_SYMBOL)), "vmm/fake2"),
      HasSubstr("beaconbox_fixture_symbol_nobody_defines"));
}

TEST_F(PluginHostTest, RefusesSharedObjectWithoutEntry) {
  EXPECT_THAT(Refusal(GoodConfig(PluginTable("vmm", "noentry", FIXTURE_NO_ENTRY)), "vmm/noentry"),
              HasSubstr("no bbx_plugin_entry symbol"));
}

TEST_F(PluginHostTest, RefusesAbiOutOfRange) {
  EXPECT_THAT(Refusal(GoodConfig(PluginTable("vmm", "abi", FIXTURE_ABI99)), "vmm/abi"),
              HasSubstr("speaks plugin ABI 99, this host speaks 2..2"));
}

TEST_F(PluginHostTest, RefusesAnAbiOnePluginWithOneClearLine) {
  std::string message = Refusal(GoodConfig(PluginTable("vmm", "old", FIXTURE_ABI_V1)), "vmm/old");
  EXPECT_THAT(message, HasSubstr("speaks no plugin ABI in this host's range 2..2"));
  EXPECT_THAT(message, HasSubstr("plugin speaks ABI 1, host offers 2..2"));
  EXPECT_THAT(message, HasSubstr("rebuild it against this host's plugin-abi"));
}

// The shim keeps only what it serves with: a network plugin declared while
// network.mode is "none" is loaded and checked by Load, then unloaded (issue 16).
TEST_F(PluginHostTest, UnloadUnpickedUnloadsWhatLoadDidNotPick) {
  auto host = LoadText(
      "[vm]\nvmm = \"fake\"\n[network]\nmode = \"none\"\n[storage]\ndriver = \"fake\"\n" +
      PluginTable("vmm", "fake", FIXTURE_VMM) + PluginTable("network", "fake", FIXTURE_NETWORK) +
      PluginTable("storage", "fake", FIXTURE_STORAGE));
  ASSERT_TRUE(host.ok()) << host.error().message;
  ASSERT_EQ((*host)->plugins().size(), 3u);
  EXPECT_TRUE(Mapped(FIXTURE_NETWORK));

  (*host)->UnloadUnpicked();

  auto plugins = (*host)->plugins();
  ASSERT_EQ(plugins.size(), 2u);
  EXPECT_EQ(plugins[0].kind, "vmm");
  EXPECT_EQ(plugins[1].kind, "storage");
  EXPECT_FALSE(Mapped(FIXTURE_NETWORK));
  EXPECT_TRUE(Mapped(FIXTURE_VMM));
  EXPECT_TRUE(Mapped(FIXTURE_STORAGE));
  EXPECT_EQ((*host)->network(), nullptr);
  EXPECT_TRUE((*host)->storage().Release("default", "c1", "/bundle").ok());
}

// A plugin built against a newer header: every table, key and answer is larger than
// this host knows. It loads, its schema is walked with its own stride, its hooks work
// and the unknown trailing members are never touched.
TEST_F(PluginHostTest, LoadsAPluginWhoseTablesGrew) {
  auto host =
      LoadText("[vm]\nvmm = \"fake\"\n[network]\nmode = \"fake\"\n[storage]\ndriver = \"fake\"\n" +
               PluginTable("vmm", "fake", FIXTURE_NEWER_VMM) +
               PluginTable("network", "fake", FIXTURE_NEWER_NETWORK) +
               PluginTable("storage", "fake", FIXTURE_NEWER_STORAGE) +
               "[plugins.vmm.fake.config]\ntags = [\"x\"]\nfail_init = false\n");
  ASSERT_TRUE(host.ok()) << host.error().message;
  auto plugins = (*host)->plugins();
  ASSERT_EQ(plugins.size(), 3u);
  ASSERT_EQ(plugins[0].config_keys.size(), 5u);
  EXPECT_EQ(plugins[0].config_keys[4].name, "fail_init");
  EXPECT_EQ(plugins[0].config_keys[0].env_var, "BEACONBOX_FIXTURE_GREETING");
  EXPECT_THAT(plugins[0].ops, ::testing::Contains("check"));
  pluginapi::VmSpec spec;
  spec.set_console_log_path(dir_.Write("console.log", ""));
  auto vm = (*host)->vmm().CreateVm(spec);
  ASSERT_TRUE(vm.ok()) << vm.error().message;
  EXPECT_EQ((*vm)->Info()->id(), "fixture-vm");
  auto capabilities = (*host)->vmm().Capabilities();
  ASSERT_TRUE(capabilities.ok()) << capabilities.error().message;
  EXPECT_TRUE(capabilities->read_only_shares());
  EXPECT_TRUE((*host)->network()->Detach("default", "c1").ok());
  EXPECT_TRUE((*host)->storage().Release("default", "c1", "/bundle").ok());
}

// A plugin built against an older, shorter header: its tables end before the optional
// hooks, and what lies beyond struct_size (traps that abort) is never called.
TEST_F(PluginHostTest, NeverCallsAHookBeyondTheTablesStructSize) {
  auto host =
      LoadText("[vm]\nvmm = \"fake\"\n[network]\nmode = \"fake\"\n[storage]\ndriver = \"fake\"\n" +
               PluginTable("vmm", "fake", FIXTURE_OLDER_VMM) +
               PluginTable("network", "fake", FIXTURE_OLDER_NETWORK) +
               PluginTable("storage", "fake", FIXTURE_STORAGE));
  ASSERT_TRUE(host.ok()) << host.error().message;
  auto plugins = (*host)->plugins();
  EXPECT_THAT(plugins[0].ops,
              ::testing::ElementsAre("init", "fini", "vm_create", "vm_connect_guest", "vm_info",
                                     "vm_stop", "vm_destroy"));
  EXPECT_THAT(plugins[1].ops, ::testing::ElementsAre("init", "fini", "attach", "detach"));
  pluginapi::VmSpec spec;
  spec.set_console_log_path(dir_.Write("console.log", ""));
  auto vm = (*host)->vmm().CreateVm(spec);
  ASSERT_TRUE(vm.ok()) << vm.error().message;
  EXPECT_EQ((*vm)->Pause().error().code, ErrorCode::kNotImplemented);
  EXPECT_EQ((*vm)->Resume().error().code, ErrorCode::kNotImplemented);
  EXPECT_EQ((*host)->network()->Reconcile().error().code, ErrorCode::kNotImplemented);
  EXPECT_EQ((*host)->network()->ListLeases().error().code, ErrorCode::kNotImplemented);
  // Capabilities lie beyond the common table: none, without a call.
  auto capabilities = (*host)->vmm().Capabilities();
  ASSERT_TRUE(capabilities.ok()) << capabilities.error().message;
  EXPECT_FALSE(capabilities->read_only_shares());
}

TEST_F(PluginHostTest, AKeyTakesTheEnvironmentVariableItsSchemaNames) {
  beaconbox::testing::ScopedEnv greeting("BEACONBOX_FIXTURE_GREETING", "from the environment");
  auto host = LoadText(GoodConfig("[plugins.vmm.fake.config]\ngreeting = \"from the file\"\n"));
  ASSERT_TRUE(host.ok()) << host.error().message;
  EXPECT_THAT(log_.str(), HasSubstr("[vmm/fake] init config: greeting = 'from the environment'"));
  // Every plugin declaring the key gets it; the host maps no variable itself.
  EXPECT_THAT(log_.str(), HasSubstr("[storage/fake] init config: greeting = 'from the "
                                    "environment'"));
}

TEST_F(PluginHostTest, RefusesTooSmallEntryAnswer) {
  EXPECT_THAT(Refusal(GoodConfig(PluginTable("vmm", "small", FIXTURE_SMALL_RESPONSE)), "vmm/small"),
              HasSubstr("entry answer too small"));
}

TEST_F(PluginHostTest, RefusesMissingRequiredOp) {
  std::string text = GoodConfig();
  text.replace(text.find(FIXTURE_VMM), std::string(FIXTURE_VMM).size(), FIXTURE_NO_VM_CREATE);
  EXPECT_THAT(Refusal(text, "vmm/fake"), HasSubstr("lacks the required op vm_create"));
}

TEST_F(PluginHostTest, RefusesNameMismatch) {
  EXPECT_THAT(Refusal(GoodConfig(PluginTable("vmm", "qemu", FIXTURE_VMM)), "vmm/qemu"),
              HasSubstr("reports name fake, not qemu"));
}

TEST_F(PluginHostTest, RefusesKindMismatch) {
  EXPECT_THAT(Refusal(GoodConfig(PluginTable("vmm", "net", FIXTURE_NETWORK)), "vmm/net"),
              HasSubstr("is a network plugin named fake, not vmm"));
}

TEST_F(PluginHostTest, RefusesDuplicateKindAndName) {
  // In one file TOML itself forbids it; a Config built otherwise is checked too.
  auto config = config::ParseConfig(GoodConfig(), "/etc/beaconbox/dup.toml");
  ASSERT_TRUE(config.ok()) << config.error().message;
  config->plugins.push_back(config->plugins[0]);
  auto host = PluginHost::Load(std::move(config).value());
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(host.error().message,
            "config /etc/beaconbox/dup.toml: plugin vmm/fake: declared twice: keep one "
            "[plugins.vmm.fake]");
  EXPECT_FALSE(Mapped(FIXTURE_VMM));
  EXPECT_THAT(Refusal(GoodConfig(PluginTable("vmm", "fake", FIXTURE_VMM)), "vmm/fake"),
              HasSubstr("cannot redefine existing table 'plugins.vmm.fake'"));
}

TEST_F(PluginHostTest, RefusesFailingInitShowingItsMessage) {
  EXPECT_THAT(
      Refusal(GoodConfig("[plugins.storage.fake.config]\nfail_init = true\n"), "storage/fake"),
      HasSubstr("init failed: fixture init refused: fail_init is set"));
  EXPECT_THAT(log_.str(), HasSubstr("[network/fake] fini"));
  EXPECT_THAT(log_.str(), HasSubstr("[vmm/fake] fini"));
}

TEST_F(PluginHostTest, RefusesUnknownPluginConfigKey) {
  std::string message =
      Refusal(GoodConfig("[plugins.network.fake.config]\ngreeting = \"x\"\ncolour = \"red\"\n"),
              "network/fake");
  EXPECT_THAT(message, HasSubstr("unknown key plugins.network.fake.config.colour"));
  EXPECT_THAT(message, HasSubstr("it takes greeting, count, verbose, tags, fail_init"));
  EXPECT_THAT(message, HasSubstr("line "));
}

TEST_F(PluginHostTest, RefusesWrongPluginValueTypes) {
  EXPECT_THAT(Refusal(GoodConfig("[plugins.vmm.fake.config]\ncount = \"seven\"\n"), "vmm/fake"),
              HasSubstr("plugins.vmm.fake.config.count must be an integer, not a string"));
  EXPECT_THAT(Refusal(GoodConfig("[plugins.vmm.fake.config]\ntags = [1, 2]\n"), "vmm/fake"),
              HasSubstr("tags must be an array of strings, not another type"));
  EXPECT_THAT(Refusal(GoodConfig("[plugins.vmm.fake.config]\nverbose = 1.5\n"), "vmm/fake"),
              HasSubstr("verbose must be a boolean"));
}

TEST_F(PluginHostTest, RefusesRequiredKindThatIsAbsent) {
  std::string storage_only =
      "[vm]\nvmm = \"fake\"\n[network]\nmode = \"none\"\n[storage]\n"
      "driver = \"fake\"\n" +
      PluginTable("storage", "fake", FIXTURE_STORAGE);
  EXPECT_THAT(Refusal(storage_only, "vmm/fake"),
              HasSubstr("(chosen by vm.vmm) is not declared: add [plugins.vmm.fake]"));
  std::string no_network =
      "[vm]\nvmm = \"fake\"\n[network]\nmode = \"bridge\"\n[storage]\n"
      "driver = \"fake\"\n" +
      PluginTable("vmm", "fake", FIXTURE_VMM) + PluginTable("storage", "fake", FIXTURE_STORAGE);
  EXPECT_THAT(Refusal(no_network, "network/bridge"), HasSubstr("chosen by network.mode"));
  std::string no_storage = "[vm]\nvmm = \"fake\"\n[network]\nmode = \"none\"\n" +
                           PluginTable("vmm", "fake", FIXTURE_VMM);
  EXPECT_THAT(Refusal(no_storage, "storage/virtiofs"), HasSubstr("chosen by storage.driver"));
}

}  // namespace
}  // namespace beaconbox::plugin_host
