// bbx-cri's WebSocket client against a scripted server on a socketpair: the handshake
// it sends and the answers it refuses, client frames masked, server frames joined,
// pings answered, close, and a bound on what the server may make it hold.
#include "websocket.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace beaconbox::cri_client {
namespace {

struct Pair {
  UniqueFd client;
  UniqueFd server;
};

Pair MakePair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  return Pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

void WriteAll(int fd, const std::string& bytes) {
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
}

// Reads the client's request head (up to the blank line).
std::string ReadHead(int fd) {
  std::string head;
  char c;
  while (head.find("\r\n\r\n") == std::string::npos && ::read(fd, &c, 1) == 1) head += c;
  return head;
}

std::string ReadExactly(int fd, size_t count) {
  std::string out(count, '\0');
  size_t got = 0;
  while (got < count) {
    ssize_t n = ::read(fd, out.data() + got, count - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

std::string Frame(uint8_t first, const std::string& payload) {
  std::string frame(1, static_cast<char>(first));
  frame += static_cast<char>(payload.size());  // < 126 here
  return frame + payload;
}

const std::string kAccept =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: x\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n";

TEST(StreamUrl, ParsesContainerdsUrlsAndRefusesOthers) {
  auto url = ParseStreamUrl("http://127.0.0.1:41234/exec/AbC-d");
  ASSERT_TRUE(url.ok()) << url.error().message;
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, 41234);
  EXPECT_EQ(url->target, "/exec/AbC-d");
  auto v6 = ParseStreamUrl("http://[::1]:80/portforward/t");
  ASSERT_TRUE(v6.ok()) << v6.error().message;
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 80);
  for (const char* bad : {"https://127.0.0.1:1/x", "http://127.0.0.1/x", "http://127.0.0.1:0/x",
                          "http://127.0.0.1:70000/x", "http://[::1/x", "ftp://a:1/"}) {
    auto parsed = ParseStreamUrl(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_NE(parsed.error().message.find("streaming URL"), std::string::npos) << bad;
    }
  }
}

TEST(WebSocket, HandshakeAsksForTheProtocolAndTakesTheUpgrade) {
  Pair pair = MakePair();
  std::string head;
  std::thread server([&] {
    head = ReadHead(pair.server.get());
    WriteAll(pair.server.get(), kAccept);
  });
  auto socket = WebSocket::Handshake(std::move(pair.client), "127.0.0.1:9", "/exec/tok",
                                     "v4.channel.k8s.io", 5000);
  server.join();
  ASSERT_TRUE(socket.ok()) << socket.error().message;
  EXPECT_EQ(head.rfind("GET /exec/tok HTTP/1.1\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("\r\nUpgrade: websocket\r\n"), std::string::npos);
  EXPECT_NE(head.find("\r\nSec-WebSocket-Version: 13\r\n"), std::string::npos);
  EXPECT_NE(head.find("\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n"), std::string::npos);
  EXPECT_NE(head.find("\r\nSec-WebSocket-Key: "), std::string::npos);
}

TEST(WebSocket, RefusesAnswersThatAreNoUpgradeToTheProtocol) {
  const std::string answers[] = {
      "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n"
      "Sec-WebSocket-Protocol: channel.k8s.io\r\n\r\n",
      "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n",
      "HTTP/1.1 101 Switching",  // then the server closes
  };
  for (const std::string& answer : answers) {
    Pair pair = MakePair();
    std::thread server([&] {
      ReadHead(pair.server.get());
      WriteAll(pair.server.get(), answer);
      pair.server.Reset();
    });
    auto socket =
        WebSocket::Handshake(std::move(pair.client), "h:1", "/", "v4.channel.k8s.io", 5000);
    server.join();
    EXPECT_FALSE(socket.ok()) << answer;
  }
}

TEST(WebSocket, MasksFramesJoinsFragmentsAnswersPingsAndEndsOnClose) {
  Pair pair = MakePair();
  int server_fd = pair.server.get();
  std::string sent_frame, pong_frame, close_frame;
  std::thread server([&] {
    ReadHead(server_fd);
    WriteAll(server_fd, kAccept);
    // The client's binary message "\x01hi": FIN|binary, MASK|3, a 4-byte key, 3 bytes.
    sent_frame = ReadExactly(server_fd, 2 + 4 + 3);
    // A message in two fragments with a ping between them, then a close.
    WriteAll(server_fd,
             Frame(0x02, std::string("\x01", 1) + "hel") + Frame(0x89, "p!") + Frame(0x80, "lo"));
    pong_frame = ReadExactly(server_fd, 2 + 4 + 2);
    WriteAll(server_fd, Frame(0x88, "\x03\xe8"));
    close_frame = ReadExactly(server_fd, 2 + 4 + 2);
  });
  auto socket = WebSocket::Handshake(std::move(pair.client), "h:1", "/", "v4.channel.k8s.io", 5000);
  ASSERT_TRUE(socket.ok()) << socket.error().message;
  ASSERT_TRUE(socket->SendBinary(std::string("\x01hi", 3)).ok());
  auto message = socket->Receive(5000);
  ASSERT_TRUE(message.ok()) << message.error().message;
  ASSERT_TRUE(message->has_value());
  EXPECT_EQ(**message, std::string("\x01hello", 6));
  auto closed = socket->Receive(5000);
  ASSERT_TRUE(closed.ok()) << closed.error().message;
  EXPECT_FALSE(closed->has_value());
  server.join();

  ASSERT_EQ(sent_frame.size(), 9u);
  EXPECT_EQ(static_cast<uint8_t>(sent_frame[0]), 0x82);
  EXPECT_EQ(static_cast<uint8_t>(sent_frame[1]), 0x80 | 3);
  std::string unmasked;
  for (size_t i = 0; i < 3; ++i)
    unmasked += static_cast<char>(sent_frame[6 + i] ^ sent_frame[2 + i]);
  EXPECT_EQ(unmasked, std::string("\x01hi", 3));
  ASSERT_EQ(pong_frame.size(), 8u);
  EXPECT_EQ(static_cast<uint8_t>(pong_frame[0]), 0x8a);
  std::string pong;
  for (size_t i = 0; i < 2; ++i) pong += static_cast<char>(pong_frame[6 + i] ^ pong_frame[2 + i]);
  EXPECT_EQ(pong, "p!");
  ASSERT_EQ(close_frame.size(), 8u);
  EXPECT_EQ(static_cast<uint8_t>(close_frame[0]), 0x88);
}

TEST(WebSocket, RefusesAMessageOverItsBoundAndTimesOut) {
  Pair pair = MakePair();
  int server_fd = pair.server.get();
  std::thread server([&] {
    ReadHead(server_fd);
    WriteAll(server_fd, kAccept);
    // A binary frame claiming 2^40 bytes: refused from its header alone.
    std::string frame("\x82\x7f", 2);
    for (int shift = 56; shift >= 0; shift -= 8) {
      frame += static_cast<char>((uint64_t{1} << 40 >> shift) & 0xff);
    }
    WriteAll(server_fd, frame);
  });
  auto socket = WebSocket::Handshake(std::move(pair.client), "h:1", "/", "v4.channel.k8s.io", 5000);
  server.join();
  ASSERT_TRUE(socket.ok()) << socket.error().message;
  auto message = socket->Receive(5000);
  ASSERT_FALSE(message.ok());
  EXPECT_EQ(message.error().code, ErrorCode::kExhausted) << message.error().message;

  Pair quiet = MakePair();
  std::thread quiet_server([&] {
    ReadHead(quiet.server.get());
    WriteAll(quiet.server.get(), kAccept);
  });
  auto idle = WebSocket::Handshake(std::move(quiet.client), "h:1", "/", "v4.channel.k8s.io", 5000);
  quiet_server.join();
  ASSERT_TRUE(idle.ok()) << idle.error().message;
  auto nothing = idle->Receive(100);
  ASSERT_FALSE(nothing.ok());
  EXPECT_EQ(nothing.error().code, ErrorCode::kTimeout);
}

}  // namespace
}  // namespace beaconbox::cri_client
