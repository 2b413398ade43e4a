// containerd's TaskOOM (/tasks/oom) for one container, as runc's shim publishes it on
// a cgroup v2 host: one event each time the OOM kill count of the container's cgroup
// is seen to grow. The count lives in the guest (memory.events of the container's
// cgroup); the watch pulls it with Guest.WaitOom, one long-poll call in flight at a
// time (guest.proto), never a stream. Before a process's exit is published, Sync asks
// once more without waiting, so that /tasks/oom comes before /tasks/exit as with runc.
//
// The count is the guest's word: it only decides whether an event goes out (at most
// one per call, calls at least kMinCallInterval apart), never anything else.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "host/shim/event_publisher.h"
#include "host/shim/guest_client.h"

namespace beaconbox::shim {

class OomWatch {
 public:
  // How long one WaitOom call waits in the guest, and the least time between the
  // starts of two calls: a guest answering at once can neither make the shim spin nor
  // flood containerd with events (at most one per interval).
  static constexpr std::chrono::milliseconds kPollWait{10000};
  static constexpr std::chrono::milliseconds kMinCallInterval{1000};

  // `call_timeout`: the deadline of a guest call beyond its own wait.
  OomWatch(GuestClient& guest, std::string container_id, EventSink& events,
           std::chrono::milliseconds call_timeout);
  ~OomWatch();
  OomWatch(const OomWatch&) = delete;
  OomWatch& operator=(const OomWatch&) = delete;

  void Start();
  // Publishes an OOM the guest counted and the watch did not report yet; no wait.
  void Sync();
  // Ends the watch: returns once its call ends (the guest answers NOT_FOUND once the
  // container is deleted, every call fails once the connection is closed, and no
  // call waits longer than kPollWait plus call_timeout).
  void Stop();

 private:
  void Run();
  // Publishes one TaskOOM when `count` is above what was reported.
  void Report(uint64_t count);
  // Logs why the watch ends after a failed call.
  void Failed(const Error& error);

  GuestClient& guest_;
  const std::string container_id_;
  EventSink& events_;
  const std::chrono::milliseconds call_timeout_;

  std::mutex mutex_;
  std::condition_variable stop_requested_;  // with mutex_
  bool stopping_ = false;                   // guarded by mutex_
  bool unsupported_ = false;                // guarded by mutex_: the guest has no WaitOom
  uint64_t reported_ = 0;                   // guarded by mutex_: the count published up to
  std::thread thread_;
};

}  // namespace beaconbox::shim
