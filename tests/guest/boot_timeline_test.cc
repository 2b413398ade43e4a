// The kernel milestones of the boot timeline, read from /dev/kmsg records.
#include "guest/vminitd/boot_timeline.h"

#include <gtest/gtest.h>

namespace beaconbox::guest {
namespace {

TEST(BootTimeline, FindsEachKernelMilestoneOnceInRecordOrder) {
  const std::string records =
      "6,0,0,-;Linux version 6.1.0-28-amd64\n"
      "6,310,412345,-;Trying to unpack rootfs image as initramfs...\n"
      "5,311,412400,-;Unpacking initramfs...\n"
      "6,480,901002,-;Freeing initrd memory: 5120K\n"
      "6,481,950000,-,caller=T1;Freeing unused kernel image (initmem) memory: 2800K\n"
      "6,482,950100,-;Run /init as init process\n"
      "6,483,960000,-;Run /init as init process\n"
      " SUBSYSTEM=acpi\n";
  auto steps = KernelBootSteps(records);
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(steps[0].name, "initramfs-unpack-start");
  EXPECT_EQ(steps[0].at_us, 412400u);
  EXPECT_EQ(steps[1].name, "initramfs-unpacked");
  EXPECT_EQ(steps[1].at_us, 901002u);
  EXPECT_EQ(steps[2].name, "kernel-init-done");
  EXPECT_EQ(steps[2].at_us, 950000u);
  EXPECT_EQ(steps[3].name, "init-started");
  EXPECT_EQ(steps[3].at_us, 950100u);  // the first record only
}

TEST(BootTimeline, SkipsMalformedRecords) {
  EXPECT_TRUE(KernelBootSteps("").empty());
  EXPECT_TRUE(KernelBootSteps("Run /init as init process\n").empty());      // no prefix
  EXPECT_TRUE(KernelBootSteps("6,1;Run /init as init process\n").empty());  // no usec
  EXPECT_TRUE(KernelBootSteps("6,1,x12,-;Run /init as init process").empty());
  EXPECT_TRUE(KernelBootSteps("6,1,99999999999999999999999,-;Run /init as init process").empty());
  auto steps = KernelBootSteps("6,1,42;Run /init as init process");  // no flags, no newline
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].at_us, 42u);
}

TEST(BootTimeline, VminitdStepsAreRecordedOnce) {
  const uint64_t first = MarkBootStep("test-step");
  EXPECT_GT(first, 0u);
  EXPECT_EQ(MarkBootStep("test-step"), first);  // a repeat answers the first time
  int seen = 0;
  for (const BootStep& step : BootTimeline()) {
    if (step.name != "test-step") continue;
    ++seen;
    EXPECT_EQ(step.at_us, first);
  }
  EXPECT_EQ(seen, 1);
}

}  // namespace
}  // namespace beaconbox::guest
