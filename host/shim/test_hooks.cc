#include "host/shim/test_hooks.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace beaconbox::shim {

AfterStepHook TestCrashHookFromEnvironment() {
  const char* enabled = std::getenv(kTestHooksEnv);
  if (enabled == nullptr || std::string(enabled) != "1") return nullptr;
  spdlog::warn("test hooks enabled ({}=1): honouring the {} annotation", kTestHooksEnv,
               kCrashAfterAnnotation);
  return [](std::string_view step, const std::map<std::string, std::string>& annotations) {
    auto it = annotations.find(kCrashAfterAnnotation);
    if (it == annotations.end() || it->second != step) return;
    spdlog::warn("test hook {}={}: killing the shim (SIGKILL)", kCrashAfterAnnotation, step);
    spdlog::default_logger()->flush();
    ::kill(::getpid(), SIGKILL);
    ::pause();
  };
}

}  // namespace beaconbox::shim
