#include "host/shim/port_forward.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "common/base/unique_fd.h"
#include "tests/plugins/net-bridge/test_util.h"

namespace beaconbox::shim {
namespace {

TEST(PortForwardTest, RulesetRedirectsLoopbackTcpButNotTheRelaysOwnPorts) {
  const std::string ruleset = PortForwardRuleset(40001, 40002);
  EXPECT_NE(ruleset.find("type nat hook output"), std::string::npos);
  EXPECT_NE(ruleset.find("ip daddr 127.0.0.1 tcp dport != 40001 redirect to :40001"),
            std::string::npos);
  EXPECT_NE(ruleset.find("ip6 daddr ::1 tcp dport != 40002 redirect to :40002"), std::string::npos);
  // Replaces a predecessor's table rather than adding rules to it.
  EXPECT_LT(ruleset.find("delete table inet beaconbox_portfwd"), ruleset.find("chain output"));
}

TEST(PortForwardTest, WithoutIpv6OnlyTheIpv4Rule) {
  const std::string ruleset = PortForwardRuleset(40001, 0);
  EXPECT_EQ(ruleset.find("ip6"), std::string::npos);
  EXPECT_NE(ruleset.find("redirect to :40001"), std::string::npos);
}

// The ruleset and SO_ORIGINAL_DST with real nftables, in a network namespace each
// test creates (root; skipped where it cannot be made): a client dialling
// localhost:8080 lands on the relay's listener, which reads 8080 back. The kernel
// frees the namespace with its table once the test has left it and closed its
// sockets, also when the test fails (NetnsTest).
class PortForwardNetnsTest : public net::testing::NetnsTest {
 protected:
  void SetUp() override {
    // Probed in a child first: the fixture's own unshare on this thread must not fail.
    pid_t child = ::fork();
    ASSERT_GE(child, 0) << std::strerror(errno);
    if (child == 0) ::_exit(::unshare(CLONE_NEWNET) == 0 ? 0 : 1);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      GTEST_SKIP() << "cannot make a network namespace here (unshare(CLONE_NEWNET) needs root)";
    }
    if (::access("/usr/sbin/nft", X_OK) != 0 && ::access("/sbin/nft", X_OK) != 0) {
      GTEST_SKIP() << "nft not installed (Debian's nftables package)";
    }
    NetnsTest::SetUp();
    int code = -1;
    std::string out = net::testing::Shell("ip link set lo up", &code);
    ASSERT_EQ(code, 0) << out;
  }

  // Loads `commands` with nft in this test's namespace; its output when it failed.
  static std::string Nft(const std::string& commands, int* code) {
    return net::testing::Shell("printf '%s' '" + commands + "' | nft -f -", code);
  }
};

constexpr uint16_t kRelayPort4 = 40001;
constexpr uint16_t kRelayPort6 = 40002;
constexpr uint16_t kTargetPort = 8080;

sockaddr_storage Address(int family, const char* address, uint16_t port) {
  sockaddr_storage storage{};
  if (family == AF_INET) {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&storage);
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    EXPECT_EQ(::inet_pton(AF_INET, address, &in4->sin_addr), 1);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    EXPECT_EQ(::inet_pton(AF_INET6, address, &in6->sin6_addr), 1);
  }
  return storage;
}

socklen_t LengthOf(int family) {
  return family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
}

UniqueFd Listen(int family, const char* address, uint16_t port) {
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd);
  int one = 1;  // the relay port's earlier connections may sit in TIME_WAIT
  EXPECT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
  if (family == AF_INET6) ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  sockaddr_storage storage = Address(family, address, port);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&storage), LengthOf(family)), 0)
      << address << " port " << port << ": " << std::strerror(errno);
  EXPECT_EQ(::listen(fd.get(), 4), 0);
  return fd;
}

// Connects to `address`:`port`; 0 or the errno of connect.
int Dial(int family, const char* address, uint16_t port, UniqueFd* out) {
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage storage = Address(family, address, port);
  int rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&storage), LengthOf(family));
  *out = std::move(fd);
  return rc == 0 ? 0 : errno;
}

TEST_F(PortForwardNetnsTest, LoopbackConnectionsReachTheRelayWithTheirPort) {
  int code = -1;
  std::string out = Nft(PortForwardRuleset(kRelayPort4, kRelayPort6), &code);
  ASSERT_EQ(code, 0) << out;

  struct Case {
    int family;
    const char* loopback;
    uint16_t relay_port;
  };
  for (const Case& c :
       {Case{AF_INET, "127.0.0.1", kRelayPort4}, Case{AF_INET6, "::1", kRelayPort6}}) {
    SCOPED_TRACE(c.loopback);
    UniqueFd listener = Listen(c.family, c.loopback, c.relay_port);
    ASSERT_TRUE(listener);
    // Any port dialled on loopback lands on the relay, which reads the port back.
    UniqueFd client;
    ASSERT_EQ(Dial(c.family, c.loopback, kTargetPort, &client), 0);
    UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(accepted) << std::strerror(errno);
    EXPECT_EQ(OriginalPortOf(accepted.get()), kTargetPort);
    // The relay's own port is left alone (no loop): dialled directly, it is itself.
    UniqueFd direct;
    ASSERT_EQ(Dial(c.family, c.loopback, c.relay_port, &direct), 0);
    UniqueFd accepted_direct(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(accepted_direct) << std::strerror(errno);
    EXPECT_EQ(OriginalPortOf(accepted_direct.get()), c.relay_port);
  }

  // Loading the ruleset again (a shim started again on the same pod) replaces the
  // table instead of adding rules to it.
  out = Nft(PortForwardRuleset(kRelayPort4, kRelayPort6), &code);
  ASSERT_EQ(code, 0) << out;
  out = net::testing::Shell("nft list table inet beaconbox_portfwd | grep -c redirect", &code);
  EXPECT_EQ(out, "2\n");

  // Without the table nothing is redirected: the port nobody listens on is refused.
  out = Nft("delete table inet beaconbox_portfwd\n", &code);
  ASSERT_EQ(code, 0) << out;
  UniqueFd listener = Listen(AF_INET, "127.0.0.1", kRelayPort4);
  UniqueFd client;
  EXPECT_EQ(Dial(AF_INET, "127.0.0.1", kTargetPort, &client), ECONNREFUSED);
}

// The relay itself: Start listens in the namespace and installs the table there,
// redirecting to its own listeners; Stop removes it. (No connection is made: that
// needs a guest answering PortOpen, which e2e_cri's port-forward checks cover.)
TEST_F(PortForwardNetnsTest, RelayInstallsItsRedirectAndStopRemovesIt) {
  const std::string netns_path =
      "/proc/self/task/" + std::to_string(::gettid()) + "/ns/net";  // this test's namespace
  auto relay = PortForwardRelay::Start(netns_path, nullptr, "pod-under-test");
  ASSERT_TRUE(relay.ok()) << relay.error().message;
  int code = -1;
  std::string table = net::testing::Shell("nft list table inet beaconbox_portfwd", &code);
  ASSERT_EQ(code, 0) << table;
  std::string listening = net::testing::Shell("ss -Hltn", &code);
  ASSERT_EQ(code, 0) << listening;
  // Each "redirect to :PORT" names a port the relay listens on in this namespace.
  size_t redirects = 0;
  for (size_t at = table.find("redirect to :"); at != std::string::npos;
       at = table.find("redirect to :", at + 1)) {
    const std::string port =
        table.substr(at + 13, table.find_first_not_of("0123456789", at + 13) - at - 13);
    EXPECT_NE(listening.find(":" + port + " "), std::string::npos) << port << " in\n" << listening;
    ++redirects;
  }
  EXPECT_GE(redirects, 1u) << table;
  (*relay)->Stop();
  net::testing::Shell("nft list table inet beaconbox_portfwd", &code);
  EXPECT_NE(code, 0) << "the table is still there after Stop";
  (*relay)->Stop();  // idempotent
}

}  // namespace
}  // namespace beaconbox::shim
