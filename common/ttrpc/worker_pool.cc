#include "common/ttrpc/worker_pool.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
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
    if (threads_ >= limit_) return;  // a busy thread takes it when it is done
    ++threads_;
    lock.unlock();
    try {
      std::thread([this] { Work(); }).detach();
    } catch (const std::system_error&) {
      // No thread to be had now: the task waits for a running one.
      lock.lock();
      --threads_;
    }
  }

  void SetLimit(size_t limit) {
    std::lock_guard lock(mutex_);
    limit_ = std::max<size_t>(limit, 1);
  }

  PoolCounts Count() {
    std::lock_guard lock(mutex_);
    return {threads_, tasks_.size()};
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
      if (idle_ >= kMaxIdleThreads) break;
      ++idle_;
      bool woken = work_.wait_for(lock, kIdleTimeout, [this] { return !tasks_.empty(); });
      --idle_;
      if (!woken) break;
    }
    --threads_;
  }

  std::mutex mutex_;
  std::condition_variable work_;
  std::deque<std::function<void()>> tasks_;
  size_t idle_ = 0;
  size_t threads_ = 0;
  size_t limit_ = kDefaultPoolThreadLimit;
};

WorkerPool& Pool() {
  // Leaked on purpose: detached workers may still run at exit.
  static WorkerPool* const pool = new WorkerPool;
  return *pool;
}

}  // namespace

void RunOnPool(std::function<void()> task) { Pool().Submit(std::move(task)); }
void SetPoolThreadLimit(size_t limit) { Pool().SetLimit(limit); }
PoolCounts CountPool() { return Pool().Count(); }

}  // namespace beaconbox::ttrpc::internal
