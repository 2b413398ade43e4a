// The file mechanisms plugins take from common/base: the tail of a log for a one-line
// error (guest output is untrusted) and the atomic write.
#include "common/base/file_util.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/plugins/common/temp_dir.h"

namespace beaconbox {
namespace {

using plugins::testing::ReadAll;
using plugins::testing::TempDir;

TEST(ReadFileTailTest, LastBytesAsOnePrintableLine) {
  TempDir dir;
  const std::string log = dir.Write("console.log", "early\nboot: ok\r\nfail\x1b[31m\xff\x01!\n");
  EXPECT_EQ(ReadFileTail(log, 1024), "early|boot: ok||fail?[31m?\?!|");
  EXPECT_EQ(ReadFileTail(log, 4), "?\?!|");
  EXPECT_EQ(ReadFileTail(dir / "missing.log", 64), "");
}

TEST(ReadFileTailTest, BytesVariantKeepsTheBytes) {
  TempDir dir;
  const std::string log = dir.Write("qemu.log", "line 1\nline 2\n");
  auto tail = ReadFileTailBytes(log, 7);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, "line 2\n");
  auto whole = ReadFileTailBytes(log, 1 << 20);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(*whole, "line 1\nline 2\n");
  EXPECT_FALSE(ReadFileTailBytes(dir / "missing.log", 64).ok());
}

TEST(PrintableOneLineTest, ControlAndNonAsciiBytes) {
  EXPECT_EQ(PrintableOneLine("a\nb\rc\td\x7f\x80z"), "a|b|c?d?\?z");
}

TEST(WriteFileAtomicTest, ReplacesTheFileAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = dir.Write("verdict.json", "old");
  ASSERT_TRUE(WriteFileAtomic(path, "new", 0600).ok());
  EXPECT_EQ(ReadAll(path), "new");
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename(), "verdict.json") << "temporary file left";
  }
  EXPECT_FALSE(WriteFileAtomic(dir / "missing-dir/x", "data").ok());
}

}  // namespace
}  // namespace beaconbox
