// Which Task calls a process accepts in which state, answered as runc's shim answers
// (containerd pkg/process: init_state.go for a container's init process, exec_state.go
// for an exec), with errdefs' codes: a call the state forbids is kFailedPrecondition
// with runc's text; killing a process that already exited is kNotFound ("process
// already finished").
//
//            start  pause  resume  delete  kill   exec   resize-pty
//  created   ok     no     no      ok      ok     ok     ok
//  running   no     ok     no      no      ok     ok     ok
//  paused    no     no     ok      no      ok     no     ok
//  stopped   no     no     no      ok      gone   no     no (exec)
//
// An exec process is never paused or resumed on its own; killing an exec that was
// never started is kFailedPrecondition ("process not created").
#pragma once

#include <string_view>

#include "common/base/result.h"

namespace beaconbox::shim {

enum class ProcessState { kCreated, kRunning, kPaused, kStopped };

enum class ProcessOp { kStart, kPause, kResume, kDelete, kKill, kExec, kResizePty };

std::string_view ProcessStateName(ProcessState state);

// Ok when `op` is allowed on a process in `state`; `init` says whether it is a
// container's init process (else an exec).
Status CheckProcessOp(ProcessState state, ProcessOp op, bool init);

}  // namespace beaconbox::shim
