// configured_netns (CRI has run CNI in the pod's namespace): reading what CNI left on
// eth0 (netns_config.h) and CniNetwork coupling a TAP to it without running a list.
// Each test in a network namespace of its own (needs root), with eth0 one end of a
// veth pair there, set up with ip(8) as CNI's bridge plugin would.
#include "plugins/net-cni/netns_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "plugins/net-cni/cni_network.h"
#include "plugins/net-cni/tap_redirect.h"
#include "tests/plugins/net-cni/netns_fixture.h"

namespace beaconbox::cni {
namespace {

namespace fs = std::filesystem;

class NetnsConfigTest : public NetnsFixture {
 protected:
  NetnsConfigTest() : NetnsFixture("net-cni-netns-") {}
  // eth0 as CNI's bridge plugin leaves it: a veth end with an address, a link route
  // and a default route through the gateway; a second veth with routes of its own.
  void MakeConfiguredEth0() {
    ASSERT_EQ(
        Shell("ip link add eth0 type veth peer name peer0 && "
              "ip link set eth0 address 0a:58:0a:4f:00:07 mtu 1400 && "
              "ip link set eth0 up && ip link set peer0 up && "
              "ip addr add 10.79.0.7/24 dev eth0 && "
              "ip route add 10.80.0.0/16 dev eth0 && "
              "ip route add default via 10.79.0.1 dev eth0 && "
              "ip link add other0 type veth peer name other1 && ip link set other0 up && "
              "ip addr add 10.81.0.2/24 dev other0 && ip route add 10.82.0.0/16 via 10.81.0.1"),
        0);
  }
  Result<InterfaceConfig> Read(const std::string& ifname = "eth0") {
    Result<InterfaceConfig> config = MakeError(ErrorCode::kInternal, "not run");
    Status entered = In([&] {
      config = ReadInterfaceConfig(ifname);
      return Status::Ok();
    });
    EXPECT_TRUE(entered.ok());
    return config;
  }
};

TEST_F(NetnsConfigTest, ReadsAddressesRoutesMtuAndMacOfEth0) {
  MakeConfiguredEth0();
  auto config = Read();
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->mac, "0a:58:0a:4f:00:07");
  EXPECT_EQ(config->mtu, 1400u);
  ASSERT_EQ(config->addresses.size(), 1u);
  EXPECT_EQ(config->addresses[0].address, "10.79.0.7");
  EXPECT_EQ(config->addresses[0].prefix_length, 24u);
  // The link route before the default route; the address's own prefix route (the
  // kernel's) and other0's routes are not eth0's to pass on.
  ASSERT_EQ(config->routes.size(), 2u);
  EXPECT_EQ(config->routes[0].destination, "10.80.0.0/16");
  EXPECT_EQ(config->routes[0].gateway, "");
  EXPECT_EQ(config->routes[1].destination, "0.0.0.0/0");
  EXPECT_EQ(config->routes[1].gateway, "10.79.0.1");
}

TEST_F(NetnsConfigTest, NoEth0IsOneClearError) {
  auto config = Read();
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(config.error().message,
            "there is no eth0 (CNI makes it: was CNI run in this network namespace?)");
}

TEST_F(NetnsConfigTest, AddresslessEth0IsRefusedClearly) {
  ASSERT_EQ(Shell("ip link add eth0 type veth peer name peer0 && ip link set eth0 up"), 0);
  auto config = Read();
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(config.error().message.find("eth0 has neither an IPv4 nor a global IPv6 address"),
            std::string::npos)
      << config.error().message;
}

// Dual stack as CNI's bridge plugin with a host-local IPv6 range leaves eth0: the
// global IPv6 address and the IPv6 default route come after the IPv4 ones; the
// link-local address, a route learnt from a router advertisement and the kernel's
// prefix routes do not come at all.
TEST_F(NetnsConfigTest, ReadsGlobalIpv6AddressesAndTheIpv6DefaultRoute) {
  MakeConfiguredEth0();
  ASSERT_EQ(Shell("ip addr add fd00:79::7/64 dev eth0 nodad && "
                  "ip addr add fe80::aa:7/64 dev eth0 nodad && "
                  "ip -6 route add fd00:80::/48 dev eth0 && "
                  "ip -6 route add fd00:99::/48 via fe80::1 dev eth0 proto ra && "
                  "ip -6 route add default via fd00:79::1 dev eth0"),
            0);
  auto config = Read();
  ASSERT_TRUE(config.ok()) << config.error().message;
  ASSERT_EQ(config->addresses.size(), 2u);
  EXPECT_EQ(config->addresses[0].address, "10.79.0.7");
  EXPECT_EQ(config->addresses[1].address, "fd00:79::7");
  EXPECT_EQ(config->addresses[1].prefix_length, 64u);
  ASSERT_EQ(config->routes.size(), 4u);
  EXPECT_EQ(config->routes[0].destination, "10.80.0.0/16");
  EXPECT_EQ(config->routes[1].destination, "fd00:80::/48");
  EXPECT_EQ(config->routes[1].gateway, "");
  EXPECT_EQ(config->routes[2].destination, "0.0.0.0/0");
  EXPECT_EQ(config->routes[3].destination, "::/0");
  EXPECT_EQ(config->routes[3].gateway, "fd00:79::1");
}

TEST_F(NetnsConfigTest, AnIpv6OnlyEth0IsReadToo) {
  ASSERT_EQ(Shell("ip link add eth0 type veth peer name peer0 && ip link set eth0 up && "
                  "ip link set peer0 up && ip addr add fd00:79::7/64 dev eth0 nodad && "
                  "ip -6 route add default via fd00:79::1 dev eth0"),
            0);
  auto config = Read();
  ASSERT_TRUE(config.ok()) << config.error().message;
  ASSERT_EQ(config->addresses.size(), 1u);
  EXPECT_EQ(config->addresses[0].address, "fd00:79::7");
  ASSERT_EQ(config->routes.size(), 1u);
  EXPECT_EQ(config->routes[0].destination, "::/0");
  EXPECT_EQ(config->routes[0].gateway, "fd00:79::1");
}

class ConfiguredNetnsTest : public NetnsConfigTest {
 protected:
  CniNetwork Network() {
    CniConfig config;
    config.configured_netns = true;
    config.conf_dir = (dir_ / "no-conf").string();  // never read
    config.bin_dirs = {(dir_ / "no-bin").string()};
    config.cache_dir = (dir_ / "cache").string();
    config.netns_dir = (dir_ / "netns").string();
    return CniNetwork(config, nullptr);
  }
  plugin::v1::NetworkAttachRequest Request(const std::string& netns) {
    plugin::v1::NetworkAttachRequest request;
    request.set_namespace_("k8s.io");
    request.set_container_id("pod1");
    request.set_netns_path(netns);
    return request;
  }
};

TEST_F(ConfiguredNetnsTest, CouplesATapToEth0AndDetachLeavesEth0AndTheNamespace) {
  MakeConfiguredEth0();
  CniNetwork network = Network();
  auto attached = network.Attach(Request(netns_));
  ASSERT_TRUE(attached.ok()) << attached.error().message;
  EXPECT_EQ(attached->tap_name(), "tap0");
  EXPECT_EQ(attached->netns_path(), netns_);
  EXPECT_EQ(attached->mac(), "0a:58:0a:4f:00:07");
  EXPECT_EQ(attached->mtu(), 1400u);
  ASSERT_EQ(attached->addresses_size(), 1);
  EXPECT_EQ(attached->addresses(0).address(), "10.79.0.7");
  EXPECT_EQ(attached->addresses(0).prefix_length(), 24u);
  ASSERT_EQ(attached->routes_size(), 2);
  EXPECT_EQ(attached->routes(1).destination(), "0.0.0.0/0");
  EXPECT_EQ(attached->routes(1).gateway(), "10.79.0.1");
  EXPECT_TRUE(In([] { return CheckRedirectedTap("eth0", "tap0", ProcessTapOwner()); }).ok());
  // No conflist was looked for; the lease shows the address CNI gave.
  auto leases = network.ListLeases();
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->leases_size(), 1);
  EXPECT_EQ(leases->leases(0).address(), "10.79.0.7/24");

  ASSERT_TRUE(network.Detach("k8s.io", "pod1").ok());
  EXPECT_FALSE(fs::exists(dir_ / "cache" / "k8s.io--pod1.json"));
  EXPECT_TRUE(fs::exists(netns_));
  // The TAP and eth0's ingress qdisc went; eth0 and its address stay (CRI's).
  EXPECT_NE(Shell("ip link show tap0 >/dev/null 2>&1"), 0);
  EXPECT_NE(Shell("tc qdisc show dev eth0 | grep -q ingress"), 0);
  EXPECT_EQ(Shell("ip -4 addr show dev eth0 | grep -q 10.79.0.7/24"), 0);
}

TEST_F(ConfiguredNetnsTest, ADualStackEth0GivesTheGuestBothFamiliesAndTheLeaseBothAddresses) {
  MakeConfiguredEth0();
  ASSERT_EQ(Shell("ip addr add fd00:79::7/64 dev eth0 nodad && "
                  "ip -6 route add default via fd00:79::1 dev eth0"),
            0);
  CniNetwork network = Network();
  auto attached = network.Attach(Request(netns_));
  ASSERT_TRUE(attached.ok()) << attached.error().message;
  ASSERT_EQ(attached->addresses_size(), 2);
  EXPECT_EQ(attached->addresses(1).address(), "fd00:79::7");
  EXPECT_EQ(attached->addresses(1).prefix_length(), 64u);
  ASSERT_EQ(attached->routes_size(), 3);
  EXPECT_EQ(attached->routes(2).destination(), "::/0");
  EXPECT_EQ(attached->routes(2).gateway(), "fd00:79::1");
  auto leases = network.ListLeases();
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->leases_size(), 1);
  EXPECT_EQ(leases->leases(0).address(), "10.79.0.7/24");
  EXPECT_EQ(leases->leases(0).address6(), "fd00:79::7/64");
  ASSERT_TRUE(network.Detach("k8s.io", "pod1").ok());
  EXPECT_NE(Shell("ip link show tap0 >/dev/null 2>&1"), 0);
}

TEST_F(ConfiguredNetnsTest, WithoutTheSpecsNamespaceOrEth0AttachFailsLeavingNothing) {
  CniNetwork network = Network();
  auto attached = network.Attach(Request(""));
  ASSERT_FALSE(attached.ok());
  EXPECT_NE(attached.error().message.find("configured_netns = true (env "
                                          "BEACON_CNI_CONFIGURED_NETNS) needs a network namespace"),
            std::string::npos)
      << attached.error().message;
  attached = network.Attach(Request(netns_));  // a namespace CNI never configured
  ASSERT_FALSE(attached.ok());
  EXPECT_NE(attached.error().message.find("there is no eth0"), std::string::npos)
      << attached.error().message;
  EXPECT_FALSE(fs::exists(dir_ / "cache" / "k8s.io--pod1.json"));
  EXPECT_NE(Shell("ip link show tap0 >/dev/null 2>&1"), 0);
}

}  // namespace
}  // namespace beaconbox::cni
