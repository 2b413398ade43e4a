// A VMM that ends by itself is reported with how it ended (exit status or signal) and
// the tails of its log and of the guest console (plugins/vmm-qemu/exit_watch.h,
// QemuVm::WatchExit): first against plain children, then against a real QEMU (TCG)
// whose process the test kills by its pid.
#include "plugins/vmm-qemu/exit_watch.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
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

// What the watch reported, waited for from the test's thread.
class Reports {
 public:
  std::function<void(const std::string&)> Sink() {
    return [this](const std::string& line) {
      std::lock_guard lock(mutex_);
      lines_.push_back(line);
      changed_.notify_all();
    };
  }
  std::vector<std::string> WaitFor(size_t count, std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return lines_.size() >= count; });
    return lines_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> lines_;
};

plugins::SpawnOptions Quiet() {
  plugins::SpawnOptions options;
  options.log_path = "/dev/null";
  return options;
}

TEST(ExitWatch, DescribesExitStatusSignalAndCoreDump) {
  EXPECT_EQ(DescribeChildEnd(CLD_EXITED, 3), "exit status 3");
  EXPECT_EQ(DescribeChildEnd(CLD_KILLED, SIGKILL), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(DescribeChildEnd(CLD_DUMPED, SIGABRT), "killed by signal 6 (SIGABRT), core dumped");
}

TEST(ExitWatch, ReportsAChildKilledByItsPidAndLeavesItToBeReaped) {
  auto pid = plugins::ForkExec({"/bin/sleep", "600"}, Quiet());
  ASSERT_TRUE(pid.ok()) << pid.error().message;
  Reports reports;
  auto watch = ExitWatch::Start(*pid, reports.Sink());
  ASSERT_TRUE(watch.ok()) << watch.error().message;
  EXPECT_EQ((*watch)->Ended(), "");
  ASSERT_EQ(::kill(*pid, SIGKILL), 0);
  auto lines = reports.WaitFor(1, 30s);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "killed by signal 9 (SIGKILL)");
  EXPECT_EQ((*watch)->Ended(), "killed by signal 9 (SIGKILL)");
  (*watch)->Stop();
  EXPECT_EQ(reports.WaitFor(2, 0s).size(), 1u) << "reported twice";
  // Not reaped by the watch: the owner still collects it.
  EXPECT_TRUE(plugins::WaitChildExit(*pid, 5s));
}

TEST(ExitWatch, ReportsAnExitThatCameBeforeStopAndNothingAfterAStop) {
  auto exits = plugins::ForkExec({"/bin/sh", "-c", "exit 3"}, Quiet());
  ASSERT_TRUE(exits.ok()) << exits.error().message;
  Reports early;
  auto watch = ExitWatch::Start(*exits, early.Sink());
  ASSERT_TRUE(watch.ok()) << watch.error().message;
  (*watch)->Stop();  // the exit may not have been seen by the thread yet
  // The shell may still be running at Stop: then nothing is reported, as asked.
  auto lines = early.WaitFor(1, 0s);
  if (!lines.empty()) {
    EXPECT_EQ(lines[0], "exit status 3");
  }
  EXPECT_TRUE(plugins::WaitChildExit(*exits, 5s));

  auto runs = plugins::ForkExec({"/bin/sleep", "600"}, Quiet());
  ASSERT_TRUE(runs.ok()) << runs.error().message;
  Reports late;
  auto quiet = ExitWatch::Start(*runs, late.Sink());
  ASSERT_TRUE(quiet.ok()) << quiet.error().message;
  (*quiet)->Stop();
  plugins::EndChild(*runs, 1s);  // ended as asked: no report
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(late.WaitFor(1, 0s).empty());
}

// No agent ever serves: the guest says it is up on the serial port and sleeps.
std::string BuildSleepingInitrd(const TempDir& dir) {
  return BuildBusyboxInitrd(dir, "sleep-initrd",
                            "echo GUEST-IS-UP > /dev/ttyS0\n"
                            "exec /bin/busybox sleep 100000\n");
}

pluginapi::VmSpec SpecIn(const TempDir& dir, const std::string& initrd, const std::string& id) {
  fs::create_directories(dir / ("vm-" + id));
  pluginapi::VmSpec spec;
  spec.set_id(id);
  spec.set_namespace_("test");
  spec.set_kernel_path(OutputDir() + "/beaconbox-kernel-x86_64");
  spec.set_initrd_path(initrd);
  spec.set_memory_mib(256);
  spec.set_run_dir(dir / ("vm-" + id));
  spec.set_console_log_path(dir / ("console-" + id + ".log"));
  spec.add_guest_kernel_args("panic=-1");
  spec.set_kernel_cmdline("no_timer_check");
  spec.mutable_agent_channel()->set_kind(pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL);
  spec.mutable_agent_channel()->set_serial_port_name("beaconbox.agent");
  spec.mutable_agent_channel()->set_unix_socket_path(dir / ("vm-" + id + "/agent.sock"));
  auto token = GenerateAgentToken();
  if (token.ok()) spec.set_agent_token(*token);
  return spec;
}

bool WaitForText(const std::string& path, const std::string& text, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ReadAll(path).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(200ms);
  }
  return false;
}

// Real QEMU (TCG) and the real guest kernel: the test kills QEMU by its pid once the
// guest is up; the warning names the signal and holds the console's last line, and
// the VM's own calls say how QEMU ended. A VM stopped as asked reports nothing.
TEST(ExitWatchWithQemu, AKilledQemuIsReportedWithSignalAndConsoleTail) {
  const std::string kernel = OutputDir() + "/beaconbox-kernel-x86_64";
  if (::access(kernel.c_str(), R_OK) != 0 || ::access("/bin/busybox", R_OK) != 0 ||
      ::access("/usr/bin/qemu-system-x86_64", X_OK) != 0) {
    GTEST_SKIP() << "needs " << kernel << " (make guest_image), busybox-static and QEMU";
  }
  TempDir dir;
  const std::string initrd = BuildSleepingInitrd(dir);
  ASSERT_FALSE(initrd.empty()) << "building the test initrd with cpio failed";
  QemuConfig config;
  config.binary = "/usr/bin/qemu-system-x86_64";
  config.accelerator = "tcg";
  plugins::Spawner spawner;

  const pluginapi::VmSpec spec = SpecIn(dir, initrd, "killed");
  auto vm = QemuVm::Create(spec, config, spawner);
  ASSERT_TRUE(vm.ok()) << vm.error().message;
  Reports reports;
  ASSERT_TRUE((*vm)->WatchExit(reports.Sink()).ok());
  ASSERT_TRUE(WaitForText(spec.console_log_path(), "GUEST-IS-UP", 300s))
      << "the guest never came up; console: " << ReadAll(spec.console_log_path()).substr(0, 2048);
  const pid_t qemu = static_cast<pid_t>((*vm)->Info().vmm_pid());
  ASSERT_GT(qemu, 0);
  ASSERT_EQ(::kill(qemu, SIGKILL), 0);
  auto lines = reports.WaitFor(1, 60s);
  ASSERT_EQ(lines.size(), 1u) << "no report of QEMU's end";
  EXPECT_NE(lines[0].find("VM test/killed: QEMU (pid " + std::to_string(qemu) +
                          ") ended without being asked to: killed by signal 9 (SIGKILL)"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find("GUEST-IS-UP"), std::string::npos) << lines[0];
  EXPECT_LE(lines[0].size(), 9000u);
  auto connected = (*vm)->ConnectGuest(1s);
  ASSERT_FALSE(connected.ok());
  EXPECT_NE(connected.error().message.find("QEMU: killed by signal 9"), std::string::npos)
      << connected.error().message;
  ASSERT_TRUE((*vm)->Stop(5s).ok());
  EXPECT_EQ(reports.WaitFor(2, 0s).size(), 1u) << "reported twice";
  vm->reset();
  EXPECT_FALSE(fs::exists(dir / "vm-killed/qemu.log"));

  // Stopped as asked: no report.
  const pluginapi::VmSpec asked = SpecIn(dir, initrd, "asked");
  auto stopped = QemuVm::Create(asked, config, spawner);
  ASSERT_TRUE(stopped.ok()) << stopped.error().message;
  Reports none;
  ASSERT_TRUE((*stopped)->WatchExit(none.Sink()).ok());
  ASSERT_TRUE((*stopped)->Stop(5s).ok());
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(none.WaitFor(1, 0s).empty()) << none.WaitFor(1, 0s)[0];
}

}  // namespace
}  // namespace beaconbox::qemu
