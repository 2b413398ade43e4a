#include "host/shim/process_state.h"

#include <string>

namespace beaconbox::shim {
namespace {

Status Refuse(std::string message) {
  return MakeError(ErrorCode::kFailedPrecondition, std::move(message));
}

}  // namespace

std::string_view ProcessStateName(ProcessState state) {
  switch (state) {
    case ProcessState::kCreated:
      return "created";
    case ProcessState::kRunning:
      return "running";
    case ProcessState::kPaused:
      return "paused";
    case ProcessState::kStopped:
      return "stopped";
  }
  return "unknown";
}

Status CheckProcessOp(ProcessState state, ProcessOp op, bool init) {
  switch (state) {
    case ProcessState::kCreated:
      switch (op) {
        case ProcessOp::kPause:
          return Refuse("cannot pause task in created state");
        case ProcessOp::kResume:
          return Refuse("cannot resume task in created state");
        case ProcessOp::kKill:
          if (!init) return Refuse("process not created");
          return Status::Ok();
        default:
          return Status::Ok();
      }
    case ProcessState::kRunning:
      switch (op) {
        case ProcessOp::kStart:
          return Refuse("cannot start a running process");
        case ProcessOp::kResume:
          return Refuse("cannot resume a running process");
        case ProcessOp::kDelete:
          return Refuse("cannot delete a running process");
        case ProcessOp::kPause:
          if (!init) return Refuse("cannot pause an exec process");
          return Status::Ok();
        default:
          return Status::Ok();
      }
    case ProcessState::kPaused:
      switch (op) {
        case ProcessOp::kStart:
          return Refuse("cannot start a paused process");
        case ProcessOp::kPause:
          return Refuse("cannot pause a paused container");
        case ProcessOp::kDelete:
          return Refuse("cannot delete a paused process");
        case ProcessOp::kExec:
          return Refuse("cannot exec in a paused state");
        default:
          return Status::Ok();
      }
    case ProcessState::kStopped:
      switch (op) {
        case ProcessOp::kStart:
          return Refuse("cannot start a stopped process");
        case ProcessOp::kPause:
          return Refuse("cannot pause a stopped container");
        case ProcessOp::kResume:
          return Refuse("cannot resume a stopped container");
        case ProcessOp::kExec:
          return Refuse("cannot exec in a stopped state");
        case ProcessOp::kResizePty:
          if (!init) return Refuse("cannot resize a stopped container");
          return Status::Ok();
        case ProcessOp::kKill:
          return MakeError(ErrorCode::kNotFound, "process already finished");
        case ProcessOp::kDelete:
          return Status::Ok();
      }
  }
  return Status::Ok();
}

}  // namespace beaconbox::shim
