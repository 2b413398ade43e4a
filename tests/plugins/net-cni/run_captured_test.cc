// plugins/common's RunCaptured, as net-cni runs CNI plugins with it: stdin fed,
// stdout and stderr bounded, a timeout, the exit code.
#include <gtest/gtest.h>

#include "plugins/common/child_process.h"

namespace beaconbox::plugins {
namespace {

using namespace std::chrono_literals;

TEST(RunCaptured, FeedsStdinAndReturnsStdoutAndTheExitCode) {
  CapturedRunOptions options;
  options.stdin_text = "hello";
  options.env = {"GREETING=hi"};
  auto run =
      RunCaptured({"/bin/sh", "-c", "cat; echo \" $GREETING\"; echo oops >&2; exit 3"}, options);
  ASSERT_TRUE(run.ok()) << run.error().message;
  EXPECT_EQ(run->stdout_text, "hello hi\n");
  EXPECT_EQ(run->stderr_text, "oops\n");
  EXPECT_EQ(run->exit_code, 3);
}

TEST(RunCaptured, BoundsWhatItKeeps) {
  CapturedRunOptions options;
  options.max_stdout = 1000;
  auto run = RunCaptured({"/bin/sh", "-c", "head -c 5000000 /dev/zero"}, options);
  ASSERT_TRUE(run.ok()) << run.error().message;
  EXPECT_EQ(run->stdout_text.size(), 1000u);
  EXPECT_TRUE(run->stdout_truncated);
  EXPECT_EQ(run->exit_code, 0);
}

TEST(RunCaptured, KillsWhatOutlivesTheTimeout) {
  CapturedRunOptions options;
  options.timeout = 300ms;
  auto run = RunCaptured({"/bin/sleep", "30"}, options);
  ASSERT_FALSE(run.ok());
  EXPECT_EQ(run.error().code, ErrorCode::kTimeout);
}

TEST(RunCaptured, ALargeStdinThatIsNotReadDoesNotHang) {
  CapturedRunOptions options;
  options.stdin_text = std::string(4 << 20, 'x');
  options.timeout = 5s;
  auto run = RunCaptured({"/bin/true"}, options);
  ASSERT_TRUE(run.ok()) << run.error().message;
  EXPECT_EQ(run->exit_code, 0);
}

}  // namespace
}  // namespace beaconbox::plugins
