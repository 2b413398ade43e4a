// QmpClient against a QMP server played by the test on a Unix socket: a command sent
// with a descriptor (getfd, for a clone's TAP in another network namespace) carries
// it as SCM_RIGHTS with its bytes; plain commands carry none.
#include "plugins/vmm-qemu/qmp.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/base/fd_passing.h"
#include "tests/plugins/common/unix_socket.h"

namespace beaconbox::qemu {
namespace {

using namespace std::chrono_literals;

// What the server got: each command line, and the descriptors that came with it.
struct Received {
  std::string line;
  std::vector<UniqueFd> fds;
};

// Reads one line; descriptors that arrive with its bytes are collected.
bool ReadCommand(int fd, Received* out) {
  out->line.clear();
  for (;;) {
    char byte;
    auto received = ReceiveWithFds(fd, {&byte, 1}, 4);
    if (!received.ok() || received->size != 1) return false;
    for (UniqueFd& descriptor : received->fds) out->fds.push_back(std::move(descriptor));
    if (byte == '\n') return true;
    out->line.push_back(byte);
  }
}

TEST(QmpClientTest, CallWithFdSendsTheDescriptorWithTheCommand) {
  char pattern[] = "/tmp/bbx-qmp-test.XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  const std::string path = dir + "/qmp.sock";
  UniqueFd listener = plugins::testing::ListenUnix(path);
  ASSERT_TRUE(listener);

  std::vector<Received> received;
  std::thread server([&] {
    UniqueFd peer(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!peer) return;
    auto say = [&](const std::string& line) {
      (void)!::write(peer.get(), line.data(), line.size());
    };
    say(R"({"QMP": {"version": {}, "capabilities": []}})"
        "\n");
    for (;;) {
      Received command;
      if (!ReadCommand(peer.get(), &command)) return;
      received.push_back(std::move(command));
      say("{\"return\": {}}\n");
    }
  });

  // The descriptor to hand over: a file the test can recognise by inode.
  const std::string file = dir + "/tap-standin";
  UniqueFd sent(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(sent);
  {
    auto client = QmpClient::Connect(path, 5s);
    ASSERT_TRUE(client.ok()) << client.error().message;
    auto with_fd = client->CallWithFd("getfd", R"({"fdname":"tap-net0"})", sent.get(), 5s);
    ASSERT_TRUE(with_fd.ok()) << with_fd.error().message;
    auto plain = client->Call("netdev_add", R"({"type":"tap","id":"net0","fd":"tap-net0"})", 5s);
    ASSERT_TRUE(plain.ok()) << plain.error().message;
  }  // the client closes its socket: the server ends
  server.join();

  ASSERT_EQ(received.size(), 3u);  // qmp_capabilities, getfd, netdev_add
  EXPECT_TRUE(received[0].fds.empty());
  EXPECT_EQ(received[1].line, R"({"arguments":{"fdname":"tap-net0"},"execute":"getfd"})");
  ASSERT_EQ(received[1].fds.size(), 1u);
  struct stat sent_stat {
  }, got_stat{};
  ASSERT_EQ(::fstat(sent.get(), &sent_stat), 0);
  ASSERT_EQ(::fstat(received[1].fds[0].get(), &got_stat), 0);
  EXPECT_EQ(got_stat.st_ino, sent_stat.st_ino);
  EXPECT_EQ(got_stat.st_dev, sent_stat.st_dev);
  EXPECT_TRUE(received[2].fds.empty());
  EXPECT_NE(received[2].line.find("\"fd\":\"tap-net0\""), std::string::npos);
  // The caller's descriptor stays open (it closes it once QEMU has its copy).
  EXPECT_EQ(::fcntl(sent.get(), F_GETFD), FD_CLOEXEC);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace beaconbox::qemu
