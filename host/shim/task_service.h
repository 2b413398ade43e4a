// containerd.task.v2.Task, served to containerd over the shim's ttrpc socket.
// Thin: each method checks the request, calls the Sandbox and fills the response.
#pragma once

#include <atomic>
#include <functional>

#include "host/shim/sandbox.h"

namespace beaconbox::shim {

class TaskService {
 public:
  // `shutdown` is called when containerd asks the shim to exit (Shutdown with no
  // container left, or `now`).
  TaskService(Sandbox& sandbox, EventPublisher& events, SandboxOptions options,
              std::function<void()> shutdown);

  void Register(ttrpc::Server& server);

 private:
  Sandbox& sandbox_;
  EventPublisher& events_;
  const SandboxOptions options_;
  std::function<void()> shutdown_;
};


}  // namespace beaconbox::shim
