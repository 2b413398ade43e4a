#include "host/shim/guest_client.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <time.h>

#include <limits>
#include <thread>

#include "common/ttrpc/ttrpc.h"

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

TEST(GuestClientTest, BootTimelineKeepsOnlyWellFormedSteps) {
  guestapi::HelloResponse hello;
  EXPECT_EQ(DescribeGuestBoot(hello), "none");
  auto add = [&](const std::string& name, uint64_t at_us) {
    auto* step = hello.add_boot_steps();
    step->set_name(name);
    step->set_at_us(at_us);
  };
  add("initramfs-unpacked", 812400);
  add("evil\nname", 1);  // not [a-z0-9-]
  add("\x1b[31m", 1);
  add(std::string(33, 'a'), 1);               // too long
  add("late", uint64_t{3600} * 1000 * 1000);  // an hour or more
  add("agent-listening", 2100000);
  EXPECT_EQ(DescribeGuestBoot(hello), "initramfs-unpacked 812.4 ms, agent-listening 2100.0 ms");
  for (int i = 0; i < 100; ++i) add("step", 1000);
  size_t commas = 0;
  for (char c : DescribeGuestBoot(hello)) commas += c == ',';
  EXPECT_EQ(commas, 15u);  // 16 steps at most
}

constexpr int64_t kHostNow = int64_t{1795000000} * 1000000000;

TEST(RefreshReplyTest, AcceptsTheSentBytesAndAClockNearTheHosts) {
  guestapi::RefreshResponse reply;
  reply.set_entropy_bytes_added(64);
  reply.set_unix_time_ns(kHostNow + 2000000);
  EXPECT_TRUE(CheckRefreshReply(reply, 64, kHostNow, kHostNow + 1000000).ok());
}

TEST(RefreshReplyTest, RefusesAWrongByteCount) {
  guestapi::RefreshResponse reply;
  reply.set_entropy_bytes_added(4000000000u);
  reply.set_unix_time_ns(kHostNow);
  Status status = CheckRefreshReply(reply, 64, kHostNow, kHostNow);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("random bytes"), std::string::npos);
}

TEST(RefreshReplyTest, RefusesAClockFarFromTheHosts) {
  for (int64_t guest : {int64_t{0}, kHostNow - 3000000000, kHostNow + 60000000000,
                        std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()}) {
    guestapi::RefreshResponse reply;
    reply.set_entropy_bytes_added(64);
    reply.set_unix_time_ns(guest);
    EXPECT_FALSE(CheckRefreshReply(reply, 64, kHostNow, kHostNow + 1000000).ok()) << guest;
  }
}

// RefreshGuest against a guest that answers Refresh (as vminitd does) with its boot
// step "refreshed": the shim hands the step on (it logs it in the guest's timeline,
// which e2e_beaconbox_template reads back for each clone); a guest without the call
// leaves the VM unrefreshed and says so.
TEST(RefreshGuestTest, HandsOnTheGuestsRefreshedStep) {
  for (bool implemented : {true, false}) {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    ttrpc::Server server;
    if (implemented) {
      ttrpc::RegisterUnaryProto<guestapi::RefreshRequest, guestapi::RefreshResponse>(
          server, "beaconbox.guest.v1.Guest", "Refresh",
          [](ttrpc::ServerContext&, const guestapi::RefreshRequest& request,
             guestapi::RefreshResponse* reply) {
            struct timespec now {};
            ::clock_gettime(CLOCK_REALTIME, &now);
            reply->set_entropy_bytes_added(static_cast<uint32_t>(request.entropy().size()));
            reply->set_unix_time_ns(int64_t{now.tv_sec} * 1000000000 + now.tv_nsec);
            reply->set_refreshed_at_us(2345600);
            return ttrpc::RpcStatus{};
          });
    }
    std::thread serving([&server, fd = fds[1]] { server.ServeConnection(UniqueFd(fd)); });
    {
      GuestClient guest{UniqueFd(fds[0])};
      bool refreshed = false;
      uint64_t refreshed_at_us = 1;
      Status status =
          RefreshGuest(guest, std::chrono::milliseconds(5000), &refreshed, &refreshed_at_us);
      EXPECT_TRUE(status.ok()) << status.error().message;
      EXPECT_EQ(refreshed, implemented);
      EXPECT_EQ(refreshed_at_us, implemented ? 2345600u : 0u);
      guest.Close();
    }
    serving.join();
  }
}

}  // namespace
}  // namespace beaconbox::shim
