// Descriptors over a Unix stream socket (common/base/fd_passing.h) on a socketpair of
// the test's own: they arrive with the first bytes, the receiver keeps at most what it
// asked for and closes the rest (checked through pipes: a write end left open anywhere
// keeps its read end from seeing EOF).
#include "common/base/fd_passing.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <string>
#include <vector>

namespace beaconbox {
namespace {

using namespace std::chrono_literals;

struct SocketPair {
  SocketPair() {
    int fds[2] = {-1, -1};
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    sender.Reset(fds[0]);
    receiver.Reset(fds[1]);
  }
  UniqueFd sender;
  UniqueFd receiver;
};

// A pipe whose write end is sent; the read end tells whether any copy of it is open.
struct Pipe {
  Pipe() {
    int fds[2] = {-1, -1};
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    read_end.Reset(fds[0]);
    write_end.Reset(fds[1]);
  }
  // True when no write end is open anywhere any more (the read end sees EOF).
  bool AllWriteEndsClosed() const {
    char byte;
    return ::read(read_end.get(), &byte, 1) == 0;
  }
  UniqueFd read_end;
  UniqueFd write_end;
};

bool SameFile(int a, int b) {
  struct stat one {};
  struct stat two {};
  return ::fstat(a, &one) == 0 && ::fstat(b, &two) == 0 && one.st_dev == two.st_dev &&
         one.st_ino == two.st_ino;
}

// Sends the write ends of `pipes` with "x", then closes the sender's copies, so that
// only what the receiver keeps stays open.
void SendWriteEnds(int socket, std::vector<Pipe>& pipes) {
  std::vector<int> fds;
  for (const Pipe& pipe : pipes) fds.push_back(pipe.write_end.get());
  Status sent = SendWithFds(socket, "x", fds);
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  for (Pipe& pipe : pipes) pipe.write_end.Reset();
}

TEST(FdPassingTest, DescriptorsArriveWithTheFirstBytesInOrder) {
  SocketPair pair;
  std::vector<Pipe> pipes(3);
  std::vector<int> fds;
  for (const Pipe& pipe : pipes) fds.push_back(pipe.write_end.get());
  ASSERT_TRUE(SendWithFds(pair.sender.get(), "hello", fds).ok());
  ASSERT_TRUE(SendWithFds(pair.sender.get(), " world", {}).ok());

  std::array<char, 5> first{};
  auto received = ReceiveWithFds(pair.receiver.get(), first, 8);
  ASSERT_TRUE(received.ok()) << received.error().message;
  EXPECT_EQ(std::string(first.data(), received->size), "hello");
  EXPECT_FALSE(received->fds_dropped);
  ASSERT_EQ(received->fds.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(SameFile(received->fds[i].get(), pipes[i].write_end.get())) << i;
    EXPECT_EQ(::fcntl(received->fds[i].get(), F_GETFD), FD_CLOEXEC) << i;
  }
  std::array<char, 64> rest{};
  auto plain = ReceiveWithFds(pair.receiver.get(), rest, 8);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(std::string(rest.data(), plain->size), " world");
  EXPECT_TRUE(plain->fds.empty());
  // The sender still owns its descriptors.
  EXPECT_EQ(::fcntl(pipes[0].write_end.get(), F_GETFD), FD_CLOEXEC);
}

// Sends `count` write ends, receives with room for one: only the first stays open
// here, the others are closed (by ReceiveWithFds or, past the control buffer, by the
// kernel), and fds_dropped says so.
void ExpectOnlyTheFirstOfKept(size_t count) {
  SocketPair pair;
  std::vector<Pipe> pipes(count);
  SendWriteEnds(pair.sender.get(), pipes);
  char byte;
  auto received = ReceiveWithFds(pair.receiver.get(), {&byte, 1}, 1);
  ASSERT_TRUE(received.ok()) << received.error().message;
  EXPECT_EQ(received->size, 1u);
  ASSERT_EQ(received->fds.size(), 1u);
  EXPECT_TRUE(received->fds_dropped);
  EXPECT_FALSE(pipes[0].AllWriteEndsClosed());
  for (size_t i = 1; i < count; ++i) EXPECT_TRUE(pipes[i].AllWriteEndsClosed()) << i;
  received->fds.clear();
  EXPECT_TRUE(pipes[0].AllWriteEndsClosed());
}

// One more than wanted fits in the control buffer's padding (whole 8-byte words): the
// kernel delivers it without MSG_CTRUNC, so ReceiveWithFds itself must close it.
TEST(FdPassingTest, TooManyDescriptorsTheExtrasAreClosed) { ExpectOnlyTheFirstOfKept(2); }

// More than the control buffer holds: MSG_CTRUNC, the kernel drops what did not fit,
// ReceiveWithFds closes what fit beyond the count wanted.
TEST(FdPassingTest, TruncatedControlMessageNothingBeyondTheCountStaysOpen) {
  ExpectOnlyTheFirstOfKept(5);
}

TEST(FdPassingTest, NoDescriptorsWantedAllAreClosed) {
  SocketPair pair;
  std::vector<Pipe> pipes(2);
  SendWriteEnds(pair.sender.get(), pipes);
  char byte;
  auto received = ReceiveWithFds(pair.receiver.get(), {&byte, 1}, 0);
  ASSERT_TRUE(received.ok());
  EXPECT_EQ(received->size, 1u);
  EXPECT_TRUE(received->fds.empty());
  EXPECT_TRUE(received->fds_dropped);
  for (const Pipe& pipe : pipes) EXPECT_TRUE(pipe.AllWriteEndsClosed());
}

TEST(FdPassingTest, EndOfStreamAndErrors) {
  SocketPair pair;
  ::fcntl(pair.receiver.get(), F_SETFL, O_NONBLOCK);
  char byte;
  auto empty = ReceiveWithFds(pair.receiver.get(), {&byte, 1}, 4);
  const int empty_errno = errno;
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty_errno, EAGAIN);
  EXPECT_NE(empty.error().message.find("recvmsg"), std::string::npos);
  pair.sender.Reset();
  auto closed = ReceiveWithFds(pair.receiver.get(), {&byte, 1}, 4);
  ASSERT_TRUE(closed.ok());
  EXPECT_EQ(closed->size, 0u);
  EXPECT_FALSE(ReceiveWithFds(-1, {&byte, 1}, 4).ok());
}

TEST(FdPassingTest, SendRefusesBadDescriptorListsAndTimesOutOnAFullSocket) {
  SocketPair pair;
  Pipe pipe;
  const int open_fd = pipe.write_end.get();
  Status many = SendWithFds(pair.sender.get(), "x", std::vector<int>(kMaxPassedFds + 1, open_fd));
  ASSERT_FALSE(many.ok());
  EXPECT_EQ(many.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(SendWithFds(pair.sender.get(), "x", std::vector<int>{-1}).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(SendWithFds(pair.sender.get(), "", std::vector<int>{open_fd}).error().code,
            ErrorCode::kInvalidArgument);

  // Nobody reads: a non-blocking sender fills the socket and gives up at the deadline.
  ::fcntl(pair.sender.get(), F_SETFL, O_NONBLOCK);
  const std::string big(16 << 20, 'b');
  Status full = SendWithFds(pair.sender.get(), big, std::vector<int>{open_fd},
                            std::chrono::steady_clock::now() + 200ms);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, ErrorCode::kTimeout);
  pair.receiver.Reset();
  EXPECT_FALSE(SendWithFds(pair.sender.get(), "x", {}).ok());  // EPIPE, no SIGPIPE
}

}  // namespace
}  // namespace beaconbox
