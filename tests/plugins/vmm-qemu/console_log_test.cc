// The capped console log (plugins/vmm-qemu/console_log.h): the log and its one
// rotated predecessor never hold more than the cap together, the newest output is
// kept, and with real QEMU a guest flooding its serial port cannot grow the log past
// the cap.
#include "plugins/vmm-qemu/console_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/base/agent_token.h"
#include "plugins/common/child_process.h"
#include "plugins/vmm-qemu/qemu_vm.h"
#include "tests/plugins/common/temp_dir.h"
#include "tests/plugins/vmm-qemu/busybox_initrd.h"

namespace beaconbox::qemu {
namespace {

using namespace std::chrono_literals;
using plugins::testing::BuildBusyboxInitrd;
using plugins::testing::OutputDir;
using plugins::testing::ReadAll;
using plugins::testing::TempDir;
namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;

uint64_t SizeOf(const std::string& path) {
  std::error_code error;
  auto size = fs::file_size(path, error);
  return error ? 0 : size;
}

// Numbered lines, so that any cut or reordering shows.
std::string Lines(int first, int count) {
  std::string text;
  for (int i = first; i < first + count; ++i)
    text += "line " + std::to_string(i) + " of the flood\n";
  return text;
}

TEST(CappedLog, RotatesOnceAndKeepsTheNewestOutputUnderTheCap) {
  TempDir dir;
  const std::string path = dir / "vm.log";
  dir.Write("vm.log.1", "stale rotated log of an earlier VM\n");
  dir.Write("vm.log", "stale log of an earlier VM\n");
  constexpr uint64_t kCap = 256 * 1024;
  auto log = CappedLog::Open(path, kCap);
  ASSERT_TRUE(log.ok()) << log.error().message;
  EXPECT_FALSE(fs::exists(dir / "vm.log.1"));
  EXPECT_EQ(SizeOf(path), 0u);

  std::string all;
  for (int chunk = 0; chunk < 40; ++chunk) {
    std::string text = Lines(chunk * 1000, 1000);  // ~24 KiB
    all += text;
    (*log)->Write(text);
    EXPECT_LE(SizeOf(path), kCap / 2);
    EXPECT_LE(SizeOf(path) + SizeOf(dir / "vm.log.1"), kCap);
  }
  EXPECT_EQ((*log)->bytes_received(), all.size());
  EXPECT_GE((*log)->rotations(), 3u);
  // What is on disk is exactly the newest output: <log>.1 then <log>.
  std::string kept = ReadAll(dir / "vm.log.1") + ReadAll(path);
  EXPECT_GE(kept.size(), kCap / 2);
  EXPECT_LE(kept.size(), kCap);
  EXPECT_EQ(kept, all.substr(all.size() - kept.size()));
}

TEST(CappedLog, RefusesACapBelowTheMinimum) {
  TempDir dir;
  auto log = CappedLog::Open(dir / "vm.log", 1000);
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.error().message.find("console_log_max_bytes"), std::string::npos);
}

TEST(ConsolePump, CopiesTheFifoIntoTheCappedLogUntilStopped) {
  TempDir dir;
  constexpr uint64_t kCap = 128 * 1024;
  auto log = CappedLog::Open(dir / "vm.log", kCap);
  ASSERT_TRUE(log.ok());
  auto pump = ConsolePump::Start(dir / "console.fifo", std::move(*log));
  ASSERT_TRUE(pump.ok()) << pump.error().message;
  // As QEMU opens it (-serial file:): write-only, which must not block.
  int writer = ::open((dir / "console.fifo").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(writer, 0);
  std::string all = Lines(0, 40000);  // ~1 MiB
  ASSERT_EQ(::write(writer, all.data(), all.size()), static_cast<ssize_t>(all.size()));
  ::close(writer);  // QEMU exited: not the end, Stop is
  (*pump)->Stop();
  EXPECT_FALSE(fs::exists(dir / "console.fifo"));
  EXPECT_EQ((*pump)->log().bytes_received(), all.size());
  std::string kept = ReadAll(dir / "vm.log.1") + ReadAll(dir / "vm.log");
  EXPECT_LE(kept.size(), kCap);
  EXPECT_EQ(kept, all.substr(all.size() - kept.size()));
}

// The guest floods the serial port with `flood_bytes`, prints FLOOD-DONE and powers off.
std::string BuildFloodInitrd(const TempDir& dir, size_t flood_bytes) {
  return BuildBusyboxInitrd(
      dir, "flood-initrd",
      "/bin/busybox yes 'FLOOD 0123456789abcdef0123456789abcdef0123456789abcdef' | "
      "/bin/busybox head -c " +
          std::to_string(flood_bytes) +
          " > /dev/ttyS0\n"
          "echo FLOOD-DONE > /dev/ttyS0\n"
          "/bin/busybox poweroff -f\n");
}

// Real QEMU (TCG) and the real guest kernel; the guest writes 1 MiB to its serial
// port, 8 times the cap. The log stays under the cap all along and ends with the
// guest's last line.
TEST(ConsoleLogWithQemu, AGuestFloodingItsConsoleStaysUnderTheCap) {
  const std::string kernel = OutputDir() + "/beaconbox-kernel-x86_64";
  if (::access(kernel.c_str(), R_OK) != 0 || ::access("/bin/busybox", R_OK) != 0 ||
      ::access("/usr/bin/qemu-system-x86_64", X_OK) != 0) {
    GTEST_SKIP() << "needs " << kernel << " (make guest_image), busybox-static and QEMU";
  }
  TempDir dir;
  constexpr size_t kFlood = 1 << 20;
  constexpr uint64_t kCap = 128 * 1024;
  const std::string initrd = BuildFloodInitrd(dir, kFlood);
  ASSERT_FALSE(initrd.empty()) << "building the flood initrd with cpio failed";
  fs::create_directories(dir / "vm");
  pluginapi::VmSpec spec;
  spec.set_id("flood");
  spec.set_namespace_("test");
  spec.set_kernel_path(kernel);
  spec.set_initrd_path(initrd);
  spec.set_memory_mib(256);
  spec.set_run_dir(dir / "vm");
  spec.set_console_log_path(dir / "vm-test--flood.log");
  spec.add_guest_kernel_args("panic=-1");
  // TCG on a loaded host can miss the kernel's timer check (a panic before init).
  spec.set_kernel_cmdline("no_timer_check");
  spec.mutable_agent_channel()->set_kind(pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
  spec.mutable_agent_channel()->set_serial_port_name("beaconbox.agent");
  spec.mutable_agent_channel()->set_unix_socket_path(dir / "vm/agent.sock");
  auto token = GenerateAgentToken();
  ASSERT_TRUE(token.ok());
  spec.set_agent_token(*token);
  QemuConfig config;
  config.binary = "/usr/bin/qemu-system-x86_64";
  config.accelerator = "tcg";
  config.console_log_max_bytes = kCap;
  plugins::Spawner spawner;
  auto vm = QemuVm::Create(spec, config, spawner);
  ASSERT_TRUE(vm.ok()) << vm.error().message;

  const std::string log = spec.console_log_path();
  const auto deadline = std::chrono::steady_clock::now() + 480s;
  bool done = false;
  uint64_t largest = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    uint64_t total = SizeOf(log) + SizeOf(log + ".1");
    largest = std::max(largest, total);
    ASSERT_LE(SizeOf(log), kCap / 2);
    ASSERT_LE(total, kCap);
    if (ReadAll(log).find("FLOOD-DONE") != std::string::npos) {
      done = true;
      break;
    }
    if (!plugins::ChildRunning(static_cast<pid_t>((*vm)->Info().vmm_pid()))) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE((*vm)->Stop(5s).ok());
  ASSERT_TRUE(done) << "the guest never finished its flood; console tail: "
                    << ReadAll(log).substr(0, 2048);
  std::string kept = ReadAll(log + ".1") + ReadAll(log);
  EXPECT_LE(kept.size(), kCap);
  EXPECT_NE(kept.find("FLOOD 0123456789abcdef"), std::string::npos);
  EXPECT_TRUE(fs::exists(log + ".1")) << "never rotated";
  EXPECT_FALSE(fs::exists(dir / "vm/console.fifo"));
  std::printf(
      "[ measure ] guest wrote > %zu bytes to its console; log + log.1 peaked at %llu "
      "bytes (cap %llu)\n",
      kFlood, static_cast<unsigned long long>(largest), static_cast<unsigned long long>(kCap));
}

}  // namespace
}  // namespace beaconbox::qemu
