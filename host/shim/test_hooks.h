// Test hooks of the shim: off unless BEACONBOX_TEST_HOOKS=1 is in the shim's
// environment (the e2e tests put it in their private containerd's, which passes it to
// its shims). Only then is a container's OCI annotation
//   beaconbox.test/crash-after=<step>        (a step of kCreateSteps, sandbox.h)
// honoured: right after that step of Create the shim kills itself with SIGKILL, as
// `kill -9 <shim pid>` would, so that a test checks that containerd's cleanup (the
// shim's `delete` action) leaves nothing behind. Never set in production.
#pragma once

#include "host/shim/sandbox.h"

namespace beaconbox::shim {

inline constexpr char kTestHooksEnv[] = "BEACONBOX_TEST_HOOKS";
inline constexpr char kCrashAfterAnnotation[] = "beaconbox.test/crash-after";

// The crash hook when the environment enables test hooks; null otherwise.
AfterStepHook TestCrashHookFromEnvironment();

}  // namespace beaconbox::shim
