// VM templating's pure parts (plugins/vmm-qemu/template.h): the key, the manifest
// checks that refuse a corrupt template, the clone's command line and hot-plug
// commands. The real restore runs in tests/e2e/template_e2e.sh.
#include "plugins/vmm-qemu/template.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/base/file_util.h"

namespace beaconbox::qemu {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;

class TemplateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/bbx-template-test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    Write(dir_ + "/kernel", "kernel");
    Write(dir_ + "/initrd", "initrd");
    Write(dir_ + "/qemu", "qemu");
    config_.binary = dir_ + "/qemu";
    config_.template_dir = dir_ + "/templates";
  }
  void TearDown() override { fs::remove_all(dir_); }
  static void Write(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  }
  pluginapi::VmSpec Spec(const std::string& id) const {
    pluginapi::VmSpec spec;
    spec.set_id(id);
    spec.set_kernel_path(dir_ + "/kernel");
    spec.set_initrd_path(dir_ + "/initrd");
    spec.set_run_dir(dir_ + "/vm-" + id);
    spec.set_console_log_path(dir_ + "/" + id + ".log");
    spec.add_guest_kernel_args("panic=-1");
    spec.set_agent_token(std::string(64, id[0]));
    spec.mutable_agent_channel()->set_kind(pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
    spec.mutable_agent_channel()->set_serial_port_name("beaconbox.agent");
    spec.mutable_agent_channel()->set_unix_socket_path(dir_ + "/vm-" + id + "/agent.sock");
    spec.set_memory_mib(256);
    return spec;
  }
  std::string dir_;
  QemuConfig config_;
};

TEST_F(TemplateTest, KeyIgnoresPerVmNamesButNotTheGuestsInputs) {
  auto a = TemplateKeyText(Spec("a"), config_, "tcg");
  auto b = TemplateKeyText(Spec("b"), config_, "tcg");
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*a, *b) << "two VMs of one config share a template";

  pluginapi::VmSpec more_memory = Spec("a");
  more_memory.set_memory_mib(512);
  EXPECT_NE(*TemplateKeyText(more_memory, config_, "tcg"), *a);
  EXPECT_NE(*TemplateKeyText(Spec("a"), config_, "kvm"), *a);
  pluginapi::VmSpec other_cmdline = Spec("a");
  other_cmdline.set_kernel_cmdline("quiet=0");
  EXPECT_NE(*TemplateKeyText(other_cmdline, config_, "tcg"), *a);

  // A new initrd (even of the same size) is another template.
  ::usleep(10000);
  Write(dir_ + "/initrd", "INITRD");
  auto changed = TemplateKeyText(Spec("a"), config_, "tcg");
  EXPECT_NE(*changed, *a);
  EXPECT_NE(TemplateFilesFor(config_.template_dir, *changed).dir,
            TemplateFilesFor(config_.template_dir, *a).dir);
}

TEST_F(TemplateTest, CloneCommandMapsTheTemplatesMemoryPrivatelyAndReservesPorts) {
  pluginapi::VmSpec spec = Spec("a");
  auto block = spec.add_devices()->mutable_block();
  block->set_id("rootfs");
  block->set_host_path("/x.img");
  auto plan = PlanLaunch(spec);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  plan->accelerator = "tcg";
  auto argv = TemplateMachineCommand(spec, config_, *plan, "/t/memory", false);
  ASSERT_TRUE(argv.ok()) << argv.error().message;
  EXPECT_NE(std::find(argv->begin(), argv->end(),
                      "memory-backend-file,id=mem,size=256M,mem-path=/t/memory,share=off"),
            argv->end());
  EXPECT_EQ(
      std::count_if(argv->begin(), argv->end(),
                    [](const std::string& arg) { return arg.rfind("pcie-root-port,", 0) == 0; }),
      kTemplateHotplugPorts);
  for (const auto& arg : *argv) {
    EXPECT_EQ(arg.find("memfd"), std::string::npos) << arg;
    EXPECT_EQ(arg.find("x.img"), std::string::npos) << "devices are hot-added, not on: " << arg;
  }
  auto shared = TemplateMachineCommand(spec, config_, *plan, "/t/memory", true);
  EXPECT_NE(std::find(shared->begin(), shared->end(),
                      "memory-backend-file,id=mem,size=256M,mem-path=/t/memory,share=on"),
            shared->end());
  QemuConfig pc = config_;
  pc.machine = "pc";
  auto refused = TemplateMachineCommand(spec, pc, *plan, "/t/memory", false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("q35"), std::string::npos);
}

// Issue 16: QEMU 7.2 punches holes into a RAM block's file on free page reporting also
// when the clone maps it privately (share=off), zeroing the shared template file under
// the other clones. Neither the template nor its clones get the reporting balloon (the
// same devices in both, else the state does not load); a cold boot still has it.
TEST_F(TemplateTest, NoFreePageReportingInTemplateOrCloneButInAColdBoot) {
  pluginapi::VmSpec spec = Spec("a");
  auto plan = PlanLaunch(spec);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  plan->accelerator = "tcg";
  ASSERT_TRUE(config_.free_page_reporting) << "on by default";
  for (bool shared : {true, false}) {  // the template's, then a clone's
    auto argv = TemplateMachineCommand(spec, config_, *plan, "/t/memory", shared);
    ASSERT_TRUE(argv.ok()) << argv.error().message;
    for (const auto& arg : *argv) {
      EXPECT_EQ(arg.find("balloon"), std::string::npos) << "shared=" << shared << ": " << arg;
      EXPECT_EQ(arg.find("page_reporting"), std::string::npos)
          << "shared=" << shared << ": " << arg;
    }
  }
  auto key = TemplateKeyText(spec, config_, "tcg");
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ(key->find("balloon"), std::string::npos) << "the key is the template's real argv";
  auto cold = BuildQemuCommand(spec, config_, *plan);
  ASSERT_TRUE(cold.ok()) << cold.error().message;
  EXPECT_NE(std::find(cold->begin(), cold->end(),
                      "virtio-balloon-pci,id=balloon0,free-page-reporting=on"),
            cold->end());
}

TEST_F(TemplateTest, HotplugCommandsOnePortPerDeviceAndNetnsTapsByDescriptor) {
  pluginapi::VmSpec spec = Spec("a");
  auto* block = spec.add_devices()->mutable_block();
  block->set_id("rootfs");
  block->set_host_path("/x.img");
  block->set_read_only(true);
  auto* share = spec.add_devices()->mutable_share();
  share->set_tag("bundle");
  share->set_host_path("/b");
  share->set_vhost_user_socket(dir_ + "/vm-a/fs0.sock");
  auto* net = spec.add_devices()->mutable_net();
  net->set_tap_name("tap0");
  net->set_mac("02:00:00:00:00:01");
  auto plan = PlanLaunch(spec);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  plan->tap_fds = {-1};
  auto commands = HotplugCommands(spec, *plan);
  ASSERT_TRUE(commands.ok()) << commands.error().message;
  ASSERT_EQ(commands->size(), 6u);
  EXPECT_EQ((*commands)[0].command, "blockdev-add");
  EXPECT_NE((*commands)[1].arguments.find("\"bus\":\"bbx-hp0\""), std::string::npos);
  EXPECT_NE((*commands)[1].arguments.find("\"serial\":\"rootfs\""), std::string::npos);
  EXPECT_EQ((*commands)[2].command, "chardev-add");
  EXPECT_NE((*commands)[3].arguments.find("vhost-user-fs-pci"), std::string::npos);
  EXPECT_NE((*commands)[3].arguments.find("\"bus\":\"bbx-hp1\""), std::string::npos);
  EXPECT_EQ((*commands)[4].command, "netdev_add");
  EXPECT_NE((*commands)[4].arguments.find("\"ifname\":\"tap0\""), std::string::npos);
  EXPECT_NE((*commands)[5].arguments.find("\"bus\":\"bbx-hp2\""), std::string::npos);
  for (const auto& command : *commands) EXPECT_EQ(command.fd, -1) << command.command;

  // A TAP in another namespace (CNI): QEMU gets the descriptor the shim opened there
  // (getfd with it as SCM_RIGHTS), and the netdev names it instead of an ifname.
  net->set_netns_path("/var/run/netns/x");
  plan->tap_fds = {42};
  commands = HotplugCommands(spec, *plan);
  ASSERT_TRUE(commands.ok()) << commands.error().message;
  ASSERT_EQ(commands->size(), 7u);
  EXPECT_EQ((*commands)[4].command, "getfd");
  EXPECT_EQ((*commands)[4].arguments, R"({"fdname":"tap-net0"})");
  EXPECT_EQ((*commands)[4].fd, 42);
  EXPECT_EQ((*commands)[5].command, "netdev_add");
  EXPECT_NE((*commands)[5].arguments.find("\"fd\":\"tap-net0\""), std::string::npos);
  EXPECT_EQ((*commands)[5].arguments.find("ifname"), std::string::npos);
  EXPECT_EQ((*commands)[5].fd, -1);
  EXPECT_NE((*commands)[6].arguments.find("virtio-net-pci"), std::string::npos);

  plan->tap_fds = {-1};  // not opened: refused before QEMU starts
  auto refused = HotplugCommands(spec, *plan);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("was not opened"), std::string::npos);
}

// A template whose files no longer match its manifest is refused before QEMU loads it.
TEST_F(TemplateTest, ValidationRefusesTruncatedCorruptOrStaleFiles) {
  const std::string key = *TemplateKeyText(Spec("a"), config_, "tcg");
  TemplateFiles files = TemplateFilesFor(config_.template_dir, key);
  fs::create_directories(files.dir);
  EXPECT_EQ(ValidateTemplate(files, key).error().code, ErrorCode::kNotFound);

  Write(files.memory, std::string(8192, 'm'));
  Write(files.state, "QEVM device state");
  struct stat st {};
  ASSERT_EQ(::stat(files.memory.c_str(), &st), 0);
  TemplateManifest manifest;
  manifest.key = key;
  manifest.memory_size = 8192;
  manifest.memory_mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  manifest.state_size = 17;
  manifest.state_checksum = Checksum64("QEVM device state");
  Write(files.manifest, FormatManifest(manifest));
  ASSERT_TRUE(ValidateTemplate(files, key).ok()) << ValidateTemplate(files, key).error().message;

  EXPECT_FALSE(ValidateTemplate(files, key + "other").ok()) << "another key";
  Write(files.state, "QEVM device stat");  // truncated
  EXPECT_NE(ValidateTemplate(files, key).error().message.find("truncated"), std::string::npos);
  Write(files.state, "QEVM device STATE");  // same size, other bytes
  EXPECT_NE(ValidateTemplate(files, key).error().message.find("corrupt"), std::string::npos);
  Write(files.state, "QEVM device state");
  ASSERT_TRUE(ValidateTemplate(files, key).ok());
  ::truncate(files.memory.c_str(), 4096);
  EXPECT_NE(ValidateTemplate(files, key).error().message.find("changed since"), std::string::npos);
  Write(files.manifest, "{not json");
  EXPECT_FALSE(ValidateTemplate(files, key).ok());
  InvalidateTemplate(files);
  EXPECT_EQ(ValidateTemplate(files, key).error().code, ErrorCode::kNotFound);
}

TEST_F(TemplateTest, SparseCopyKeepsDataAndHoles) {
  const std::string from = dir_ + "/sparse";
  {
    std::ofstream out(from, std::ios::binary);
    out.seekp(1 << 20);
    out << "middle";
    out.seekp((4 << 20) - 3);
    out << "end";
  }
  ASSERT_TRUE(CopySparse(from, dir_ + "/copy").ok());
  auto a = ReadSmallFile(from, 8 << 20);
  auto b = ReadSmallFile(dir_ + "/copy", 8 << 20);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_FALSE(CopySparse(from, dir_ + "/copy").ok()) << "never overwrites";
}

// Templates of old keys: removed when no clone holds them (LockTemplateInUse) and no
// shim builds or loads them (their lock file), never the one kept.
TEST_F(TemplateTest, UnusedTemplatesOfOtherKeysAreRemoved) {
  const std::string templates = config_.template_dir;
  const std::string in_use = templates + "/aaaaaaaaaaaaaaaa";
  const std::string unused = templates + "/bbbbbbbbbbbbbbbb";
  const std::string current = templates + "/cccccccccccccccc";
  const std::string building = templates + "/dddddddddddddddd";
  for (const auto& dir : {in_use, unused, current, building, unused + ".new"}) {
    fs::create_directories(dir);
    Write(dir + "/memory", "m");
  }
  for (const auto& dir : {in_use, unused, current, building}) Write(dir + ".lock", "");
  fs::create_directories(templates + "/not-a-template");
  auto clone = LockTemplateInUse(in_use);
  ASSERT_TRUE(clone.ok()) << clone.error().message;
  UniqueFd builder(::open((building + ".lock").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_EQ(::flock(builder.get(), LOCK_EX), 0);

  std::vector<std::string> lines;
  auto removed = RemoveUnusedTemplates(templates, "cccccccccccccccc",
                                       [&](const std::string& line) { lines.push_back(line); });
  EXPECT_EQ(removed, std::vector<std::string>{unused});
  EXPECT_FALSE(fs::exists(unused));
  EXPECT_FALSE(fs::exists(unused + ".new"));
  EXPECT_FALSE(fs::exists(unused + ".lock"));
  EXPECT_TRUE(fs::exists(in_use + "/memory"));    // a clone runs from it
  EXPECT_TRUE(fs::exists(building + "/memory"));  // a shim holds its lock
  EXPECT_TRUE(fs::exists(current + "/memory"));   // kept
  EXPECT_TRUE(fs::exists(templates + "/not-a-template"));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "removed unused VM template " + unused);

  // The clone ends, the builder lets go: both are removed at the next call.
  clone->Reset();
  builder.Reset();
  removed = RemoveUnusedTemplates(templates, "cccccccccccccccc", {});
  EXPECT_EQ(removed, (std::vector<std::string>{in_use, building}));
  EXPECT_FALSE(fs::exists(in_use));
  EXPECT_TRUE(fs::exists(current + "/memory"));
  // A removed template cannot be taken (the shim then rebuilds it).
  EXPECT_TRUE(LockTemplateInUse(current).ok());
  EXPECT_FALSE(LockTemplateInUse(in_use).ok());
}

}  // namespace
}  // namespace beaconbox::qemu
