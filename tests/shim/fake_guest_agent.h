// A fake of vminitd's API -- beaconbox.guest.v1.Guest and containerd.task.v2.Task --
// served over ttrpc on one end of a socketpair, with an in-memory process table: a
// process "runs" until it is killed (exit 128+signal), deleted, or told to exit with
// Exit(). Used in-process by the C++ fakes (fake_backends.h) and, linked statically,
// by the fake VMM plugin .so (fake_vmm_plugin/), which serves it behind the C ABI.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "beaconbox/guest/v1/guest.pb.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "common/ttrpc/ttrpc.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"

namespace beaconbox::shim::testing {

namespace guestapi = ::beaconbox::guest::v1;

class FakeGuestAgent {
 public:
  FakeGuestAgent() = default;
  ~FakeGuestAgent();

  // A new connection to the agent: the caller's end of a socketpair.
  Result<UniqueFd> Connect();
  // Ends every connection (the VM went away).
  void Disconnect();

  // Makes a running process exit on its own.
  void Exit(const std::string& id, const std::string& exec_id, uint32_t status);
  // From now on, an init process (exec id "") exits with `status` as soon as it starts,
  // as `/bin/true` would.
  void ExitOnStart(uint32_t status);
  // Fails the next call of "Service.Method" (e.g. "Guest.CreateBundle") with `code`.
  void FailNext(const std::string& method, ttrpc::Code code);
  // From the next Connect on, every call must carry `token` (as vminitd requires the
  // VM's agent token); calls without it are answered kUnauthenticated.
  void RequireToken(std::string token);

  // A hostile or wedged guest, from now on:
  // - Kill is acknowledged and nothing happens;
  void IgnoreKill();
  // - calls of "Service.Method" ("*": every method) never answer: each handler
  //   returns only once its connection is closed;
  void Hang(const std::string& method);
  void StopHanging();  // later calls answer again
  // - Create and Start answer `pid` (0, 1, 0xffffffff, ...) whatever the process is;
  void AnswerPid(uint32_t pid);
  // - Wait answers an exit time that is no valid Timestamp.
  void AnswerInvalidExitTime();
  int hung_calls() const;  // calls that hung so far

  // The OOM kill count of container `id` (Guest.WaitOom answers it; those calls are
  // not recorded in calls(): they run all along).
  void SetOomKills(const std::string& id, uint64_t count);
  // What Task.Stats answers from now on (default: kUnimplemented).
  void AnswerStats(const std::string& type_url, const std::string& value);

  // A saved VM (FakeVmm's SaveVm and restore): keeps a copy of the process table, and
  // puts that copy back, as a VM loaded from a save runs what it ran when saved.
  void SaveProcesses();
  void LoadSavedProcesses();

  std::vector<std::string> calls() const;  // "Guest.Hello", "Task.Create", ... in order
  std::optional<guestapi::CreateBundleRequest> last_bundle() const;
  std::optional<guestapi::NetworkConfig> network() const;
  // Task.Update's last request.
  std::optional<::containerd::task::v2::UpdateTaskRequest> last_update() const;

 private:
  struct Process {
    uint32_t pid = 0;
    bool started = false;
    bool exited = false;
    uint32_t exit_status = 0;
    bool deleted = false;
  };
  using ProcessKey = std::pair<std::string, std::string>;  // id, exec id

  void Register(ttrpc::Server& server);
  // The failure to inject, if any; blocks while the method hangs.
  ttrpc::RpcStatus Record(const std::string& method, const ttrpc::ServerContext& context);

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<ProcessKey, Process> processes_;                   // guarded by mutex_
  std::map<ProcessKey, Process> saved_processes_;             // guarded by mutex_
  uint32_t next_pid_ = 100;                                   // guarded by mutex_
  std::vector<std::string> calls_;                            // guarded by mutex_
  std::map<std::string, ttrpc::Code> failures_;               // guarded by mutex_
  std::optional<guestapi::CreateBundleRequest> last_bundle_;  // guarded by mutex_
  std::optional<guestapi::NetworkConfig> network_;            // guarded by mutex_
  std::optional<uint32_t> exit_on_start_;                     // guarded by mutex_
  std::string required_token_;                                // guarded by mutex_
  bool ignore_kill_ = false;                                  // guarded by mutex_
  std::set<std::string> hanging_;                             // guarded by mutex_
  std::optional<uint32_t> answer_pid_;                        // guarded by mutex_
  bool invalid_exit_time_ = false;                            // guarded by mutex_
  std::map<std::string, uint64_t> oom_kills_;                 // guarded by mutex_
  std::optional<std::pair<std::string, std::string>> stats_;  // guarded by mutex_
  int hung_calls_ = 0;                                        // guarded by mutex_
  std::vector<std::unique_ptr<ttrpc::Server>> servers_;       // guarded by mutex_
  std::vector<std::thread> threads_;                          // guarded by mutex_
  int waiting_handlers_ = 0;  // guarded by mutex_: Wait handlers still using `this`

  std::optional<::containerd::task::v2::UpdateTaskRequest> last_update_;  // guarded by mutex_
};

}  // namespace beaconbox::shim::testing
