#include "host/shim/process_state.h"

#include <gtest/gtest.h>

namespace beaconbox::shim {
namespace {

using S = ProcessState;
using Op = ProcessOp;

std::string Answer(S state, Op op, bool init = true) {
  Status status = CheckProcessOp(state, op, init);
  if (status.ok()) return "ok";
  return (status.error().code == ErrorCode::kNotFound ? "NotFound: " : "FailedPrecondition: ") +
         status.error().message;
}

// The answers of containerd's runc shim (pkg/process/init_state.go, exec_state.go).
TEST(ProcessStateTest, InitProcessAnswersAsRunc) {
  EXPECT_EQ(Answer(S::kCreated, Op::kStart), "ok");
  EXPECT_EQ(Answer(S::kCreated, Op::kKill), "ok");
  EXPECT_EQ(Answer(S::kCreated, Op::kDelete), "ok");
  EXPECT_EQ(Answer(S::kCreated, Op::kPause),
            "FailedPrecondition: cannot pause task in created state");
  EXPECT_EQ(Answer(S::kCreated, Op::kResume),
            "FailedPrecondition: cannot resume task in created state");
  EXPECT_EQ(Answer(S::kRunning, Op::kStart), "FailedPrecondition: cannot start a running process");
  EXPECT_EQ(Answer(S::kRunning, Op::kDelete),
            "FailedPrecondition: cannot delete a running process");
  EXPECT_EQ(Answer(S::kRunning, Op::kResume),
            "FailedPrecondition: cannot resume a running process");
  EXPECT_EQ(Answer(S::kRunning, Op::kPause), "ok");
  EXPECT_EQ(Answer(S::kRunning, Op::kExec), "ok");
  EXPECT_EQ(Answer(S::kPaused, Op::kExec), "FailedPrecondition: cannot exec in a paused state");
  EXPECT_EQ(Answer(S::kPaused, Op::kPause), "FailedPrecondition: cannot pause a paused container");
  EXPECT_EQ(Answer(S::kPaused, Op::kStart), "FailedPrecondition: cannot start a paused process");
  EXPECT_EQ(Answer(S::kPaused, Op::kDelete), "FailedPrecondition: cannot delete a paused process");
  EXPECT_EQ(Answer(S::kPaused, Op::kResume), "ok");
  EXPECT_EQ(Answer(S::kPaused, Op::kKill), "ok");
  EXPECT_EQ(Answer(S::kStopped, Op::kPause),
            "FailedPrecondition: cannot pause a stopped container");
  EXPECT_EQ(Answer(S::kStopped, Op::kResume),
            "FailedPrecondition: cannot resume a stopped container");
  EXPECT_EQ(Answer(S::kStopped, Op::kStart), "FailedPrecondition: cannot start a stopped process");
  EXPECT_EQ(Answer(S::kStopped, Op::kExec), "FailedPrecondition: cannot exec in a stopped state");
  EXPECT_EQ(Answer(S::kStopped, Op::kKill), "NotFound: process already finished");
  EXPECT_EQ(Answer(S::kStopped, Op::kDelete), "ok");
}

TEST(ProcessStateTest, ExecProcessAnswersAsRunc) {
  EXPECT_EQ(Answer(S::kCreated, Op::kKill, false), "FailedPrecondition: process not created");
  EXPECT_EQ(Answer(S::kCreated, Op::kDelete, false), "ok");
  EXPECT_EQ(Answer(S::kRunning, Op::kStart, false),
            "FailedPrecondition: cannot start a running process");
  EXPECT_EQ(Answer(S::kRunning, Op::kDelete, false),
            "FailedPrecondition: cannot delete a running process");
  EXPECT_EQ(Answer(S::kStopped, Op::kResizePty, false),
            "FailedPrecondition: cannot resize a stopped container");
  EXPECT_EQ(Answer(S::kStopped, Op::kKill, false), "NotFound: process already finished");
  EXPECT_EQ(Answer(S::kStopped, Op::kDelete, false), "ok");
}

}  // namespace
}  // namespace beaconbox::shim
