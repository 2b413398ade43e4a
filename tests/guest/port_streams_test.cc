#include "guest/vminitd/port_streams.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace beaconbox::guest {
namespace {

using namespace std::chrono_literals;

// A listener on 127.0.0.1 with a port the kernel picked.
struct Listener {
  UniqueFd fd;
  uint16_t port = 0;
};

Listener Listen() {
  Listener listener;
  listener.fd = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(listener.fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(::listen(listener.fd.get(), 128), 0);
  socklen_t size = sizeof(address);
  ::getsockname(listener.fd.get(), reinterpret_cast<sockaddr*>(&address), &size);
  listener.port = ntohs(address.sin_port);
  return listener;
}

std::string ReadSome(int fd) {
  char buffer[256];
  ssize_t n = ::read(fd, buffer, sizeof(buffer));
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string();
}

TEST(PortStreamsTest, RefusesPortsOutsideTheTcpRange) {
  PortStreams streams;
  for (uint32_t port : {0u, 65536u, 0xffffffffu}) {
    auto id = streams.Open(port);
    ASSERT_FALSE(id.ok()) << port;
    EXPECT_EQ(id.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(id.error().message.find(std::to_string(port)), std::string::npos);
  }
}

TEST(PortStreamsTest, NothingListeningNamesThePort) {
  uint16_t port;
  {
    Listener gone = Listen();  // a port that was free a moment ago, closed again
    port = gone.port;
  }
  PortStreams streams;
  auto id = streams.Open(port);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(id.error().message.find("nothing listens on port " + std::to_string(port)),
            std::string::npos);
}

TEST(PortStreamsTest, CarriesBytesBothWaysAndEndsEachDirectionApart) {
  Listener listener = Listen();
  PortStreams streams;
  auto id = streams.Open(listener.port);
  ASSERT_TRUE(id.ok()) << id.error().message;
  UniqueFd peer(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(peer);
  auto stream = streams.Find(*id);
  ASSERT_TRUE(stream.ok());

  auto written = stream->writer->Write("ping", 1s);
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(*written, 4u);
  EXPECT_EQ(ReadSome(peer.get()), "ping");

  ASSERT_EQ(::write(peer.get(), "pong", 4), 4);
  auto chunk = stream->reader->Read(1024, 5s);
  ASSERT_TRUE(chunk.ok());
  EXPECT_EQ(chunk->data, "pong");
  EXPECT_FALSE(chunk->eof);

  // The host's end only: the peer reads EOF, and can still answer.
  ASSERT_TRUE(streams.Close(*id, /*write_only=*/true).ok());
  EXPECT_EQ(ReadSome(peer.get()), "");
  ASSERT_EQ(::write(peer.get(), "bye", 3), 3);
  peer.Reset();
  std::string rest;
  for (int i = 0; i < 10; ++i) {
    chunk = stream->reader->Read(1024, 5s);
    ASSERT_TRUE(chunk.ok());
    rest += chunk->data;
    if (chunk->eof) break;
  }
  EXPECT_EQ(rest, "bye");
  EXPECT_TRUE(chunk->eof);

  ASSERT_TRUE(streams.Close(*id, false).ok());
  auto found = streams.Find(*id);
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(found.error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(streams.Close(*id, false).ok());  // idempotent
}

// A read that waits for the connection's bytes must not hold up a write to it (the
// two directions are apart: one StdioPipe would serialize them).
TEST(PortStreamsTest, AWaitingReadDoesNotHoldUpAWrite) {
  Listener listener = Listen();
  PortStreams streams;
  auto id = streams.Open(listener.port);
  ASSERT_TRUE(id.ok());
  UniqueFd peer(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  auto stream = streams.Find(*id);
  ASSERT_TRUE(stream.ok());
  std::thread reader([&] {
    auto chunk = stream->reader->Read(64, 20s);
    ASSERT_TRUE(chunk.ok());
    EXPECT_EQ(chunk->data, "late");
  });
  std::this_thread::sleep_for(100ms);  // the read is waiting by now
  auto written = stream->writer->Write("x", 100ms);
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(*written, 1u);
  EXPECT_EQ(ReadSome(peer.get()), "x");
  ASSERT_EQ(::write(peer.get(), "late", 4), 4);
  reader.join();
}

TEST(PortStreamsTest, AtMostSoManyOpenAtOnce) {
  Listener listener = Listen();
  PortStreams streams;
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < PortStreams::kMaxStreams; ++i) {
    auto id = streams.Open(listener.port);
    ASSERT_TRUE(id.ok()) << i << ": " << id.error().message;
    ids.push_back(*id);
  }
  auto over = streams.Open(listener.port);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, ErrorCode::kExhausted);
  ASSERT_TRUE(streams.Close(ids.front(), false).ok());
  EXPECT_TRUE(streams.Open(listener.port).ok());
  streams.CloseAll();
  EXPECT_FALSE(streams.Find(ids.back()).ok());
}

}  // namespace
}  // namespace beaconbox::guest
