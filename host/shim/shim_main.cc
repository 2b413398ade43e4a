// containerd-shim-beaconbox-v1: the shim v2 binary containerd runs for the runtime
// io.containerd.beaconbox.v1. Three modes, chosen by the action argument:
//   start   launch the long-running shim for a container, print its ttrpc address
//   delete  clean up after a shim that died, print a DeleteResponse
//   (none)  the long-running shim itself: serve containerd.task.v2.Task
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "host/log/log.h"
#include "host/shim/shim_actions.h"
#include "host/shim/shim_flags.h"

int main(int argc, char** argv) {
  using namespace beaconbox;
  // One malloc arena: glibc gives each thread that allocates an arena of its own
  // (up to 8 per core), each keeping freed memory; the shim's dozen mostly idle
  // threads need no allocation concurrency (bench/density, README "Memory per
  // container").
  ::mallopt(M_ARENA_MAX, 1);
  std::vector<std::string> args(argv + 1, argv + argc);
  auto flags = shim::ParseShimFlags(args);
  if (!flags.ok()) {
    std::fprintf(stderr, "containerd-shim-beaconbox-v1: %s\n", flags.error().message.c_str());
    return 2;
  }
  if (flags->version) {
    std::printf("%s:\n  Version:  %s\n", argv[0], BEACONBOX_VERSION);
    return 0;
  }
  if (flags->namespace_name.empty()) {
    std::fprintf(stderr,
                 "containerd-shim-beaconbox-v1: -namespace is required (containerd "
                 "passes it; run the shim through containerd)\n");
    return 2;
  }
  // The start and delete actions answer containerd on stdout (the address, a
  // DeleteResponse): spdlog's default logger writes to stdout, so every line logged
  // there (a plugin's release, a pod's live shim) would corrupt the answer. The
  // serving shim sets its own logging up on the log FIFO.
  (void)log::SetUpLogging({"beaconbox-shim " + flags->id, flags->debug ? "debug" : "info", ""});
  Status status;
  if (flags->action == "start") {
    status = shim::RunStart(*flags, argv[0]);
  } else if (flags->action == "delete") {
    status = shim::RunDelete(*flags);
  } else {
    status = shim::RunServe(*flags);
  }
  if (!status.ok()) {
    // containerd shows the start/delete output to the user on failure.
    std::fprintf(stderr, "%s\n", status.error().message.c_str());
    spdlog::error("{}", status.error().message);
    return 1;
  }
  return 0;
}
