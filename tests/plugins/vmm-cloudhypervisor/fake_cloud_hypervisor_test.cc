// The FAKE cloud-hypervisor's schema checks (unit) and its REST API (component: the
// double runs as a process and the plugin's own ApiClient talks to it). The VmConfig
// the plugin builds must pass the double's schema: the two are checked against each
// other here.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/base/unique_fd.h"
#include "plugins/common/child_process.h"
#include "plugins/vmm-cloudhypervisor/ch_api.h"
#include "plugins/vmm-cloudhypervisor/vm_config.h"
#include "tests/plugins/common/temp_dir.h"
#include "tests/plugins/vmm-cloudhypervisor/fake_cloud_hypervisor/qemu_translation.h"
#include "tests/plugins/vmm-cloudhypervisor/fake_cloud_hypervisor/schema_check.h"

namespace beaconbox::fakech {
namespace {

namespace pluginapi = ::beaconbox::plugin::v1;
using nlohmann::json;
using ::testing::Contains;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

ApiSchema Schema() {
  auto schema = ApiSchema::Load(BBX_FAKE_CH_SCHEMA);
  EXPECT_TRUE(schema.ok()) << schema.error().message;
  return std::move(schema).value();
}

pluginapi::VmSpec PluginSpec() {
  pluginapi::VmSpec spec;
  spec.set_id("c1");
  spec.set_kernel_path("/k/vmlinux");
  spec.set_initrd_path("/k/initrd");
  spec.set_vcpus(1);
  spec.set_max_vcpus(2);
  spec.set_memory_mib(256);
  spec.set_max_memory_mib(512);
  spec.set_run_dir("/run/x");
  spec.set_agent_token(std::string(64, 'b'));
  spec.add_guest_kernel_args("beaconbox.channel=vsock:1024");
  auto* channel = spec.mutable_agent_channel();
  channel->set_kind(pluginapi::AGENT_CHANNEL_HYBRID_VSOCK);
  channel->set_guest_cid(3);
  channel->set_port(1024);
  channel->set_unix_socket_path("/run/x/vsock.sock");
  auto* share = spec.add_devices()->mutable_share();
  share->set_tag("rootfs");
  share->set_vhost_user_socket("/run/x/fs0.sock");
  auto* block = spec.add_devices()->mutable_block();
  block->set_id("d1");
  block->set_host_path("/img/d1");
  auto* net = spec.add_devices()->mutable_net();
  net->set_tap_name("tap1");
  net->set_mac("02:00:00:00:00:02");
  return spec;
}

json PluginVmConfig() {
  auto spec = PluginSpec();
  auto config = cloudhv::BuildVmConfig(spec, *cloudhv::PlanLaunch(spec));
  EXPECT_TRUE(config.ok());
  return *config;
}

TEST(Schema, ThePluginsVmConfigAndDevicesPass) {
  ApiSchema schema = Schema();
  Status checked = schema.Check("VmConfig", PluginVmConfig());
  EXPECT_TRUE(checked.ok()) << checked.error().message;
  EXPECT_TRUE(schema.Check("VmResize", cloudhv::ResizeBody(2, 512)).ok());
  EXPECT_TRUE(
      schema.Check("DiskConfig", *cloudhv::DiskConfigOf(PluginSpec().devices(1).block())).ok());
  pluginapi::NetDevice cni = PluginSpec().devices(2).net();
  cni.set_netns_path("/run/netns/sandbox");
  Status net_checked = schema.Check("NetConfig", *cloudhv::NetFdConfigOf(cni, 1));
  EXPECT_TRUE(net_checked.ok()) << net_checked.error().message;
  // CH's NetConfig takes `fds` numbers (and ignores them); other fields stay refused.
  EXPECT_TRUE(schema.Check("NetConfig", json{{"fds", {3}}}).ok());
  EXPECT_FALSE(schema.Check("NetConfig", json{{"fd", 3}}).ok());
}

TEST(Schema, UnknownFieldsAreRefusedWithTheirPath) {
  json config = PluginVmConfig();
  config["cpus"]["boot_cpus"] = 1;
  Status checked = Schema().Check("VmConfig", config);
  ASSERT_FALSE(checked.ok());
  EXPECT_EQ(checked.error().message,
            "VmConfig.cpus: unknown field `boot_cpus` (not in CpusConfig)");
  config = PluginVmConfig();
  config["payload"]["fw_cfg_config"]["items"]["item_list"][0]["path"] = "/x";
  checked = Schema().Check("VmConfig", config);
  ASSERT_FALSE(checked.ok());
  EXPECT_THAT(checked.error().message, HasSubstr("item_list[0]: unknown field `path`"));
}

TEST(Schema, WrongTypesMissingFieldsEnumsAndMinimums) {
  ApiSchema schema = Schema();
  json config = PluginVmConfig();
  config["memory"]["size"] = "256M";
  Status checked = schema.Check("VmConfig", config);
  ASSERT_FALSE(checked.ok());
  EXPECT_THAT(checked.error().message, HasSubstr("VmConfig.memory.size: want an unsigned integer"));

  config = PluginVmConfig();
  config["disks"][0]["readonly"] = "yes";
  EXPECT_THAT(schema.Check("VmConfig", config).error().message,
              HasSubstr("VmConfig.disks[0].readonly: want a boolean"));

  config = PluginVmConfig();
  config["cpus"].erase("max_vcpus");
  EXPECT_THAT(schema.Check("VmConfig", config).error().message,
              HasSubstr("missing field `max_vcpus`"));

  config = PluginVmConfig();
  config["serial"]["mode"] = "file";
  EXPECT_THAT(schema.Check("VmConfig", config).error().message, HasSubstr("want one of"));

  config = PluginVmConfig();
  config["vsock"]["cid"] = 2;
  EXPECT_THAT(schema.Check("VmConfig", config).error().message, HasSubstr("at least 3"));

  config = PluginVmConfig();
  config["memory"]["size"] = -1;
  EXPECT_FALSE(schema.Check("VmConfig", config).ok());
  EXPECT_FALSE(schema.Check("VmConfig", json::array()).ok());
  EXPECT_FALSE(schema.Check("VmConfig", json::object()).ok());  // payload is required
}

TEST(QemuTranslation, VmConfigBecomesAQemuCommandLine) {
  json config = PluginVmConfig();
  auto argv = QemuArgvOf(config, "/usr/bin/qemu-system-x86_64", {"/d/qmp.sock", "/d/agent.sock"});
  ASSERT_TRUE(argv.ok()) << argv.error().message;
  EXPECT_THAT(*argv, Contains("1,maxcpus=2"));
  EXPECT_THAT(*argv, Contains("256M,slots=8,maxmem=512M"));
  EXPECT_THAT(*argv, Contains("name=opt/io.beaconbox/agent-token,file=/run/x/agent-token"));
  EXPECT_THAT(*argv, Contains("file:/run/x/console.fifo"));
  EXPECT_THAT(*argv, Contains("virtserialport,chardev=agent,name=beaconbox.agent"));
  EXPECT_THAT(*argv, Contains("file=/img/d1,if=none,id=disk0,format=raw"));
  EXPECT_THAT(*argv, Contains("virtio-blk-pci,drive=disk0,serial=d1"));
  EXPECT_THAT(*argv, Contains("tap,id=net0,ifname=tap1,script=no,downscript=no"));
  EXPECT_THAT(*argv, Contains("vhost-user-fs-pci,queue-size=1024,chardev=fs0,tag=rootfs"));
  auto append = std::find(argv->begin(), argv->end(), "-append");
  ASSERT_NE(append, argv->end());
  EXPECT_THAT(*(append + 1), HasSubstr("beaconbox.channel=virtio-serial:beaconbox.agent"));
  EXPECT_EQ(AgentVsockPortOf(config), 1024u);

  // Descriptors from vm.add-net win over a tap name, as in CH.
  config["net"][0]["fds"] = json::array({7});
  argv = QemuArgvOf(config, "/q", {"/d/q", "/d/a"});
  ASSERT_TRUE(argv.ok()) << argv.error().message;
  EXPECT_THAT(*argv, Contains("tap,id=net0,fd=7"));
  config["net"][0].erase("tap");
  config["net"][0]["fds"] = json::array({7, 8});
  EXPECT_THAT(*QemuArgvOf(config, "/q", {"/d/q", "/d/a"}), Contains("tap,id=net0,fds=7:8"));
  config["net"][0]["fds"] = json::array({-1});
  EXPECT_FALSE(QemuArgvOf(config, "/q", {"/d/q", "/d/a"}).ok());
  config = PluginVmConfig();
  config["disks"][0]["path"] = "/img/a,b";
  EXPECT_FALSE(QemuArgvOf(config, "/q", {"/d/q", "/d/a"}).ok());
  config = PluginVmConfig();
  config["payload"]["firmware"] = "/fw";
  EXPECT_THAT(QemuArgvOf(config, "/q", {"/d/q", "/d/a"}).error().message,
              HasSubstr("does not emulate"));
}

// The double as a process on an API socket in a directory of the test's own, and the
// plugin's ApiClient to it: its API answers as CH's does, and refuses bad bodies.
class FakeProcess : public ::testing::Test {
 protected:
  ~FakeProcess() override {
    if (pid_ > 0) plugins::EndChild(pid_, 2s);
  }

  // Starts the double; `qemu`, when given, is the QEMU it runs (its environment).
  void Start(const std::string& qemu = "") {
    plugins::SpawnOptions options;
    options.log_path = socket_ + ".log";
    if (!qemu.empty()) ::setenv("FAKE_CLOUD_HYPERVISOR_QEMU", qemu.c_str(), 1);
    auto pid = plugins::ForkExec({BBX_FAKE_CH_BINARY, "--api-socket", "path=" + socket_}, options);
    ::unsetenv("FAKE_CLOUD_HYPERVISOR_QEMU");
    ASSERT_TRUE(pid.ok()) << pid.error().message;
    pid_ = *pid;
    ASSERT_TRUE(plugins::WaitForPath(socket_, pid_, 10s));
    // The file appears at bind(), a moment before listen() (as with CH): wait for it.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!client_.Send("GET", "vmm.ping", std::nullopt, 2s).ok() &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
  }

  // The error line of a PUT `call` with `body` and `fds`, or "ok".
  std::string ErrorOf(const std::string& call, const json& body, const std::vector<int>& fds = {}) {
    auto answer = client_.Call("PUT", call, body.dump(), 5s, fds);
    return answer.ok() ? "ok" : answer.error().message;
  }

  plugins::testing::TempDir dir_;
  const std::string socket_ = dir_ / "api.sock";
  cloudhv::ApiClient client_{socket_};
  pid_t pid_ = -1;
};

TEST_F(FakeProcess, ServesPingRefusesBadBodiesAndShutsDown) {
  Start();
  auto ping = client_.Call("GET", "vmm.ping", std::nullopt, 5s);
  ASSERT_TRUE(ping.ok()) << ping.error().message;
  EXPECT_EQ(json::parse(*ping)["version"], "v48.0-fake");

  json bad = PluginVmConfig();
  bad["cpus"]["boot_vcpus"] = "one";
  auto created = client_.Call("PUT", "vm.create", bad.dump(), 5s);
  ASSERT_FALSE(created.ok());
  EXPECT_THAT(created.error().message,
              HasSubstr("cloud-hypervisor API vm.create: HTTP 400 Bad Request: "
                        "fake-cloud-hypervisor: vm.create: VmConfig.cpus.boot_vcpus: want an "
                        "unsigned integer"));
  auto not_json = client_.Call("PUT", "vm.create", std::string("{"), 5s);
  ASSERT_FALSE(not_json.ok());
  EXPECT_THAT(not_json.error().message, HasSubstr("HTTP 400"));

  auto info = client_.Call("GET", "vm.info", std::nullopt, 5s);
  ASSERT_FALSE(info.ok());
  EXPECT_THAT(info.error().message, HasSubstr("HTTP 404"));
  auto unknown = client_.Call("PUT", "vm.teleport", std::nullopt, 5s);
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.error().message, HasSubstr("HTTP 404"));
  auto wrong_method = client_.Call("GET", "vm.boot", std::nullopt, 5s);
  ASSERT_FALSE(wrong_method.ok());
  EXPECT_THAT(wrong_method.error().message, HasSubstr("HTTP 405"));

  auto good = client_.Call("PUT", "vm.create", PluginVmConfig().dump(), 5s);
  ASSERT_TRUE(good.ok()) << good.error().message;
  auto state = client_.Call("GET", "vm.info", std::nullopt, 5s);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(json::parse(*state)["state"], "Created");
  EXPECT_EQ(json::parse(*state)["config"], PluginVmConfig());
  auto resize = client_.Call("PUT", "vm.resize", json{{"desired_vcpus", 0}}.dump(), 5s);
  ASSERT_FALSE(resize.ok());
  EXPECT_THAT(resize.error().message, HasSubstr("at least 1"));

  ASSERT_TRUE(client_.Call("PUT", "vmm.shutdown", std::nullopt, 5s).ok());
  EXPECT_TRUE(plugins::WaitChildExit(pid_, 5s));
  EXPECT_FALSE(std::filesystem::exists(socket_));
}

std::string InodeOf(int fd) {
  struct stat info {};
  return ::fstat(fd, &info) == 0 ? std::to_string(info.st_ino) : "?";
}

// vm.add-net between vm.create and vm.boot, as CH takes a TAP descriptor: the fds come
// as SCM_RIGHTS (the plugin's ApiClient), CH's rules are enforced, the double keeps
// the descriptor and hands it to its QEMU at vm.boot (-netdev tap,fd=N, open across
// the exec). QEMU here is a FAKE script that records what it got and exits.
TEST_F(FakeProcess, ColdAddsANetWithItsDescriptorAndHandsItToQemu) {
  const std::string record = dir_ / "qemu-got";
  const std::string script = dir_ / "fake-qemu";
  {
    std::ofstream out(script);
    out << "#!/bin/sh\n# FAKE QEMU: records its -netdev and what fd N is, then fails.\n"
        << "for a in \"$@\"; do case $a in tap,*fd=*) n=${a##*fd=}; "
        << "echo \"$a $(readlink /proc/$$/fd/$n)\" >> " << record << ";; esac; done\nexit 1\n";
  }
  ::chmod(script.c_str(), 0755);
  Start(script);
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);

  // Before vm.create: 404, as CH (no VmConfig to add to).
  EXPECT_THAT(ErrorOf("vm.add-net", json{{"id", "net1"}}, {read_end.get()}), HasSubstr("HTTP 404"));
  json config = PluginVmConfig();
  config.erase("vsock");  // its socket would be under /run/x
  ASSERT_TRUE(client_.Call("PUT", "vm.create", config.dump(), 5s).ok());

  const json net = {{"mac", "02:00:00:00:00:09"}, {"id", "net1"}, {"num_queues", 2}};
  const std::vector<int> one_fd = {read_end.get()};
  const std::vector<int> two_fds = {read_end.get(), write_end.get()};
  EXPECT_THAT(ErrorOf("vm.add-net", net, two_fds), HasSubstr("HTTP 400"));
  EXPECT_THAT(ErrorOf("vm.add-net", net, two_fds), HasSubstr("one per queue pair"));
  json too_many_queues = net;
  too_many_queues["num_queues"] = 4;
  EXPECT_THAT(ErrorOf("vm.add-net", too_many_queues, two_fds), HasSubstr("boot vCPUs"));
  json small_mtu = net;
  small_mtu["mtu"] = 576;
  EXPECT_THAT(ErrorOf("vm.add-net", small_mtu, one_fd), HasSubstr("HTTP 400"));
  json taken = net;
  taken["id"] = "net0";  // the VmConfig's own net
  EXPECT_THAT(ErrorOf("vm.add-net", taken, one_fd), HasSubstr("HTTP 409"));
  json unknown = net;
  unknown["tap_fd"] = 3;
  EXPECT_THAT(ErrorOf("vm.add-net", unknown, one_fd), HasSubstr("unknown field `tap_fd`"));

  // Stale numbers in the body are ignored; the descriptor sent is what counts.
  json stale = net;
  stale["fds"] = json::array({99});
  auto added = client_.Call("PUT", "vm.add-net", stale.dump(), 5s, {read_end.get()});
  ASSERT_TRUE(added.ok()) << added.error().message;
  EXPECT_EQ(*added, "");  // 204: a cold-plug
  auto info = json::parse(*client_.Call("GET", "vm.info", std::nullopt, 5s));
  ASSERT_EQ(info["config"]["net"].size(), 2u);
  const json& stored = info["config"]["net"][1];
  EXPECT_EQ(stored["id"], "net1");
  ASSERT_EQ(stored["fds"].size(), 1u);
  const int held = stored["fds"][0].get<int>();
  EXPECT_NE(held, 99);
  // The double's descriptor `held` is our pipe's read end.
  char link[128] = {};
  const std::string proc_fd = "/proc/" + std::to_string(pid_) + "/fd/" + std::to_string(held);
  ASSERT_GT(::readlink(proc_fd.c_str(), link, sizeof(link) - 1), 0);
  EXPECT_EQ(std::string(link), "pipe:[" + InodeOf(read_end.get()) + "]");

  // vm.boot: QEMU gets -netdev tap,id=net1,fd=<held>, open in QEMU.
  auto boot = client_.Call("PUT", "vm.boot", std::nullopt, 30s);
  ASSERT_FALSE(boot.ok());  // the FAKE QEMU exits
  EXPECT_THAT(boot.error().message, HasSubstr("QEMU exited at start"));
  std::ifstream got(record);
  std::stringstream text;
  text << got.rdbuf();
  EXPECT_THAT(text.str(), HasSubstr("tap,id=net1,fd=" + std::to_string(held) + " pipe:[" +
                                    InodeOf(read_end.get()) + "]"));
}

}  // namespace
}  // namespace beaconbox::fakech
