// A VM saved by the plugin (QemuVm::Save) and loaded again (VmSpec.restore_dir) with a
// real QEMU (TCG) and the real guest image: one cold boot, saved, destroyed; loaded in
// a new run dir with a new agent token, the guest agent answers Hello with the new
// token and refuses the old one. A garbage and a truncated vm.state, and a save named
// as another QEMU version's, are refused with one line and leave no process and no
// file in the run dir.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "beaconbox/guest/v1/guest.pb.h"
#include "common/base/agent_token.h"
#include "common/ttrpc/ttrpc.h"
#include "plugins/vmm-qemu/qemu_version.h"
#include "plugins/vmm-qemu/qemu_vm.h"
#include "tests/plugins/common/temp_dir.h"
#include "tests/plugins/vmm-qemu/busybox_initrd.h"

namespace beaconbox::qemu {
namespace {

using namespace std::chrono_literals;
using plugins::testing::OutputDir;
using plugins::testing::ReadAll;
using plugins::testing::TempDir;
namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
namespace guestapi = ::beaconbox::guest::v1;

constexpr char kGuest[] = "beaconbox.guest.v1.Guest";

std::string NewToken() {
  auto token = GenerateAgentToken();
  return token.ok() ? *token : std::string();
}

// The real guest image on virtio-serial, its run dir `run` (made here) under `dir`.
pluginapi::VmSpec GuestSpec(const TempDir& dir, const std::string& run, const std::string& token) {
  pluginapi::VmSpec spec;
  spec.set_id("restore");
  spec.set_namespace_("test");
  spec.set_kernel_path(OutputDir() + "/beaconbox-kernel-x86_64");
  spec.set_initrd_path(OutputDir() + "/beaconbox-initrd");
  spec.set_vcpus(1);
  spec.set_memory_mib(256);
  spec.set_run_dir(dir / run);
  ::mkdir(spec.run_dir().c_str(), 0700);
  spec.set_console_log_path(dir / (run + "-console.log"));
  spec.add_guest_kernel_args("panic=-1");
  spec.add_guest_kernel_args("beaconbox.channel=virtio-serial:beaconbox.agent");
  auto* channel = spec.mutable_agent_channel();
  channel->set_kind(pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
  channel->set_serial_port_name("beaconbox.agent");
  channel->set_unix_socket_path(spec.run_dir() + "/agent.sock");
  spec.set_agent_token(token);
  return spec;
}

ttrpc::RpcStatus Hello(QemuVm& vm, const std::string& token, std::chrono::milliseconds timeout) {
  auto fd = vm.ConnectGuest(30s);
  if (!fd.ok()) return {ttrpc::Code::kUnavailable, fd.error().message};
  ttrpc::Options options;
  options.default_metadata = {{kAgentTokenMetadataKey, token}};
  ttrpc::Client client(std::move(*fd), options);
  guestapi::HelloRequest hello;
  hello.set_protocol_version(1);
  guestapi::HelloResponse reply;
  ttrpc::CallOptions call;
  call.timeout = timeout;
  return ttrpc::CallProto(client, kGuest, "Hello", hello, &reply, call);
}

size_t Count(const std::string& text, const std::string& what) {
  size_t count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

// vminitd serves virtio-serial as one byte stream for every host client in turn and
// starts a new ttrpc connection (stream ids from 1) only once it has seen the host
// end close: as a host that disconnects before the save, wait for that.
bool WaitForAgentReopened(const std::string& console, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Count(ReadAll(console), "vminitd: serving on") >= 2) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

bool NoChildLeft() {
  errno = 0;
  return ::waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    names.push_back(entry.path().filename());
  }
  return names;
}

std::string Joined(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names) text += name + " ";
  return text;
}

TEST(QemuRestoreTest, ASavedVmLoadsWithANewTokenAndBadStatesLeaveNothing) {
  const std::string kernel = OutputDir() + "/beaconbox-kernel-x86_64";
  if (::access(kernel.c_str(), R_OK) != 0 ||
      ::access((OutputDir() + "/beaconbox-initrd").c_str(), R_OK) != 0 ||
      ::access("/usr/bin/qemu-system-x86_64", X_OK) != 0) {
    GTEST_SKIP() << "needs " << kernel << " and the initrd (make guest_image) and QEMU";
  }
  ASSERT_TRUE(NoChildLeft()) << "the test starts with children of its own";
  TempDir dir;
  QemuConfig config;
  config.binary = "/usr/bin/qemu-system-x86_64";
  config.accelerator = "tcg";
  plugins::Spawner spawner;

  // One cold boot, served, saved, destroyed.
  const std::string old_token = NewToken();
  const pluginapi::VmSpec booted = GuestSpec(dir, "boot", old_token);
  const std::string saved_dir = dir / "saved";
  ASSERT_EQ(::mkdir(saved_dir.c_str(), 0700), 0);
  std::string saved_by;  // VmSaved.vmm_version
  {
    const auto boot_started = std::chrono::steady_clock::now();
    auto vm = QemuVm::Create(booted, config, spawner);
    ASSERT_TRUE(vm.ok()) << vm.error().message;
    ttrpc::RpcStatus hello = Hello(**vm, old_token, 300s);
    ASSERT_TRUE(hello.ok()) << hello.message
                            << "; console: " << ReadAll(booted.console_log_path()).substr(0, 4096);
    // Printed, not asserted: the baseline of the restore figure below (bench/).
    std::printf("[ measure ] cold boot of the same guest: vm_create to Hello %lld ms\n",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - boot_started)
                                           .count()));
    ASSERT_TRUE(WaitForAgentReopened(booted.console_log_path(), 60s))
        << ReadAll(booted.console_log_path()).substr(0, 4096);
    ASSERT_TRUE((*vm)->Pause().ok());
    const auto save_started = std::chrono::steady_clock::now();
    auto saved = (*vm)->Save(saved_dir);
    ASSERT_TRUE(saved.ok()) << saved.error().message;
    std::printf("[ measure ] vm_save of an idle 256 MiB guest: %lld ms, %lld bytes\n",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - save_started)
                                           .count()),
                static_cast<long long>(fs::file_size(saved_dir + "/vm.state")));
    ASSERT_EQ(saved->files_size(), 1);
    EXPECT_EQ(saved->files(0), kSavedStateName);
    saved_by = saved->vmm_version();
  }
  ASSERT_TRUE(NoChildLeft());

  // The save names its QEMU as the restore's check reads the binary (--version).
  auto binary_version = QemuBinaryVersion(config.binary, dir / "cache");
  ASSERT_TRUE(binary_version.ok()) << binary_version.error().message;
  EXPECT_EQ(saved_by, *binary_version);
  EXPECT_EQ(saved_by.rfind("QEMU emulator version ", 0), 0u) << saved_by;
  // Saved by another QEMU: one line naming both, before QEMU starts; nothing left.
  {
    pluginapi::VmSpec other = GuestSpec(dir, "run-other-qemu", NewToken());
    other.set_restore_dir(saved_dir);
    other.add_restore_files(kSavedStateName);
    other.set_restore_vmm_version("QEMU emulator version 6.2.0");
    auto vm = QemuVm::Create(other, config, spawner);
    ASSERT_FALSE(vm.ok()) << "a save of another QEMU version loaded";
    EXPECT_EQ(vm.error().message.find('\n'), std::string::npos) << vm.error().message;
    EXPECT_NE(vm.error().message.find("saved by QEMU emulator version 6.2.0, this host's QEMU " +
                                      config.binary + " (config key binary) is " + saved_by),
              std::string::npos)
        << vm.error().message;
    std::printf("[ other QEMU ] %s\n", vm.error().message.c_str());
    EXPECT_TRUE(NoChildLeft()) << "a process is left";
    EXPECT_TRUE(FilesIn(other.run_dir()).empty())
        << "left in the run dir: " << Joined(FilesIn(other.run_dir()));
  }

  // Loaded in a new run dir with a new token; the old token is refused after it.
  const std::string new_token = NewToken();
  pluginapi::VmSpec restored = GuestSpec(dir, "restored", new_token);
  restored.set_restore_dir(saved_dir);
  restored.add_restore_files(kSavedStateName);
  restored.set_restore_vmm_version(saved_by);
  {
    // Restore wins over templates: the saved VM has the cold boot's devices.
    QemuConfig templated = config;
    templated.use_template = true;
    templated.template_dir = dir / "templates";
    const auto restore_started = std::chrono::steady_clock::now();
    auto vm = QemuVm::Create(restored, templated, spawner);
    ASSERT_TRUE(vm.ok()) << vm.error().message;
    const auto loaded = std::chrono::steady_clock::now();
    ttrpc::RpcStatus hello = Hello(**vm, new_token, 60s);
    ASSERT_TRUE(hello.ok()) << hello.message << "; console: "
                            << ReadAll(restored.console_log_path()).substr(0, 4096);
    std::printf(
        "[ measure ] restore of an idle 256 MiB guest: vm_create %lld ms, to Hello %lld ms\n",
        static_cast<long long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(loaded - restore_started)
                .count()),
        static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now() - restore_started)
                                   .count()));
    const pluginapi::VmInfo info = (*vm)->Info();
    EXPECT_TRUE(info.restored_from_checkpoint());
    EXPECT_FALSE(info.restored_from_template());
    EXPECT_FALSE(fs::exists(templated.template_dir)) << "a template was built";
    EXPECT_NE(info.accelerator_reason().find("restored from the saved VM in " + saved_dir),
              std::string::npos);
    ttrpc::RpcStatus old = Hello(**vm, old_token, 10s);
    EXPECT_EQ(old.code, ttrpc::Code::kUnauthenticated) << old.message;
    // The token file went once QEMU read it.
    EXPECT_FALSE(fs::exists(restored.run_dir() + "/agent-token"));
  }
  ASSERT_TRUE(NoChildLeft());

  // Garbage, then the first half of the real save: one line each, nothing left.
  const std::string real = saved_dir + "/vm.state";
  const auto real_size = fs::file_size(real);
  struct Bad {
    std::string name;
    std::function<void(const std::string&)> write;
  };
  const std::vector<Bad> bad_states = {{"garbage",
                                        [](const std::string& path) {
                                          std::ofstream(path, std::ios::binary)
                                              << std::string(64 * 1024, 'x');
                                        }},
                                       {"truncated", [&](const std::string& path) {
                                          fs::copy_file(real, path);
                                          fs::resize_file(path, real_size / 2);
                                        }}};
  for (const Bad& bad : bad_states) {
    const std::string bad_dir = dir / ("saved-" + bad.name);
    ASSERT_EQ(::mkdir(bad_dir.c_str(), 0700), 0);
    bad.write(bad_dir + "/vm.state");
    pluginapi::VmSpec spec = GuestSpec(dir, "run-" + bad.name, NewToken());
    spec.set_restore_dir(bad_dir);
    spec.add_restore_files(kSavedStateName);
    spec.set_restore_vmm_version(saved_by);
    auto vm = QemuVm::Create(spec, config, spawner);
    ASSERT_FALSE(vm.ok()) << bad.name << " state loaded";
    EXPECT_EQ(vm.error().message.find('\n'), std::string::npos) << vm.error().message;
    EXPECT_NE(vm.error().message.find("loading the saved VM " + bad_dir + "/vm.state"),
              std::string::npos)
        << vm.error().message;
    std::printf("[ %s ] %s\n", bad.name.c_str(), vm.error().message.substr(0, 400).c_str());
    EXPECT_TRUE(NoChildLeft()) << bad.name << ": a process is left";
    EXPECT_TRUE(FilesIn(spec.run_dir()).empty())
        << bad.name << ": left in the run dir: " << Joined(FilesIn(spec.run_dir()));
  }
}

}  // namespace
}  // namespace beaconbox::qemu
