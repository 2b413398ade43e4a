#include "host/shim/port_forward.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

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

// A connection no NAT rule redirected has no original destination to read.
TEST(PortForwardTest, AConnectionNothingRedirectedHasNoOriginalPort) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  socklen_t size = sizeof(address);
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &size);
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted);
  // Without conntrack's NAT entry the kernel has nothing to say (0), or, when
  // conntrack tracks it, the port dialed, which is the listener's own.
  const uint16_t original = OriginalPortOf(accepted.get());
  EXPECT_TRUE(original == 0 || original == ntohs(address.sin_port)) << original;
}

}  // namespace
}  // namespace beaconbox::shim
