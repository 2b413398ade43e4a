// The plugin's logic end to end (leases + devices + rules + reconcile), in a
// private network namespace with a temporary state directory.
#include "plugins/net-bridge/bridge_network.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include <chrono>
#include <set>
#include <thread>

#include "tests/plugins/net-bridge/test_util.h"

namespace beaconbox::net {
namespace {

namespace pb = ::beaconbox::plugin::v1;
using testing::Shell;

int CountMatches(const std::string& text, const std::string& needle) {
  int count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

bool LinkExists(const std::string& name) {
  int exit_code = -1;
  Shell("ip link show dev " + name, &exit_code);
  return exit_code == 0;
}

// A child that just waits; stands in for a shim that owns leases.
pid_t StartOwner() {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::pause();
    ::_exit(0);
  }
  return pid;
}
void KillOwner(pid_t pid) {
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

class BridgeNetworkTest : public testing::NetnsTest {
 protected:
  void SetUp() override {
    NetnsTest::SetUp();
    config_.db_path = state_dir_ + "/network.db";
    config_.dns_servers = {"10.88.0.1"};
  }
  void TearDown() override {
    network_.reset();
    for (pid_t pid : owners_) KillOwner(pid);
    NetnsTest::TearDown();
  }
  BridgeNetwork& Network() {
    if (!network_) network_ = std::make_unique<BridgeNetwork>(config_, nullptr);
    return *network_;
  }
  pb::NetworkAttachRequest Request(const std::string& id, int64_t owner = 0) {
    pb::NetworkAttachRequest request;
    request.set_container_id(id);
    request.set_namespace_("default");
    request.set_owner_pid(owner);
    return request;
  }

  BridgeConfig config_;
  std::unique_ptr<BridgeNetwork> network_;
  std::vector<pid_t> owners_;
};

TEST_F(BridgeNetworkTest, AttachGivesEverythingTheGuestNeeds) {
  auto attachment = Network().Attach(Request("c1"));
  ASSERT_TRUE(attachment.ok()) << attachment.error().message;
  EXPECT_EQ(attachment->tap_name(), TapNameFor({"default", "c1"}));
  EXPECT_EQ(attachment->mac(), MacFor({"default", "c1"}));
  EXPECT_EQ(attachment->mtu(), 1500u);
  ASSERT_EQ(attachment->addresses_size(), 2);  // dual stack by default
  EXPECT_EQ(attachment->addresses(0).address(), "10.88.0.2");
  EXPECT_EQ(attachment->addresses(0).prefix_length(), 16u);
  EXPECT_EQ(attachment->addresses(1).address(), "fd57:dba9:ddb6::100");
  EXPECT_EQ(attachment->addresses(1).prefix_length(), 64u);
  ASSERT_EQ(attachment->routes_size(), 2);
  EXPECT_EQ(attachment->routes(0).destination(), "0.0.0.0/0");
  EXPECT_EQ(attachment->routes(0).gateway(), "10.88.0.1");
  EXPECT_EQ(attachment->routes(1).destination(), "::/0");
  EXPECT_EQ(attachment->routes(1).gateway(), "fd57:dba9:ddb6::1");
  ASSERT_EQ(attachment->dns_servers_size(), 1);
  std::string tap = Shell("ip -d link show dev " + attachment->tap_name());
  EXPECT_NE(tap.find("master beacon0"), std::string::npos) << tap;
  EXPECT_NE(Shell("ip addr show dev beacon0").find("10.88.0.1/16"), std::string::npos);
  EXPECT_EQ(Shell("cat /proc/sys/net/ipv4/ip_forward"), "1\n");
  std::string bridge6 = Shell("ip -6 addr show dev beacon0");
  size_t global = bridge6.find("inet6 fd57:dba9:ddb6::1/64");
  ASSERT_NE(global, std::string::npos) << bridge6;
  std::string global_line = bridge6.substr(global, bridge6.find('\n', global) - global);
  EXPECT_NE(global_line.find("nodad"), std::string::npos) << bridge6;  // usable at once
  EXPECT_EQ(global_line.find("tentative"), std::string::npos) << bridge6;
  EXPECT_EQ(Shell("cat /proc/sys/net/ipv6/conf/all/forwarding"), "1\n");

  // Idempotent per container id.
  auto again = Network().Attach(Request("c1"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->SerializeAsString(), attachment->SerializeAsString());

  auto leases = Network().ListLeases();
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->leases_size(), 1);
  EXPECT_EQ(leases->leases(0).container_id(), "c1");
  EXPECT_EQ(leases->leases(0).address(), "10.88.0.2");
  EXPECT_EQ(leases->leases(0).address6(), "fd57:dba9:ddb6::100");
  EXPECT_EQ(leases->leases(0).owner_pid(), ::getpid());

  ASSERT_TRUE(Network().Detach({"default", "c1"}).ok());
  EXPECT_FALSE(LinkExists(attachment->tap_name()));
  EXPECT_EQ(Network().ListLeases()->leases_size(), 0);
  EXPECT_TRUE(Network().Detach({"default", "c1"}).ok());  // twice: harmless
  EXPECT_TRUE(Network().Detach({"default", "never-attached"}).ok());
}

TEST_F(BridgeNetworkTest, Ipv6OnlyModeMakesNoIpv4AddressOrRule) {
  config_.ipv4 = false;
  config_.dns_servers = {"fd57:dba9:ddb6::53"};
  auto attachment = Network().Attach(Request("v6"));
  ASSERT_TRUE(attachment.ok()) << attachment.error().message;
  ASSERT_EQ(attachment->addresses_size(), 1);
  EXPECT_EQ(attachment->addresses(0).address(), "fd57:dba9:ddb6::100");
  ASSERT_EQ(attachment->routes_size(), 1);
  EXPECT_EQ(attachment->routes(0).destination(), "::/0");
  EXPECT_EQ(Shell("ip -4 addr show dev beacon0").find("inet "), std::string::npos);
  EXPECT_NE(Shell("ip -6 addr show dev beacon0").find("fd57:dba9:ddb6::1/64"), std::string::npos);
  std::string ruleset = Shell("nft list ruleset");
  EXPECT_EQ(ruleset.find("ip saddr"), std::string::npos) << ruleset;
  EXPECT_EQ(ruleset.find("masquerade"), std::string::npos) << ruleset;
  EXPECT_EQ(ruleset.find("arp "), std::string::npos) << ruleset;
  EXPECT_NE(ruleset.find("ip6 saddr { fd57:dba9:ddb6::100"), std::string::npos) << ruleset;
  auto leases = Network().ListLeases();
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->leases_size(), 1);
  EXPECT_EQ(leases->leases(0).address(), "");
  EXPECT_EQ(leases->leases(0).address6(), "fd57:dba9:ddb6::100");
  ASSERT_TRUE(Network().Detach({"default", "v6"}).ok());
  EXPECT_FALSE(LinkExists(attachment->tap_name()));
  EXPECT_EQ(Network().ListLeases()->leases_size(), 0);
}

// Turning ipv4 off for a bridge whose IPv4 gateway this configuration added removes
// that address (once no container holds an IPv4 lease); one the operator had put
// there stays.
TEST_F(BridgeNetworkTest, Ipv4OffRemovesTheIpv4GatewayItAddedButNoOneElses) {
  auto attachment = Network().Attach(Request("dual"));
  ASSERT_TRUE(attachment.ok()) << attachment.error().message;
  EXPECT_NE(Shell("ip -4 addr show dev beacon0").find("inet 10.88.0.1/16"), std::string::npos);
  // Still an IPv4 lease: the next IPv6-only shim leaves the gateway alone.
  config_.ipv4 = false;
  network_.reset();
  auto v6 = Network().Attach(Request("v6"));
  ASSERT_TRUE(v6.ok()) << v6.error().message;
  EXPECT_NE(Shell("ip -4 addr show dev beacon0").find("inet 10.88.0.1/16"), std::string::npos);
  ASSERT_TRUE(Network().Detach({"default", "dual"}).ok());
  auto v6b = Network().Attach(Request("v6b"));
  ASSERT_TRUE(v6b.ok()) << v6b.error().message;
  EXPECT_EQ(Shell("ip -4 addr show dev beacon0").find("inet "), std::string::npos)
      << Shell("ip -4 addr show dev beacon0");
  EXPECT_NE(Shell("ip -6 addr show dev beacon0").find("fd57:dba9:ddb6::1/64"), std::string::npos);
  ASSERT_TRUE(Network().Detach({"default", "v6"}).ok());
  ASSERT_TRUE(Network().Detach({"default", "v6b"}).ok());

  // The operator's address on the bridge: not ours to take away.
  network_.reset();
  int exit_code = -1;
  Shell(
      "ip link del beacon0 && ip link add bbx-op0 type bridge && "
      "ip addr add 10.89.0.1/16 dev bbx-op0",
      &exit_code);
  ASSERT_EQ(exit_code, 0);
  config_.bridge = "bbx-op0";
  config_.ipv4 = true;
  config_.subnet = Subnet{0x0a590000u, 16};
  config_.gateway = 0x0a590001u;
  config_.db_path = state_dir_ + "/network-op.db";
  auto theirs = Network().Attach(Request("op"));
  ASSERT_TRUE(theirs.ok()) << theirs.error().message;
  ASSERT_TRUE(Network().Detach({"default", "op"}).ok());
  config_.ipv4 = false;
  network_.reset();
  auto op6 = Network().Attach(Request("op6"));
  ASSERT_TRUE(op6.ok()) << op6.error().message;
  EXPECT_NE(Shell("ip -4 addr show dev bbx-op0").find("inet 10.89.0.1/16"), std::string::npos);
  ASSERT_TRUE(Network().Detach({"default", "op6"}).ok());
}

TEST_F(BridgeNetworkTest, AnIpv6PrefixOverlappingAnotherLinksNetworkFailsAttachWithoutALease) {
  int exit_code = -1;
  Shell(
      "ip link add bbx-other0 type bridge && ip addr add fd57:dba9:ddb6::7/64 dev bbx-other0 nodad",
      &exit_code);
  ASSERT_EQ(exit_code, 0);
  auto attachment = Network().Attach(Request("c1"));
  ASSERT_FALSE(attachment.ok());
  EXPECT_NE(attachment.error().message.find(
                "config key ipv6_prefix: fd57:dba9:ddb6::/64 overlaps fd57:dba9:ddb6::7/64 on "
                "bbx-other0: choose another ipv6_prefix"),
            std::string::npos)
      << attachment.error().message;
  EXPECT_EQ(Network().ListLeases()->leases_size(), 0);
  EXPECT_EQ(CountMatches(Shell("ip link show"), "beacon-"), 0);
}

// The same id in two containerd namespaces: two leases, two TAPs, two MACs, and
// detaching one leaves the other alone.
TEST_F(BridgeNetworkTest, SameIdInTwoNamespacesGetsTwoAttachments) {
  pb::NetworkAttachRequest other = Request("web");
  other.set_namespace_("k8s.io");
  auto in_default = Network().Attach(Request("web"));
  auto in_k8s = Network().Attach(other);
  ASSERT_TRUE(in_default.ok()) << in_default.error().message;
  ASSERT_TRUE(in_k8s.ok()) << in_k8s.error().message;
  EXPECT_NE(in_default->tap_name(), in_k8s->tap_name());
  EXPECT_NE(in_default->mac(), in_k8s->mac());
  EXPECT_NE(in_default->addresses(0).address(), in_k8s->addresses(0).address());
  ASSERT_TRUE(Network().Detach({"default", "web"}).ok());
  EXPECT_FALSE(LinkExists(in_default->tap_name()));
  EXPECT_TRUE(LinkExists(in_k8s->tap_name()));
  auto leases = Network().ListLeases();
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->leases_size(), 1);
  EXPECT_EQ(leases->leases(0).namespace_(), "k8s.io");
  ASSERT_TRUE(Network().Detach({"k8s.io", "web"}).ok());
  EXPECT_FALSE(LinkExists(in_k8s->tap_name()));
}

TEST_F(BridgeNetworkTest, FiftyAttachesLeaveNoDuplicateRulesAndDetachCleansUp) {
  std::set<std::string> addresses, taps;
  for (int i = 0; i < 50; ++i) {
    auto attachment = Network().Attach(Request("c" + std::to_string(i)));
    ASSERT_TRUE(attachment.ok()) << attachment.error().message;
    addresses.insert(attachment->addresses(0).address());
    taps.insert(attachment->tap_name());
  }
  EXPECT_EQ(addresses.size(), 50u);
  EXPECT_EQ(taps.size(), 50u);
  std::string ruleset = Shell("nft list ruleset");
  // 4 forward/NAT rules and the anti-spoofing dispatch; one guard chain per TAP.
  EXPECT_EQ(CountMatches(ruleset, "comment \"beaconbox:"), 5) << ruleset;
  EXPECT_EQ(CountMatches(ruleset, "chain guest-beacon-"), 50) << ruleset;
  EXPECT_EQ(CountMatches(Shell("ip link show master beacon0"), "beacon-"), 50);

  for (int i = 0; i < 50; ++i)
    ASSERT_TRUE(Network().Detach({"default", "c" + std::to_string(i)}).ok());
  EXPECT_EQ(CountMatches(Shell("ip link show"), "beacon-"), 0);
  EXPECT_EQ(Network().ListLeases()->leases_size(), 0);
  // remove_rules_when_idle = false (default): the rules stay; the guards go with the TAPs.
  ruleset = Shell("nft list ruleset");
  EXPECT_EQ(CountMatches(ruleset, "comment \"beaconbox:"), 5) << ruleset;
  EXPECT_EQ(CountMatches(ruleset, "guest-beacon-"), 0) << ruleset;
}

TEST_F(BridgeNetworkTest, RulesGoWithTheLastLeaseWhenConfigured) {
  config_.remove_rules_when_idle = true;
  ASSERT_TRUE(Network().Attach(Request("a")).ok());
  ASSERT_TRUE(Network().Attach(Request("b")).ok());
  ASSERT_TRUE(Network().Detach({"default", "a"}).ok());
  EXPECT_EQ(CountMatches(Shell("nft list ruleset"), "comment \"beaconbox:"), 5);
  ASSERT_TRUE(Network().Detach({"default", "b"}).ok());
  std::string ruleset = Shell("nft list ruleset");
  EXPECT_EQ(ruleset.find("beacon_runner"), std::string::npos) << ruleset;
  // And they come back with the next attach.
  ASSERT_TRUE(Network().Attach(Request("c")).ok());
  EXPECT_EQ(CountMatches(Shell("nft list ruleset"), "comment \"beaconbox:"), 5);
}

TEST_F(BridgeNetworkTest, ANonBridgeDeviceNamedLikeTheBridgeFailsAttachWithoutALease) {
  int exit_code = -1;
  Shell("ip link add beacon0 type veth peer name bbx-peer0", &exit_code);
  ASSERT_EQ(exit_code, 0);
  auto attachment = Network().Attach(Request("c1"));
  ASSERT_FALSE(attachment.ok());
  EXPECT_NE(attachment.error().message.find("not a bridge"), std::string::npos);
  EXPECT_EQ(Network().ListLeases()->leases_size(), 0);
}

TEST_F(BridgeNetworkTest, ReconcileReleasesTheLeaseAndTapOfADeadOwner) {
  pid_t owner = StartOwner();
  ASSERT_GT(owner, 0);
  owners_.push_back(owner);
  auto dead = Network().Attach(Request("killed-shim", owner));
  ASSERT_TRUE(dead.ok()) << dead.error().message;
  auto alive = Network().Attach(Request("live-shim"));
  ASSERT_TRUE(alive.ok());

  auto report = Network().Reconcile();
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->released_leases_size(), 0);  // the owner still runs

  KillOwner(owner);  // kill -9, as a crashed shim
  owners_.clear();
  report = Network().Reconcile();
  ASSERT_TRUE(report.ok()) << report.error().message;
  ASSERT_EQ(report->released_leases_size(), 1);
  EXPECT_EQ(report->released_leases(0), "default/killed-shim");
  ASSERT_EQ(report->removed_devices_size(), 1);
  EXPECT_EQ(report->removed_devices(0), dead->tap_name());
  EXPECT_FALSE(LinkExists(dead->tap_name()));
  EXPECT_TRUE(LinkExists(alive->tap_name()));
  auto leases = Network().ListLeases();
  ASSERT_EQ(leases->leases_size(), 1);
  EXPECT_EQ(leases->leases(0).container_id(), "live-shim");
}

TEST_F(BridgeNetworkTest, ReconcileKeepsALeaseWhoseTapIsStillOpen) {
  pid_t owner = StartOwner();
  owners_.push_back(owner);
  auto attachment = Network().Attach(Request("vm-still-running", owner));
  ASSERT_TRUE(attachment.ok());
  // The VMM holds the TAP open although its shim died.
  pid_t holder = ::fork();
  if (holder == 0) {
    int fd = ::open("/dev/net/tun", O_RDWR);
    ifreq request{};
    std::strncpy(request.ifr_name, attachment->tap_name().c_str(), IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (fd < 0 || ::ioctl(fd, TUNSETIFF, &request) != 0) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  owners_.push_back(holder);
  KillOwner(owner);
  owners_.erase(owners_.begin());
  bool in_use = false;
  for (int i = 0; i < 100 && !in_use; ++i) {  // wait until the holder has it open
    in_use =
        Shell("ip link show dev " + attachment->tap_name()).find("LOWER_UP") != std::string::npos;
    if (!in_use) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(in_use);
  auto report = Network().Reconcile();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->released_leases_size(), 0);
  EXPECT_TRUE(LinkExists(attachment->tap_name()));

  KillOwner(holder);  // the VMM is gone too: now it goes
  owners_.clear();
  report = Network().Reconcile();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->released_leases_size(), 1);
  EXPECT_FALSE(LinkExists(attachment->tap_name()));
}

TEST_F(BridgeNetworkTest, ReconcileRemovesOnlyItsOwnTapsWithoutALease) {
  ASSERT_TRUE(Network().Attach(Request("kept")).ok());
  const std::string ours = BridgeNetwork::OwnerMarkFor(config_.db_path);
  int exit_code = -1;
  Shell("ip tuntap add dev beacon-deadbeef mode tap && ip link set beacon-deadbeef alias '" + ours +
            "' && ip tuntap add dev beacon-0the7c0f mode tap && ip link set beacon-0the7c0f alias "
            "'beaconbox:/elsewhere/network.db' && ip tuntap add dev beacon-n0a11a5 mode tap && "
            "ip link add beacon-veth0 type veth peer name bbx-peer2",
        &exit_code);
  ASSERT_EQ(exit_code, 0);
  auto report = Network().Reconcile();
  ASSERT_TRUE(report.ok()) << report.error().message;
  ASSERT_EQ(report->removed_devices_size(), 1);
  EXPECT_EQ(report->removed_devices(0), "beacon-deadbeef");
  EXPECT_FALSE(LinkExists("beacon-deadbeef"));  // ours (its mark) and without a lease
  EXPECT_TRUE(LinkExists("beacon-0the7c0f"));   // another configuration's
  EXPECT_TRUE(LinkExists("beacon-n0a11a5"));    // nobody's mark: maybe anyone's
  EXPECT_TRUE(LinkExists("beacon-veth0"));      // not a TAP: not ours
  EXPECT_TRUE(LinkExists(TapNameFor({"default", "kept"})));
  std::string details = Shell("ip -d link show dev " + TapNameFor({"default", "kept"}));
  EXPECT_NE(details.find("alias " + ours), std::string::npos) << details;
}

// Two beaconbox configurations on one host (own bridge, subnet and lease database):
// neither's reconcile deletes the other's TAPs, and the same container name in both
// gets two TAPs.
TEST_F(BridgeNetworkTest, TwoConfigurationsKeepEachOthersTaps) {
  BridgeConfig other_config = config_;
  other_config.bridge = "beacon1";
  other_config.subnet = *ParseSubnet("10.89.0.0/16");
  other_config.gateway = *ParseIpv4("10.89.0.1");
  // Its own IPv6 prefix too: one prefix on two bridges is refused (overlap).
  other_config.prefix6 = *ParsePrefix6("fd00:89::/64");
  other_config.gateway6 = other_config.prefix6.network + 1;
  other_config.db_path = state_dir_ + "/other-network.db";
  other_config.reconcile_interval_seconds = 0;
  config_.reconcile_interval_seconds = 0;
  BridgeNetwork other(other_config, nullptr);

  auto mine = Network().Attach(Request("mine"));
  auto shared_mine = Network().Attach(Request("shared"));
  ASSERT_TRUE(mine.ok() && shared_mine.ok());
  auto theirs = other.Attach(Request("theirs"));
  auto shared_theirs = other.Attach(Request("shared"));
  ASSERT_TRUE(theirs.ok()) << theirs.error().message;
  ASSERT_TRUE(shared_theirs.ok()) << shared_theirs.error().message;
  EXPECT_NE(shared_mine->tap_name(), shared_theirs->tap_name());
  EXPECT_NE(Shell("ip -d link show dev " + shared_theirs->tap_name()).find("master beacon1"),
            std::string::npos);

  for (BridgeNetwork* network : {&Network(), &other}) {
    auto report = network->Reconcile();
    ASSERT_TRUE(report.ok()) << report.error().message;
    EXPECT_EQ(report->removed_devices_size(), 0);
    EXPECT_EQ(report->released_leases_size(), 0);
  }
  for (const auto* attachment : {&*mine, &*shared_mine, &*theirs, &*shared_theirs}) {
    EXPECT_TRUE(LinkExists(attachment->tap_name())) << attachment->tap_name();
  }
  // Detaching in one leaves the other's same-named container alone.
  ASSERT_TRUE(other.Detach({"default", "shared"}).ok());
  EXPECT_FALSE(LinkExists(shared_theirs->tap_name()));
  EXPECT_TRUE(LinkExists(shared_mine->tap_name()));
  std::string guards = Shell("nft list map bridge beacon_runner_bridge guarded_taps");
  EXPECT_NE(guards.find(shared_mine->tap_name()), std::string::npos) << guards;
  EXPECT_EQ(guards.find(shared_theirs->tap_name()), std::string::npos) << guards;
}

TEST_F(BridgeNetworkTest, TheFirstAttachReconcilesAndTheReconcilerRunsPeriodically) {
  // A previous shim (another process) left a lease and a TAP behind.
  pid_t owner = StartOwner();
  owners_.push_back(owner);
  {
    BridgeNetwork previous(config_, nullptr);
    ASSERT_TRUE(previous.Attach(Request("left-behind", owner)).ok());
  }
  KillOwner(owner);
  owners_.clear();
  ASSERT_TRUE(LinkExists(TapNameFor({"default", "left-behind"})));

  config_.reconcile_interval_seconds = 1;
  ASSERT_TRUE(Network().Attach(Request("new")).ok());
  EXPECT_FALSE(LinkExists(TapNameFor({"default", "left-behind"})));
  EXPECT_EQ(Network().ListLeases()->leases_size(), 1);

  // Now one dies while this instance runs; the background thread cleans it up.
  pid_t second = StartOwner();
  owners_.push_back(second);
  ASSERT_TRUE(Network().Attach(Request("dies-later", second)).ok());
  KillOwner(second);
  owners_.clear();
  bool gone = false;
  for (int i = 0; i < 50 && !gone; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    gone = Network().ListLeases()->leases_size() == 1 &&
           !LinkExists(TapNameFor({"default", "dies-later"}));
  }
  EXPECT_TRUE(gone);
}

TEST_F(BridgeNetworkTest, ListingLeasesCreatesNothing) {
  auto leases = Network().ListLeases();
  ASSERT_TRUE(leases.ok());
  EXPECT_EQ(leases->leases_size(), 0);
  EXPECT_FALSE(std::filesystem::exists(config_.db_path));
  EXPECT_FALSE(LinkExists("beacon0"));
}

}  // namespace
}  // namespace beaconbox::net
