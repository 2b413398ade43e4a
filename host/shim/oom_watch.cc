#include "host/shim/oom_watch.h"

#include <spdlog/spdlog.h>

#include "github.com/containerd/containerd/api/events/task.pb.h"

namespace beaconbox::shim {

OomWatch::OomWatch(GuestClient& guest, std::string container_id, EventSink& events,
                   std::chrono::milliseconds call_timeout)
    : guest_(guest),
      container_id_(std::move(container_id)),
      events_(events),
      call_timeout_(call_timeout) {}

OomWatch::~OomWatch() { Stop(); }

void OomWatch::Start() {
  std::lock_guard lock(mutex_);
  if (!thread_.joinable() && !stopping_) thread_ = std::thread([this] { Run(); });
}

void OomWatch::Stop() {
  std::thread thread;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    thread.swap(thread_);
  }
  stop_requested_.notify_all();
  if (thread.joinable()) thread.join();
}

void OomWatch::Report(uint64_t count) {
  std::lock_guard lock(mutex_);
  if (count <= reported_) return;
  reported_ = count;
  ::containerd::events::TaskOOM event;
  event.set_container_id(container_id_);
  events_.Publish("/tasks/oom", event);
  spdlog::info("container {}: OOM kill in the guest (count {}): /tasks/oom published",
               container_id_, count);
}

void OomWatch::Failed(const Error& error) {
  std::lock_guard lock(mutex_);
  if (error.code == ErrorCode::kNotImplemented) {
    unsupported_ = true;
    spdlog::info("container {}: the guest agent has no WaitOom: no /tasks/oom events",
                 container_id_);
  } else if (!stopping_ && error.code != ErrorCode::kNotFound) {
    spdlog::warn("container {}: OOM watch ends: {}", container_id_, error.message);
  }
}

void OomWatch::Sync() {
  uint64_t seen = 0;
  {
    std::lock_guard lock(mutex_);
    if (unsupported_) return;
    seen = reported_;
  }
  guestapi::WaitOomRequest request;
  request.set_container_id(container_id_);
  request.set_seen(seen);
  request.set_wait_ms(0);
  guestapi::WaitOomResponse response;
  if (guest_.CallGuest("WaitOom", request, &response, call_timeout_).ok()) {
    Report(response.oom_kills());
  }
}

void OomWatch::Run() {
  while (true) {
    uint64_t seen = 0;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      seen = reported_;
    }
    guestapi::WaitOomRequest request;
    request.set_container_id(container_id_);
    request.set_seen(seen);
    request.set_wait_ms(static_cast<uint32_t>(kPollWait.count()));
    guestapi::WaitOomResponse response;
    const auto next_call = std::chrono::steady_clock::now() + kMinCallInterval;
    Status called = guest_.CallGuest("WaitOom", request, &response, kPollWait + call_timeout_);
    if (!called.ok()) {
      // NOT_FOUND: the container was deleted in the guest; else the VM is gone or wedged.
      Failed(called.error());
      return;
    }
    Report(response.oom_kills());
    std::unique_lock lock(mutex_);
    stop_requested_.wait_until(lock, next_call, [this] { return stopping_; });
  }
}

}  // namespace beaconbox::shim
