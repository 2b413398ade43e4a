#include "host/shim/idle_memory.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/proc_status.h"

namespace beaconbox::shim {
namespace {

int g_written = 1;  // .data: written below, must survive the trim

struct Shape {
  virtual ~Shape() = default;
  virtual int Sides() const = 0;
};
struct Square : Shape {
  int Sides() const override { return 4; }
};

TEST(IdleMemoryTest, UnmapsReadOnlyFilePagesAndLeavesWrittenMemoryAlone) {
  g_written = 7;
  std::vector<int> heap(100000, 3);
  std::unique_ptr<Shape> shape = std::make_unique<Square>();  // vtable: RELRO
  const long before = beaconbox::testing::ProcSelfStatusKib("RssFile");
  ASSERT_GT(before, 0);

  const IdleTrim trim = TrimIdleMemory();

  const long after = beaconbox::testing::ProcSelfStatusKib("RssFile");
  EXPECT_GT(trim.file_pages_bytes, 0u);
  EXPECT_LT(after, before) << "RssFile " << before << " kB before, " << after << " kB after";
  // What the process wrote is intact, and code and read-only data fault back in.
  EXPECT_EQ(g_written, 7);
  EXPECT_EQ(heap[99999], 3);
  EXPECT_EQ(shape->Sides(), 4);
  EXPECT_EQ(std::to_string(12345), "12345");
  // A second trim finds the same segments and keeps working.
  EXPECT_GT(TrimIdleMemory().file_pages_bytes, 0u);
  EXPECT_EQ(g_written, 7);
}

TEST(IdleMemoryTest, TrimmerTrimsOnceScheduledAndNotBefore) {
  std::atomic<int> trims{0};
  {
    IdleTrimmer trimmer(std::chrono::milliseconds(20), [&trims] { ++trims; });
    trimmer.Schedule();
    for (int i = 0; i < 1000 && trims.load() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(trims.load(), 1);
  }
  // Never scheduled: never runs, and the destructor stops the thread.
  std::atomic<int> unscheduled{0};
  {
    IdleTrimmer trimmer(std::chrono::milliseconds(1), [&unscheduled] { ++unscheduled; });
  }
  EXPECT_EQ(unscheduled.load(), 0);
}

}  // namespace
}  // namespace beaconbox::shim
