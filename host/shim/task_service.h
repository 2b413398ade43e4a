// containerd.task.v2.Task, served to containerd over the shim's ttrpc socket. It only
// translates: each method finds the container by namespace and id, calls it (or the
// Sandbox for create/delete), and maps the result to the response or to a ttrpc
// status (errdefs codes: kNotFound, kAlreadyExists, kFailedPrecondition, ...). Events
// are published by the containers, never here.
#pragma once

#include <functional>
#include <string>

#include "common/ttrpc/ttrpc.h"
#include "host/shim/sandbox.h"

namespace beaconbox::shim {

class TaskService {
 public:
  // `namespace_name`: the shim's (containerd passes it on the command line); a request
  // carrying containerd's namespace metadata uses that one. `shutdown` is called when
  // containerd asks the shim to exit (Shutdown with no container left, or `now`).
  // `after_start`, when set, is called after each successful Start (of a container or
  // an exec), once the shim has done its setup and goes idle (the serving shim gives
  // back memory there: idle_memory.h).
  TaskService(Sandbox& sandbox, std::string namespace_name, std::function<void()> shutdown,
              std::function<void()> after_start = {});

  void Register(ttrpc::Server& server);

 private:
  ContainerKey KeyOf(const ttrpc::ServerContext& context, const std::string& id) const;
  Result<std::shared_ptr<Container>> Find(const ttrpc::ServerContext& context,
                                          const std::string& id) const;

  Sandbox& sandbox_;
  const std::string namespace_;
  const std::function<void()> shutdown_;
  const std::function<void()> after_start_;
};

}  // namespace beaconbox::shim
