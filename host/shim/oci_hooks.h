// OCI hooks of a container in a VM, run as runc runs them (runtime-spec config.md,
// "POSIX-platform Hooks"):
//   prestart, createRuntime  on the host at Create, status "creating", before the
//                            container is created in the guest (the VM exists);
//   poststart                on the host after the init started, status "running";
//   poststop                 on the host at Delete, status "stopped", the VM gone.
// Each gets the container's OCI state JSON on stdin, whose pid is the VMM's host pid
// (a hook reading /proc/<pid> finds the VM, the container's only host process), and
// its bundle is containerd's bundle on the host.
//   startContainer  runs in the container namespace, its path resolved there: it is
//                   left in the spec the guest's crun runs, as runc would.
//   createContainer runs in the container's mount namespace before pivot_root with
//                   a path of the host: a VM has no such namespace, so it is refused.
// A prestart or createRuntime hook that fails (exit status not 0, or its timeout)
// fails the Create; poststart and poststop failures are logged (the runtime spec's
// rule: "log a warning ... the lifecycle continues").
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::shim {

struct OciHook {
  std::string path;               // absolute, on the host
  std::vector<std::string> args;  // argv, args[0] included; [path] when absent
  bool has_env = false;           // absent: the shim's environment, as runc (Go's exec)
  std::vector<std::string> env;
  int timeout_seconds = 0;  // 0: none
};

struct OciHooks {
  std::vector<OciHook> prestart;
  std::vector<OciHook> create_runtime;
  std::vector<OciHook> poststart;
  std::vector<OciHook> poststop;
  bool empty() const {
    return prestart.empty() && create_runtime.empty() && poststart.empty() && poststop.empty();
  }
};

// The host's hooks of a spec's "hooks" object; an invalid hook gets one line naming it.
Result<OciHooks> ParseHostHooks(const nlohmann::json& hooks);

// The OCI state (runtime-spec runtime.md) handed to a hook on stdin.
std::string OciStateJson(const std::string& id, const std::string& status, uint32_t pid,
                         const std::string& bundle,
                         const std::map<std::string, std::string>& annotations);

// Runs one hook with `state_json` on stdin, until it exits (or its timeout, then it is
// killed). Its output goes to the error message when it fails (the tail).
Status RunOciHook(const OciHook& hook, const std::string& state_json);

// One container's hooks and what their state says.
class ContainerHooks {
 public:
  ContainerHooks(OciHooks hooks, std::string id, std::string bundle,
                 std::map<std::string, std::string> annotations);
  // prestart then createRuntime: the first failure is returned.
  Status RunCreate(uint32_t pid) const;
  // poststart / poststop: failures are logged; every hook runs.
  void RunPoststart(uint32_t pid) const;
  void RunPoststop(uint32_t pid) const;

 private:
  void RunLogged(const std::vector<OciHook>& hooks, const char* kind, const char* status,
                 uint32_t pid) const;
  OciHooks hooks_;
  std::string id_;
  std::string bundle_;
  std::map<std::string, std::string> annotations_;
};

}  // namespace beaconbox::shim
