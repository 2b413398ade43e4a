// beaconbox-ctl run as an operator runs it: `config validate` on good and broken
// configs (exit code and the one-line message), `plugins` and `check`.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "tests/plugin_host/test_util.h"

namespace beaconbox {
namespace {

using beaconbox::testing::GoodConfig;
using beaconbox::testing::PluginTable;
using beaconbox::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::StartsWith;

struct CtlRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class CtlTest : public ::testing::Test {
 protected:
  // Runs beaconbox-ctl with `args`, BEACONBOX_CONFIG and the BEACON_* overrides unset.
  CtlRun Ctl(std::vector<std::string> args) {
    std::string out_path = dir_.path() + "/stdout";
    std::string err_path = dir_.path() + "/stderr";
    args.insert(args.begin(), BEACONBOX_CTL);
    pid_t pid = ::fork();
    if (pid == 0) {
      int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(out, STDOUT_FILENO);
      ::dup2(err, STDERR_FILENO);
      for (const char* name :
           {"BEACONBOX_CONFIG", "BEACON_SHARE_DIR", "BEACON_CNI_MODE", "BEACONBOX_LOG_LEVEL"}) {
        ::unsetenv(name);
      }
      std::vector<char*> argv;
      for (auto& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      _exit(127);
    }
    CtlRun run;
    int status = 0;
    ::waitpid(pid, &status, 0);
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = ReadAll(out_path);
    run.err = ReadAll(err_path);
    return run;
  }

  // `config validate` on `text`: expects exit 1, nothing on stdout and exactly one
  // line on stderr naming the file; returns that line.
  std::string Refused(const std::string& text) {
    std::string path = dir_.Write("config.toml", text);
    CtlRun run = Ctl({"config", "validate", path});
    EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
    EXPECT_EQ(run.out, "");
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
    EXPECT_THAT(run.err, StartsWith("config " + path + ": "));
    return run.err;
  }

  TempDir dir_;
};

TEST_F(CtlTest, ValidateAcceptsAGoodConfig) {
  CtlRun run = Ctl({"config", "validate", dir_.Write("config.toml", GoodConfig())});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "OK\n");
  EXPECT_EQ(run.err, "");
}

TEST_F(CtlTest, ValidateShowsEachRefusalOnOneLine) {
  EXPECT_THAT(Refused(GoodConfig(PluginTable("vmm", "gone", dir_.path() + "/gone.so"))),
              HasSubstr("plugin vmm/gone (" + dir_.path() + "/gone.so): file not found"));
  EXPECT_THAT(Refused(GoodConfig(PluginTable("vmm", "x", FIXTURE_NO_ENTRY))),
              HasSubstr("plugin vmm/x"));
  EXPECT_THAT(Refused(GoodConfig(PluginTable("vmm", "x", FIXTURE_ABI99))),
              HasSubstr("speaks plugin ABI 99"));
  EXPECT_THAT(Refused(GoodConfig(PluginTable("vmm", "qemu", FIXTURE_VMM))),
              HasSubstr("plugin vmm/qemu (" FIXTURE_VMM "): reports name fake, not qemu"));
  EXPECT_THAT(Refused(GoodConfig(PluginTable("vmm", "fake", FIXTURE_VMM))),
              HasSubstr("plugin vmm/fake declared twice"));
  EXPECT_THAT(Refused(GoodConfig("[plugins.vmm.fake.config]\nfail_init = true\n")),
              HasSubstr("plugin vmm/fake: init failed: fixture init refused"));
  EXPECT_THAT(Refused(GoodConfig("[plugins.vmm.fake.config]\nsize = 1\n")),
              HasSubstr("unknown key plugins.vmm.fake.config.size"));
  EXPECT_THAT(Refused(GoodConfig("[plugins.vmm.fake.config]\ncount = true\n")),
              HasSubstr("count must be an integer, not a boolean"));
  EXPECT_THAT(Refused("[storage]\ndriver = \"fake\"\n[network]\nmode = \"none\"\n" +
                      PluginTable("storage", "fake", FIXTURE_STORAGE)),
              HasSubstr("plugin vmm/qemu (chosen by vm.vmm) is not declared"));
  EXPECT_THAT(Refused("[vm]\nmemory = 3\n"), HasSubstr("line 2: unknown key vm.memory"));
}

// vmm-qemu's keys through the host, as an operator meets them: a value of the wrong
// type is refused by the host's check against the plugin's declared keys (vmm-qemu
// does not check types itself), a value out of range by vmm-qemu's Init; each in one
// line naming the key.
TEST_F(CtlTest, ValidateRefusesVmmQemuKeysOfTheWrongTypeOrRange) {
  auto with_qemu_keys = [&](const std::string& keys) {
    return "[vm]\nvmm = \"qemu\"\nkernel_path = \"" + dir_.Write("kernel", "k") +
           "\"\ninitrd_path = \"" + dir_.Write("initrd", "i") +
           "\"\n[network]\nmode = \"none\"\n[storage]\ndriver = \"fake\"\n" +
           PluginTable("vmm", "qemu", VMM_QEMU_PLUGIN, keys) +
           PluginTable("storage", "fake", FIXTURE_STORAGE);
  };
  CtlRun good = Ctl({"config", "validate",
                     dir_.Write("config.toml", with_qemu_keys("tcg_tb_size_mib = 16\n"
                                                              "free_page_reporting = false\n"
                                                              "guest_swiotlb = true\n"))});
  EXPECT_EQ(good.exit_code, 0) << good.err;
  const std::string key = "plugins.vmm.qemu.config.";
  for (const auto& [bad, refusal] : std::vector<std::pair<std::string, std::string>>{
           {"tcg_tb_size_mib = \"32\"", key + "tcg_tb_size_mib must be an integer, not a string"},
           {"tcg_tb_size_mib = true", key + "tcg_tb_size_mib must be an integer, not a boolean"},
           {"free_page_reporting = \"yes\"",
            key + "free_page_reporting must be a boolean, not a string"},
           {"guest_swiotlb = 1", key + "guest_swiotlb must be a boolean, not an integer"},
           {"template_boot_timeout_ms = \"5m\"",
            key + "template_boot_timeout_ms must be an integer, not a string"},
           {"kvm_probe_timeout_ms = false",
            key + "kvm_probe_timeout_ms must be an integer, not a boolean"},
           {"tcg_tb_size_mib = 4097", "tcg_tb_size_mib = 4097: use 0 (QEMU's default) to 4096"},
           {"template_boot_timeout_ms = 10", "template_boot_timeout_ms = 10: use 1000 to 3600000"},
           {"kvm_probe_timeout_ms = 700000", "kvm_probe_timeout_ms = 700000: use 100 to 600000"},
       }) {
    EXPECT_THAT(Refused(with_qemu_keys(bad + "\n")), HasSubstr(refusal)) << bad;
  }
}

TEST_F(CtlTest, ValidateOfAMissingFileFails) {
  CtlRun run = Ctl({"config", "validate", dir_.path() + "/none.toml"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr(dir_.path() + "/none.toml"));
}

TEST_F(CtlTest, PluginsListsVersionAbiPathAndOps) {
  CtlRun run = Ctl({"--config", dir_.Write("config.toml", GoodConfig()), "plugins"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("vmm      fake               9.9.9      2    " FIXTURE_VMM));
  EXPECT_THAT(run.out, HasSubstr("ops: init, fini, vm_create, vm_connect_guest, vm_info, vm_stop, "
                                 "vm_destroy, vm_resume\n"));
  EXPECT_THAT(run.out, HasSubstr("ops: init, fini, attach, detach\n"));
  EXPECT_THAT(run.out, HasSubstr("capabilities: none\n"));
  EXPECT_THAT(run.out, HasSubstr("config.count (an integer, default 1): an integer key"));
  EXPECT_THAT(run.out, HasSubstr("config.greeting (a string, default \"hello\", env "
                                 "BEACONBOX_FIXTURE_GREETING): a string key"));
}

TEST_F(CtlTest, PluginsShowsCapabilities) {
  std::string text = GoodConfig();
  text.replace(text.find(FIXTURE_VMM), std::string(FIXTURE_VMM).size(), FIXTURE_CHECKED_VMM);
  CtlRun run = Ctl({"--config", dir_.Write("config.toml", text), "plugins"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("capabilities: read-only-shares, agent-virtio-serial\n"));
}

TEST_F(CtlTest, CheckReportsEachPrerequisite) {
  std::string kernel = dir_.Write("kernel", "k");
  std::string initrd = dir_.Write("initrd", "i");
  // Into GoodConfig's [vm] table.
  std::string text = GoodConfig();
  text.replace(
      text.find("vmm = \"fake\"\n"), 13,
      "vmm = \"fake\"\nkernel_path = \"" + kernel + "\"\ninitrd_path = \"" + initrd + "\"\n");
  std::string config = dir_.Write("config.toml", text);
  CtlRun run = Ctl({"--config", config, "check"});
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  std::istringstream lines(run.out);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    ++count;
    EXPECT_TRUE(line.starts_with("OK ") || line.starts_with("WARN ") || line.starts_with("     ("))
        << line;
  }
  // config, kernel, initrd, three directories, three plugins (checking nothing of
  // their own: one "(...)" line each).
  EXPECT_EQ(count, 12) << run.out;
  EXPECT_THAT(run.out, HasSubstr("kernel           " + kernel + " (from vm.kernel_path)"));
  EXPECT_THAT(run.out, HasSubstr("plugin           storage/fake 9.9.9 (ABI 2) loads and inits"));
  EXPECT_THAT(run.out, HasSubstr("(storage plugin fake checks nothing of its own)"));

  // A missing initrd is a FAIL with the fix, and the exit code says so.
  std::filesystem::remove(initrd);
  run = Ctl({"--config", config, "check"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.out, HasSubstr("FAIL initrd           " + initrd));
  EXPECT_THAT(run.out, HasSubstr("run make"));
}

// A plugin's own check lines are printed under its name.
TEST_F(CtlTest, CheckPrintsEachPluginsOwnLinesUnderItsName) {
  std::string text = GoodConfig();
  text.replace(text.find(FIXTURE_VMM), std::string(FIXTURE_VMM).size(), FIXTURE_CHECKED_VMM);
  CtlRun run = Ctl({"--config", dir_.Write("config.toml", text), "check"});
  size_t plugin_line = run.out.find("plugin           vmm/fake 9.9.9 (ABI 2) loads and inits\n");
  ASSERT_NE(plugin_line, std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("WARN   fixture" + std::string(8, ' ') + "fix it: none\n"),
            run.out.find('\n', plugin_line) + 1)
      << run.out;
}

// The qemu plugin's kvm line (its check hook): its config (accelerator, kvm_device) and
// the verdict its KVM probe cached under <state_dir>/vmm-qemu (plugins/vmm-qemu/accelerator.h).
TEST_F(CtlTest, CheckKvmLineFollowsTheQemuPluginsCachedVerdict) {
  std::string kernel = dir_.Write("kernel", "k");
  std::string initrd = dir_.Write("initrd", "i");
  std::string state_dir = dir_.path() + "/state";
  auto config_for = [&](const std::string& accelerator) {
    return dir_.Write(
        "config.toml",
        "[paths]\nstate_dir = \"" + state_dir + "\"\n[vm]\nvmm = \"qemu\"\nkernel_path = \"" +
            kernel + "\"\ninitrd_path = \"" + initrd +
            "\"\n[network]\nmode = \"none\"\n[storage]\ndriver = \"fake\"\n" +
            PluginTable("vmm", "qemu", VMM_QEMU_PLUGIN) +
            "[plugins.vmm.qemu.config]\naccelerator = \"" + accelerator +
            "\"\nkvm_device = \"/dev/null\"\n" + PluginTable("storage", "fake", FIXTURE_STORAGE));
  };
  auto kvm_line = [&](const std::string& config) {
    CtlRun run = Ctl({"--config", config, "check"});
    std::istringstream lines(run.out);
    std::string line;
    while (std::getline(lines, line)) {
      // "<LEVEL> kvm <text>", whatever the indent under the plugin's line.
      if (line.find(" kvm ") != std::string::npos) {
        line.erase(0, line.find_first_not_of(' '));
        std::string level = line.substr(0, line.find(' '));
        std::string text = line.substr(line.find(" kvm ") + 5);
        return level + " kvm " + text.substr(text.find_first_not_of(' '));
      }
    }
    return "no kvm line in: " + run.out + run.err;
  };
  std::string config = config_for("auto");
  EXPECT_THAT(
      kvm_line(config),
      StartsWith("OK kvm /dev/null opens; whether KVM boots the guest is not verified yet"));

  std::ifstream boot_id_file("/proc/sys/kernel/random/boot_id");
  std::string boot_id;
  std::getline(boot_id_file, boot_id);
  std::filesystem::create_directories(state_dir + "/vmm-qemu/cache");
  auto write_verdict = [&](bool usable, const std::string& boot) {
    std::ofstream(state_dir + "/vmm-qemu/cache/kvm-verdict-0000000000000001.json")
        << R"({"version": 1, "usable": )" << (usable ? "true" : "false")
        << R"(, "reason": "qemu-system-x86_64: error: failed to set MSR 0x10a\u001b[1m",)"
        << R"( "probed_at": 1, "boot_id": ")" << boot << R"(", "kvm_device": "/dev/null",)"
        << R"( "binary": "/usr/bin/qemu-system-x86_64", "kernel": ")" << kernel
        << R"(", "initrd": ")" << initrd << R"("})";
  };
  write_verdict(false, boot_id);
  std::string line = kvm_line(config);
  EXPECT_THAT(line, StartsWith("WARN kvm KVM present but cannot boot the guest: "
                               "qemu-system-x86_64: error: failed to set MSR 0x10a?[1m; "
                               "containers use TCG (slow): "));
  EXPECT_THAT(line, HasSubstr("accelerator = \"tcg\""));
  EXPECT_THAT(kvm_line(config_for("kvm")),
              StartsWith("FAIL kvm KVM present but cannot boot the guest: "));
  EXPECT_THAT(kvm_line(config_for("tcg")), StartsWith("OK kvm accelerator = \"tcg\""));

  config = config_for("auto");  // the same file, rewritten
  write_verdict(true, boot_id);
  EXPECT_THAT(kvm_line(config), StartsWith("OK kvm KVM usable: "));
  // A verdict from an earlier boot of the host does not count.
  write_verdict(false, "another-boot");
  EXPECT_THAT(kvm_line(config), HasSubstr("not verified yet"));
}

// The lines of `text` that are not comments: what containerd reads.
std::string TomlLines(const std::string& text) {
  std::istringstream in(text);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (!line.starts_with("#")) kept += line + "\n";
  }
  return kept;
}

TEST_F(CtlTest, ContainerdConfigPrintsVersion2For16And17AndVersion3For2x) {
  const std::string config = dir_.Write("config.toml", GoodConfig());
  for (const char* version : {"1.6.20~ds1", "1.7", "v1.7.24"}) {
    CtlRun run = Ctl({"--config", config, "containerd-config", "--version-of", version});
    EXPECT_EQ(run.exit_code, 0) << run.err;
    EXPECT_EQ(TomlLines(run.out),
              "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.beaconbox]\n"
              "  runtime_type = \"io.containerd.beaconbox.v1\"\n"
              "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.beaconbox.options]\n"
              "  ConfigPath = \"" +
                  config + "\"\n")
        << version;
    EXPECT_THAT(run.out, HasSubstr("(config version 2)"));
    EXPECT_THAT(run.out, HasSubstr("ctr run --runtime io.containerd.beaconbox.v1 "
                                   "--runtime-config-path " +
                                   config));
  }
  CtlRun run = Ctl({"--config", config, "containerd-config", "--version-of", "2.1.4"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(TomlLines(run.out),
            "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.beaconbox]\n"
            "  runtime_type = \"io.containerd.beaconbox.v1\"\n"
            "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.beaconbox.options]\n"
            "  ConfigPath = \"" +
                config + "\"\n");
  EXPECT_THAT(run.out, HasSubstr("(config version 3)"));
}

TEST_F(CtlTest, ContainerdConfigAsksTheContainerdItIsGiven) {
  // FAKE containerd binaries: only their --version output matters here.
  auto fake = [&](const std::string& name, const std::string& output, int exit_code = 0) {
    std::string path = dir_.Write(
        name, "#!/bin/sh\necho '" + output + "'\nexit " + std::to_string(exit_code) + "\n");
    ::chmod(path.c_str(), 0755);
    return path;
  };
  const std::string config = dir_.Write("config.toml", GoodConfig());
  CtlRun run = Ctl({"--config", config, "containerd-config", "--containerd",
                    fake("ctrd2", "containerd github.com/containerd/containerd/v2 v2.0.2 c5075")});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("[plugins.\"io.containerd.cri.v1.runtime\".containerd"));
  run = Ctl({"--config", config, "containerd-config", "--containerd",
             fake("ctrd17", "containerd containerd.io 1.7.24 88bf19b2")});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("[plugins.\"io.containerd.grpc.v1.cri\".containerd"));

  // Each refusal is one line saying what to do.
  for (const auto& [args, says] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--version-of", "1.5.9"}, "containerd 1.5 is not supported"},
           {{"--version-of", "3.0"}, "containerd 3.0 is not supported"},
           {{"--version-of", "latest"}, "no containerd version in 'latest'"},
           {{"--containerd", dir_.path() + "/absent"}, "--version failed"},
           {{"--containerd", fake("broken", "1.7.0", 3)}, "--version failed"},
           {{"--containerd", fake("odd", "containerd devel")}, "give one with --version-of"},
           {{"--frob"}, "unexpected argument --frob"}}) {
    std::vector<std::string> argv = {"--config", config, "containerd-config"};
    argv.insert(argv.end(), args.begin(), args.end());
    run = Ctl(argv);
    EXPECT_NE(run.exit_code, 0) << says;
    EXPECT_EQ(run.out, "") << says;
    EXPECT_THAT(run.err, HasSubstr(says));
    if (args[0] != "--frob") {
      EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
    }
  }
}

TEST_F(CtlTest, ContainerdConfigQuotesTheConfigPath) {
  const std::string odd = dir_.path() + "/my \"box\".toml";
  CtlRun run = Ctl({"--config", odd, "containerd-config", "--version-of", "1.7"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("  ConfigPath = \"" + dir_.path() + "/my \\\"box\\\".toml\"\n"));
}

// `gc` with the erofs storage plugin: an image no layer and no process uses is
// removed; one a process holds (as a running container's shim does) is kept; a line
// each and a summary.
TEST_F(CtlTest, GcRemovesUnusedErofsImagesAndKeepsHeldOnes) {
  const std::string cache = dir_.path() + "/erofs-cache";
  ASSERT_EQ(::mkdir(cache.c_str(), 0755), 0);
  for (const char* key : {"aaa", "bbb"}) {
    std::ofstream(cache + "/" + key + ".erofs") << std::string(8192, 'x');
    std::ofstream(cache + "/" + key + ".source") << "/no/such/layer/" << key << "\n";
  }
  const int held = ::open((cache + "/bbb.erofs").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(held, 0);
  ASSERT_EQ(::flock(held, LOCK_SH), 0);
  const std::string config =
      "[vm]\nvmm = \"fake\"\n[network]\nmode = \"none\"\n[storage]\ndriver = \"erofs\"\n" +
      PluginTable("vmm", "fake", FIXTURE_VMM) +
      PluginTable("storage", "erofs", STORAGE_EROFS_PLUGIN, "cache_dir = \"" + cache + "\"");
  CtlRun run = Ctl({"--config", dir_.Write("config.toml", config), "gc"});
  ::close(held);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  EXPECT_THAT(run.out, HasSubstr("removed " + cache + "/aaa.erofs ("));
  EXPECT_THAT(run.out, HasSubstr(" MiB; layer /no/such/layer/aaa is gone)\n"));
  EXPECT_THAT(run.out,
              HasSubstr("kept " + cache + "/bbb.erofs (0.0 MiB; held by a running container)\n"));
  EXPECT_THAT(run.out,
              HasSubstr("gc: storage erofs: 1 cached image(s) removed (0.0 MiB), 1 kept\n"));
  EXPECT_FALSE(std::filesystem::exists(cache + "/aaa.erofs"));
  EXPECT_FALSE(std::filesystem::exists(cache + "/aaa.source"));
  EXPECT_TRUE(std::filesystem::exists(cache + "/bbb.erofs"));

  // Nobody holds it now: the next gc removes it.
  run = Ctl({"--config", dir_.path() + "/config.toml", "gc"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("gc: storage erofs: 1 cached image(s) removed"));
  EXPECT_FALSE(std::filesystem::exists(cache + "/bbb.erofs"));
}

// Without a network plugin and with a storage plugin that keeps no cache, gc has
// nothing to ask: one line saying so.
TEST_F(CtlTest, GcWithNothingToCollectSaysSo) {
  std::string text = GoodConfig();
  text.replace(text.find("mode = \"fake\""), 13, "mode = \"none\"");
  CtlRun run = Ctl({"--config", dir_.Write("config.toml", text), "gc"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_THAT(run.err, StartsWith("nothing to collect: network.mode is \"none\" and storage "
                                  "plugin fake keeps no cache"));
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
}

TEST_F(CtlTest, UnknownCommandPrintsUsage) {
  CtlRun run = Ctl({"frobnicate"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("usage: beaconbox-ctl"));
}

}  // namespace
}  // namespace beaconbox
