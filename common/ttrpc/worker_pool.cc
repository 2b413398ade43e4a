#include "common/ttrpc/worker_pool.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace beaconbox::ttrpc::internal {
namespace {

// Idle threads beyond this many exit, as do threads idle for longer than
// kIdleTimeout: a burst does not leave its threads behind.
constexpr size_t kMaxIdleThreads = 16;
constexpr auto kIdleTimeout = std::chrono::seconds(30);

class WorkerPool {
 public:
  void Submit(std::function<void()> task) {
    std::unique_lock lock(mutex_);
    tasks_.push_back(std::move(task));
    if (idle_ >= tasks_.size()) {
      work_.notify_one();
      return;
    }
    lock.unlock();
    std::thread([this] { Work(); }).detach();
  }

 private:
  void Work() {
    std::unique_lock lock(mutex_);
    while (true) {
      while (!tasks_.empty()) {
        std::function<void()> task = std::move(tasks_.front());
        tasks_.pop_front();
        lock.unlock();
        task();          // handlers catch their own exceptions (RunHandler)
        task = nullptr;  // release captures outside the lock
        lock.lock();
      }
      if (idle_ >= kMaxIdleThreads) return;
      ++idle_;
      bool woken = work_.wait_for(lock, kIdleTimeout, [this] { return !tasks_.empty(); });
      --idle_;
      if (!woken) return;
    }
  }

  std::mutex mutex_;
  std::condition_variable work_;
  std::deque<std::function<void()>> tasks_;
  size_t idle_ = 0;
};

}  // namespace

void RunOnPool(std::function<void()> task) {
  // Leaked on purpose: detached workers may still run at exit.
  static WorkerPool* const pool = new WorkerPool;
  pool->Submit(std::move(task));
}

}  // namespace beaconbox::ttrpc::internal
