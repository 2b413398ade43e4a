#include "host/shim/guest_client.h"

#include <gtest/gtest.h>

namespace beaconbox::shim {
namespace {

// A hostile guest's error text (tests/guest/hostile_agent sends this shape through
// containerd): almost 4 MiB of lines with escape sequences and bytes that are not
// UTF-8. What reaches containerd and the log is one bounded printable line.
TEST(GuestClientTest, GuestErrorTextBecomesOneBoundedPrintableLine) {
  std::string line = "\x1b[31mhostile guest error\r\n\xff\xfe";
  std::string text;
  while (text.size() < (4u << 20) - 4096) text += line;
  Error error = ErrorFromRpc({ttrpc::Code::kUnknown, text}, "guest Pids");
  EXPECT_LE(error.message.size(), std::string("guest Pids: ").size() + 1024);
  EXPECT_EQ(error.message.rfind("guest Pids: ", 0), 0u);
  for (char c : error.message) {
    auto byte = static_cast<unsigned char>(c);
    ASSERT_TRUE(byte >= 0x20 && byte <= 0x7e) << "byte " << int(byte) << " in " << error.message;
  }
  EXPECT_NE(error.message.find("hostile guest error"), std::string::npos);
}

TEST(GuestClientTest, GuestErrorCodeIsKept) {
  Error error = ErrorFromRpc({ttrpc::Code::kNotFound, "no such process"}, "guest Kill");
  EXPECT_EQ(error.code, ErrorCode::kNotFound);
  EXPECT_EQ(error.message, "guest Kill: no such process");
}

}  // namespace
}  // namespace beaconbox::shim
