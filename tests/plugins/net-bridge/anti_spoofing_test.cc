// Anti-spoofing: a guest sends into the bridge only as its own lease. The test plays
// the guest on the TAP itself (opened as QEMU opens it) in a private netns, writes
// forged and proper frames and reads what the host answers: forged frames get no
// answer (they never reach the bridge), proper ones do.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <vector>

#include "common/base/unique_fd.h"
#include "plugins/net-bridge/bridge_network.h"
#include "tests/plugins/net-bridge/test_util.h"

namespace beaconbox::net {
namespace {

namespace pb = ::beaconbox::plugin::v1;
using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;

Mac ParseMac(const std::string& text) {
  Mac mac{};
  unsigned parts[6] = {};
  std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &parts[0], &parts[1], &parts[2], &parts[3],
              &parts[4], &parts[5]);
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(parts[i]);
  return mac;
}

void Put(Bytes& out, const void* data, size_t size) {
  auto* bytes = static_cast<const uint8_t*>(data);
  out.insert(out.end(), bytes, bytes + size);
}
void Put16(Bytes& out, uint16_t value) {
  out.push_back(value >> 8);
  out.push_back(value & 0xff);
}
void Put32(Bytes& out, uint32_t value) {
  Put16(out, value >> 16);
  Put16(out, value & 0xffff);
}

uint16_t Checksum(const uint8_t* data, size_t size) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < size; i += 2) sum += (data[i] << 8) | data[i + 1];
  if (size % 2) sum += data[size - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

constexpr Mac kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// An ARP request "who has `target_ip`? tell `sender_ip` at `sender_mac`", sent from
// Ethernet source `ether_source`.
Bytes ArpRequest(const Mac& ether_source, const Mac& sender_mac, Ipv4 sender_ip, Ipv4 target_ip) {
  Bytes frame;
  Put(frame, kBroadcast.data(), 6);
  Put(frame, ether_source.data(), 6);
  Put16(frame, 0x0806);
  Put16(frame, 1);       // Ethernet
  Put16(frame, 0x0800);  // IPv4
  frame.push_back(6);
  frame.push_back(4);
  Put16(frame, 1);  // request
  Put(frame, sender_mac.data(), 6);
  Put32(frame, sender_ip);
  Mac zero{};
  Put(frame, zero.data(), 6);
  Put32(frame, target_ip);
  return frame;
}

// An ICMP echo request from `source_ip` to `destination_ip` (Ethernet to `router`).
Bytes EchoRequest(const Mac& ether_source, const Mac& router, Ipv4 source_ip, Ipv4 destination_ip,
                  uint16_t id) {
  Bytes icmp = {8, 0, 0, 0};
  Put16(icmp, id);
  Put16(icmp, 1);
  uint16_t icmp_sum = Checksum(icmp.data(), icmp.size());
  icmp[2] = icmp_sum >> 8;
  icmp[3] = icmp_sum & 0xff;
  Bytes ip = {0x45, 0};
  Put16(ip, static_cast<uint16_t>(20 + icmp.size()));
  Put16(ip, id);
  Put16(ip, 0x4000);
  ip.push_back(64);
  ip.push_back(1);  // ICMP
  Put16(ip, 0);
  Put32(ip, source_ip);
  Put32(ip, destination_ip);
  uint16_t ip_sum = Checksum(ip.data(), ip.size());
  ip[10] = ip_sum >> 8;
  ip[11] = ip_sum & 0xff;
  Bytes frame;
  Put(frame, router.data(), 6);
  Put(frame, ether_source.data(), 6);
  Put16(frame, 0x0800);
  frame.insert(frame.end(), ip.begin(), ip.end());
  frame.insert(frame.end(), icmp.begin(), icmp.end());
  return frame;
}

using Ip6 = std::array<uint8_t, 16>;

Ip6 ToIp6(Ipv6 value) {
  Ip6 out{};
  for (int i = 15; i >= 0; --i, value >>= 8) out[i] = static_cast<uint8_t>(value);
  return out;
}

// An IPv6 packet carrying ICMPv6 `icmp` (checksum filled in) from `source` to
// `destination`, hop limit 255 (as neighbour discovery needs).
Bytes Icmp6Frame(const Mac& ether_source, const Mac& ether_destination, Ipv6 source,
                 Ipv6 destination, Bytes icmp) {
  Ip6 src = ToIp6(source), dst = ToIp6(destination);
  Bytes pseudo;
  Put(pseudo, src.data(), 16);
  Put(pseudo, dst.data(), 16);
  Put32(pseudo, static_cast<uint32_t>(icmp.size()));
  Put32(pseudo, 58);
  pseudo.insert(pseudo.end(), icmp.begin(), icmp.end());
  uint16_t sum = Checksum(pseudo.data(), pseudo.size());
  icmp[2] = sum >> 8;
  icmp[3] = sum & 0xff;
  Bytes frame;
  Put(frame, ether_destination.data(), 6);
  Put(frame, ether_source.data(), 6);
  Put16(frame, 0x86dd);
  Put32(frame, 0x60000000);
  Put16(frame, static_cast<uint16_t>(icmp.size()));
  frame.push_back(58);   // ICMPv6
  frame.push_back(255);  // hop limit
  Put(frame, src.data(), 16);
  Put(frame, dst.data(), 16);
  frame.insert(frame.end(), icmp.begin(), icmp.end());
  return frame;
}

// Neighbour solicitation (135) or advertisement (136, solicited + override) for
// `target`, with a source/target link-layer address option naming `option_mac`.
Bytes NdMessage(uint8_t type, Ipv6 target, const Mac& option_mac) {
  Bytes icmp = {type, 0, 0, 0};
  Put32(icmp, type == 136 ? 0x60000000u : 0);
  Ip6 t = ToIp6(target);
  Put(icmp, t.data(), 16);
  icmp.push_back(type == 136 ? 2 : 1);
  icmp.push_back(1);
  Put(icmp, option_mac.data(), 6);
  return icmp;
}

// The solicited-node multicast address of `target` (ff02::1:ffXX:XXXX) and its MAC.
Ipv6 SolicitedNodeAddress(Ipv6 target) {
  return (Ipv6(0xff02) << 112) | (Ipv6(1) << 32) | (Ipv6(0xff) << 24) | (target & 0xffffff);
}
Mac SolicitedNodeMac(Ipv6 target) {
  return {0x33,
          0x33,
          0xff,
          static_cast<uint8_t>(target >> 16),
          static_cast<uint8_t>(target >> 8),
          static_cast<uint8_t>(target)};
}

// A solicitation for `target` with two options: a nonce (type 14) first, then a
// source link-layer address option naming `option_mac`.
Bytes NdSolicitWithNonce(Ipv6 target, const Mac& option_mac) {
  Bytes icmp = NdMessage(135, target, option_mac);
  const Bytes nonce = {14, 1, 1, 2, 3, 4, 5, 6};
  icmp.insert(icmp.begin() + 24, nonce.begin(), nonce.end());
  return icmp;
}

Bytes Echo6(uint16_t id) {
  Bytes icmp = {128, 0, 0, 0};
  Put16(icmp, id);
  Put16(icmp, 1);
  return icmp;
}

// A router advertisement: router lifetime 1800 s, no options.
Bytes RouterAdvert() {
  Bytes icmp = {134, 0, 0, 0, 64, 0};
  Put16(icmp, 1800);
  Put32(icmp, 0);
  Put32(icmp, 0);
  return icmp;
}

uint16_t Get16(const Bytes& frame, size_t at) { return (frame[at] << 8) | frame[at + 1]; }
uint32_t Get32(const Bytes& frame, size_t at) {
  return (uint32_t{Get16(frame, at)} << 16) | Get16(frame, at + 2);
}

// What the host sent out of the TAP, reduced to what the test asks about.
struct Seen {
  std::vector<Ipv4> arp_replies_to;    // target IP of each ARP reply
  std::vector<Ipv4> arp_requests_for;  // target IP of each ARP request
  std::vector<Ipv4> echo_replies_to;   // destination IP of each ICMP echo reply
  Mac gateway_mac{};
  std::vector<Ipv6> echo6_replies_to;  // destination of each ICMPv6 echo reply
  std::vector<Mac> echo6_reply_macs;   // its Ethernet destination
  std::vector<Ipv6> na_to;             // destination of each neighbour advertisement
};

void Record(const Bytes& frame, Seen& seen) {
  if (frame.size() < 14) return;
  uint16_t type = Get16(frame, 12);
  if (type == 0x0806 && frame.size() >= 42) {
    uint16_t op = Get16(frame, 20);
    if (op == 2) {
      seen.arp_replies_to.push_back(Get32(frame, 38));
      std::memcpy(seen.gateway_mac.data(), &frame[22], 6);
    }
    if (op == 1) seen.arp_requests_for.push_back(Get32(frame, 38));
  } else if (type == 0x86dd && frame.size() >= 14 + 40 + 4 && frame[14 + 6] == 58) {
    Ipv6 destination = 0;
    for (int i = 0; i < 16; ++i) destination = (destination << 8) | frame[14 + 24 + i];
    if (frame[54] == 129) {
      seen.echo6_replies_to.push_back(destination);
      Mac to{};
      std::memcpy(to.data(), &frame[0], 6);
      seen.echo6_reply_macs.push_back(to);
    }
    if (frame[54] == 136) {
      seen.na_to.push_back(destination);
      std::memcpy(seen.gateway_mac.data(), &frame[6], 6);
    }
  } else if (type == 0x0800 && frame.size() >= 14 + 20 + 8) {
    size_t ihl = (frame[14] & 0x0f) * 4;
    if (frame[14 + 9] == 1 && frame.size() >= 14 + ihl + 8 && frame[14 + ihl] == 0) {
      seen.echo_replies_to.push_back(Get32(frame, 14 + 16));
    }
  }
}

template <typename T>
bool Contains(const std::vector<T>& list, T value) {
  for (T item : list) {
    if (item == value) return true;
  }
  return false;
}

class AntiSpoofingTest : public testing::NetnsTest {
 protected:
  void SetUp() override {
    NetnsTest::SetUp();
    config_.db_path = state_dir_ + "/network.db";
    config_.reconcile_interval_seconds = 0;
    network_ = std::make_unique<BridgeNetwork>(config_, nullptr);
  }
  void TearDown() override {
    tap_ = UniqueFd();
    network_.reset();
    NetnsTest::TearDown();
  }
  pb::NetworkAttachment Attach(const std::string& id) {
    pb::NetworkAttachRequest request;
    request.set_container_id(id);
    request.set_namespace_("default");
    auto attachment = network_->Attach(request);
    EXPECT_TRUE(attachment.ok()) << attachment.error().message;
    return attachment.ok() ? *attachment : pb::NetworkAttachment();
  }
  // Opens the TAP as the VMM does (no packet info, no vnet header: raw frames).
  void OpenTap(const std::string& name) {
    tap_ = UniqueFd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK));
    ASSERT_TRUE(tap_.valid());
    ifreq request{};
    std::strncpy(request.ifr_name, name.c_str(), IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI;
    ASSERT_EQ(::ioctl(tap_.get(), TUNSETIFF, &request), 0) << std::strerror(errno);
    ASSERT_NO_FATAL_FAILURE(WaitUntilForwarding(name));
  }
  // Opening the TAP raises its carrier, but the bridge takes the port into forwarding
  // (and itself up) asynchronously, through the kernel's link watch. A frame written
  // before that is dropped by the bridge, so a forged frame sent then would go
  // unanswered for the wrong reason and the proper one would be lost.
  void WaitUntilForwarding(const std::string& tap) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    std::string port, bridge;
    while (std::chrono::steady_clock::now() < deadline) {
      port = testing::Shell("bridge link show dev " + tap);
      bridge = testing::Shell("ip -br link show dev " + config_.bridge);
      if (port.find("state forwarding") != std::string::npos &&
          bridge.find(" UP ") != std::string::npos) {
        return;
      }
      ::usleep(20 * 1000);
    }
    FAIL() << "the TAP never became a forwarding port of an up bridge: " << port << bridge;
  }
  void Send(const Bytes& frame) {
    ASSERT_EQ(::write(tap_.get(), frame.data(), frame.size()), static_cast<ssize_t>(frame.size()))
        << std::strerror(errno);
  }
  // Reads frames until `done(seen)` or a generous bound (a failure, not a timing test).
  template <typename Done>
  Seen ReadUntil(Seen seen, Done done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!done(seen) && std::chrono::steady_clock::now() < deadline) {
      pollfd ready{tap_.get(), POLLIN, 0};
      if (::poll(&ready, 1, 100) <= 0) continue;
      Bytes frame(65536);
      ssize_t n = ::read(tap_.get(), frame.data(), frame.size());
      if (n <= 0) continue;
      frame.resize(static_cast<size_t>(n));
      Record(frame, seen);
    }
    return seen;
  }

  BridgeConfig config_;
  std::unique_ptr<BridgeNetwork> network_;
  UniqueFd tap_;
};

TEST_F(AntiSpoofingTest, AGuestSendsOnlyAsItsOwnLease) {
  pb::NetworkAttachment victim = Attach("victim");
  pb::NetworkAttachment guest = Attach("guest");
  ASSERT_FALSE(HasFailure());
  const Mac victim_mac = ParseMac(victim.mac()), guest_mac = ParseMac(guest.mac());
  const Ipv4 victim_ip = *ParseIpv4(victim.addresses(0).address());
  const Ipv4 guest_ip = *ParseIpv4(guest.addresses(0).address());
  const Ipv4 gateway = *ParseIpv4("10.88.0.1");
  const Mac forged_mac = {0x02, 0x66, 0x66, 0x66, 0x66, 0x66};
  ASSERT_NO_FATAL_FAILURE(OpenTap(guest.tap_name()));

  // Forged, each answered by the host if it reached the bridge:
  Send(ArpRequest(victim_mac, victim_mac, victim_ip, gateway));  // the victim, in full
  Send(ArpRequest(guest_mac, guest_mac, victim_ip, gateway));    // claims the victim's IP
  Send(ArpRequest(guest_mac, victim_mac, guest_ip, gateway));    // ARP sender MAC forged
  Send(ArpRequest(forged_mac, guest_mac, guest_ip, gateway));    // Ethernet source forged
  // Then the proper request: its answer comes after any answer to the ones above.
  Send(ArpRequest(guest_mac, guest_mac, guest_ip, gateway));
  Seen seen =
      ReadUntil(Seen{}, [&](const Seen& s) { return Contains(s.arp_replies_to, guest_ip); });
  ASSERT_TRUE(Contains(seen.arp_replies_to, guest_ip)) << "the proper ARP request got no answer";
  EXPECT_FALSE(Contains(seen.arp_replies_to, victim_ip)) << "a forged ARP request was answered";
  EXPECT_EQ(seen.arp_replies_to.size(), 1u) << "a forged ARP request was answered";

  // IPv4 with the victim's source address (an answer needs the host to ARP for it),
  // then a proper echo request.
  Send(EchoRequest(guest_mac, seen.gateway_mac, victim_ip, gateway, 7));
  Send(EchoRequest(forged_mac, seen.gateway_mac, guest_ip, gateway, 8));
  Send(EchoRequest(guest_mac, seen.gateway_mac, guest_ip, gateway, 9));
  seen = ReadUntil(seen, [&](const Seen& s) { return Contains(s.echo_replies_to, guest_ip); });
  ASSERT_TRUE(Contains(seen.echo_replies_to, guest_ip)) << "the proper echo request got no answer";
  EXPECT_EQ(seen.echo_replies_to.size(), 1u) << "a forged echo request was answered";
  EXPECT_FALSE(Contains(seen.echo_replies_to, victim_ip));
  EXPECT_FALSE(Contains(seen.arp_requests_for, victim_ip))
      << "the host saw IPv4 from the victim's address";
  // The bridge never learned the victim's or the forged MAC on the guest's port.
  std::string fdb = testing::Shell("bridge fdb show dev " + guest.tap_name());
  EXPECT_EQ(fdb.find(victim.mac()), std::string::npos) << fdb;
  EXPECT_EQ(fdb.find("02:66:66:66:66:66"), std::string::npos) << fdb;
}

TEST_F(AntiSpoofingTest, AGuestSendsOnlyAsItsOwnIpv6AddressesAndIsNoRouter) {
  // Forwarding stays off, so the host would still take router advertisements.
  config_.enable_ip_forward = false;
  network_ = std::make_unique<BridgeNetwork>(config_, nullptr);
  pb::NetworkAttachment victim = Attach("victim");
  pb::NetworkAttachment guest = Attach("guest");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(guest.addresses_size(), 2);  // dual stack by default
  const Mac guest_mac = ParseMac(guest.mac());
  const Ipv6 victim_ip = *ParseIpv6(victim.addresses(1).address());
  const Ipv6 guest_ip = *ParseIpv6(guest.addresses(1).address());
  const Ipv6 guest_ll = LinkLocalFor(guest.mac());
  const Ipv6 gateway = config_.gateway6;
  const Mac all_nodes = {0x33, 0x33, 0, 0, 0, 1};
  ASSERT_NO_FATAL_FAILURE(OpenTap(guest.tap_name()));

  // A router advertisement from the guest's own link-local address: a host taking it
  // would get a default route via the guest.
  Send(Icmp6Frame(guest_mac, all_nodes, guest_ll, (Ipv6(0xff02) << 112) | 1, RouterAdvert()));
  // Solicitations for the gateway: forged source first (answered to the victim's address
  // if it got through), then the guest's own.
  const Mac solicited = SolicitedNodeMac(gateway);
  const Ipv6 solicited_ip = SolicitedNodeAddress(gateway);
  Send(Icmp6Frame(guest_mac, solicited, victim_ip, solicited_ip,
                  NdMessage(135, gateway, guest_mac)));
  Send(
      Icmp6Frame(guest_mac, solicited, guest_ip, solicited_ip, NdMessage(135, gateway, guest_mac)));
  Seen seen = ReadUntil(Seen{}, [&](const Seen& s) { return Contains(s.na_to, guest_ip); });
  ASSERT_TRUE(Contains(seen.na_to, guest_ip)) << "the proper neighbour solicitation got no answer";
  EXPECT_FALSE(Contains(seen.na_to, victim_ip))
      << "a solicitation from the victim's address passed";

  // Echo requests: from the victim's address (dropped), then the guest's own.
  Send(Icmp6Frame(guest_mac, seen.gateway_mac, victim_ip, gateway, Echo6(7)));
  Send(Icmp6Frame(guest_mac, seen.gateway_mac, guest_ip, gateway, Echo6(8)));
  seen = ReadUntil(seen, [&](const Seen& s) { return Contains(s.echo6_replies_to, guest_ip); });
  ASSERT_TRUE(Contains(seen.echo6_replies_to, guest_ip)) << "the proper echo request got no answer";
  EXPECT_FALSE(Contains(seen.echo6_replies_to, victim_ip)) << "a forged echo request was answered";

  // The host looks for the victim (its TAP is not open: only the guest's port hears the
  // solicitation); the guest answers in the victim's name, which must not reach the host.
  testing::Shell("ping -6 -c 1 -W 1 " + FormatIpv6(victim_ip));
  Send(Icmp6Frame(guest_mac, seen.gateway_mac, guest_ll, gateway,
                  NdMessage(136, victim_ip, guest_mac)));
  Send(Icmp6Frame(guest_mac, seen.gateway_mac, guest_ip, gateway,
                  NdMessage(136, victim_ip, guest_mac)));
  // An answer for its own address does reach it.
  testing::Shell("ping -6 -c 1 -W 1 " + FormatIpv6(guest_ip));
  Send(Icmp6Frame(guest_mac, seen.gateway_mac, guest_ip, gateway,
                  NdMessage(136, guest_ip, guest_mac)));
  std::string own;
  for (int i = 0; i < 100 && own.find(guest.mac()) == std::string::npos; ++i) {
    ::usleep(20 * 1000);
    own = testing::Shell("ip -6 neigh show " + FormatIpv6(guest_ip));
  }
  EXPECT_NE(own.find(guest.mac()), std::string::npos) << "the guest's own advertisement: " << own;
  std::string stolen = testing::Shell("ip -6 neigh show " + FormatIpv6(victim_ip));
  EXPECT_EQ(stolen.find(guest.mac()), std::string::npos)
      << "the host took the guest's advertisement for the victim's address: " << stolen;
  std::string routes = testing::Shell("ip -6 route show default");
  EXPECT_EQ(routes.find("default"), std::string::npos)
      << "the host took the guest's router advertisement: " << routes;
}

// Neighbour discovery names only the guest's own MAC: a solicitation or advertisement
// whose link-layer address option names another MAC would make the host send the
// guest's traffic there (to another container, or flooded to every port). Each
// forged message is followed by an echo request; the host's reply goes to the MAC its
// neighbour entry for the guest holds.
TEST_F(AntiSpoofingTest, AGuestsNeighbourDiscoveryNamesOnlyItsOwnMac) {
  pb::NetworkAttachment guest = Attach("guest");
  ASSERT_FALSE(HasFailure());
  const Mac guest_mac = ParseMac(guest.mac());
  const Ipv6 guest_ip = *ParseIpv6(guest.addresses(1).address());
  const Ipv6 gateway = config_.gateway6;
  const Mac forged_mac = {0x02, 0x66, 0x66, 0x66, 0x66, 0x66};
  const Mac solicited = SolicitedNodeMac(gateway);
  const Ipv6 solicited_ip = SolicitedNodeAddress(gateway);
  ASSERT_NO_FATAL_FAILURE(OpenTap(guest.tap_name()));

  // The proper solicitation: the host learns the guest's MAC and answers.
  Send(
      Icmp6Frame(guest_mac, solicited, guest_ip, solicited_ip, NdMessage(135, gateway, guest_mac)));
  Seen seen = ReadUntil(Seen{}, [&](const Seen& s) { return Contains(s.na_to, guest_ip); });
  ASSERT_TRUE(Contains(seen.na_to, guest_ip)) << "the proper neighbour solicitation got no answer";
  const Mac gateway_mac = seen.gateway_mac;

  auto echo_reply_goes_to = [&](uint16_t id) -> Mac {
    const size_t before = seen.echo6_reply_macs.size();
    Send(Icmp6Frame(guest_mac, gateway_mac, guest_ip, gateway, Echo6(id)));
    seen = ReadUntil(seen, [&](const Seen& s) { return s.echo6_reply_macs.size() > before; });
    EXPECT_GT(seen.echo6_reply_macs.size(), before) << "echo request " << id << " got no answer";
    return seen.echo6_reply_macs.size() > before ? seen.echo6_reply_macs.back() : Mac{};
  };
  EXPECT_EQ(echo_reply_goes_to(20), guest_mac);

  // A solicitation whose source link-layer address option names another MAC.
  Send(Icmp6Frame(guest_mac, solicited, guest_ip, solicited_ip,
                  NdMessage(135, gateway, forged_mac)));
  EXPECT_EQ(echo_reply_goes_to(21), guest_mac)
      << "the host took a solicitation's forged source link-layer address";
  // The same behind a nonce option (a second option: past the checked place).
  Send(Icmp6Frame(guest_mac, solicited, guest_ip, solicited_ip,
                  NdSolicitWithNonce(gateway, forged_mac)));
  EXPECT_EQ(echo_reply_goes_to(22), guest_mac)
      << "the host took a forged source link-layer address behind a nonce";
  // An advertisement (override) for the guest's own address naming another MAC.
  Send(Icmp6Frame(guest_mac, gateway_mac, guest_ip, gateway, NdMessage(136, guest_ip, forged_mac)));
  EXPECT_EQ(echo_reply_goes_to(23), guest_mac)
      << "the host took an advertisement's forged target link-layer address";
  std::string neighbour = testing::Shell("ip -6 neigh show " + FormatIpv6(guest_ip));
  EXPECT_EQ(neighbour.find("02:66:66:66:66:66"), std::string::npos) << neighbour;
}

TEST_F(AntiSpoofingTest, TheGuardGoesWithTheTapAndComesBackAtReconcile) {
  pb::NetworkAttachment guest = Attach("guest");
  ASSERT_FALSE(HasFailure());
  std::string ruleset = testing::Shell("nft list table bridge beacon_runner_bridge");
  EXPECT_NE(ruleset.find("chain guest-" + guest.tap_name()), std::string::npos) << ruleset;
  EXPECT_NE(ruleset.find("ether saddr != " + guest.mac() + " drop"), std::string::npos) << ruleset;
  EXPECT_NE(ruleset.find("ip saddr " + guest.addresses(0).address() + " accept"), std::string::npos)
      << ruleset;

  // Someone flushes the guards: reconcile puts them back for the running container.
  int exit_code = -1;
  testing::Shell("nft delete table bridge beacon_runner_bridge", &exit_code);
  ASSERT_EQ(exit_code, 0);
  auto report = network_->Reconcile();
  ASSERT_TRUE(report.ok()) << report.error().message;
  ruleset = testing::Shell("nft list table bridge beacon_runner_bridge");
  EXPECT_NE(ruleset.find("\"" + guest.tap_name() + "\" : jump guest-" + guest.tap_name()),
            std::string::npos)
      << ruleset;

  ASSERT_TRUE(network_->Detach({"default", "guest"}).ok());
  ruleset = testing::Shell("nft list table bridge beacon_runner_bridge");
  EXPECT_EQ(ruleset.find(guest.tap_name()), std::string::npos) << ruleset;
}

}  // namespace
}  // namespace beaconbox::net
