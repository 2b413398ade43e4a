#include <gtest/gtest.h>

#include "plugins/net-cni/cni_network.h"
#include "plugins/net-cni/config.h"

namespace beaconbox::cni {
namespace {

using json = nlohmann::json;

TEST(Cache, RoundTripsAndRefusesMalformedFiles) {
  CachedAttachment cached;
  cached.container_namespace = "default";
  cached.container_id = "c1";
  cached.cni_container_id = "default--c1";
  cached.ifname = "eth0";
  cached.netns = "/run/beacon/netns/default--c1";
  cached.owns_netns = true;
  cached.tap_name = "tap0";
  cached.owner_pid = 42;
  cached.owner_start_time = 7;
  cached.conf_file = "/etc/cni/net.d/x.conflist";
  cached.conf_list = {{"name", "n"}, {"cniVersion", "1.0.0"}, {"plugins", json::array()}};
  cached.runtime_config = json::object();
  cached.result = {{"cniVersion", "1.0.0"}};
  auto parsed = ParseCachedAttachment(SerializeCachedAttachment(cached), "f");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->netns, cached.netns);
  EXPECT_TRUE(parsed->owns_netns);
  EXPECT_EQ(parsed->owner_start_time, 7u);
  EXPECT_EQ(parsed->result, cached.result);
  cached.result = nullptr;  // an ADD that never finished
  parsed = ParseCachedAttachment(SerializeCachedAttachment(cached), "f");
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->result.is_null());
  for (const char* bad : {"", "{}", R"({"version":2})", R"({"version":1,"namespace":1})"}) {
    EXPECT_FALSE(ParseCachedAttachment(bad, "f").ok()) << bad;
  }
  cached.netns = "relative";
  EXPECT_FALSE(ParseCachedAttachment(SerializeCachedAttachment(cached), "f").ok());
}

TEST(Cache, TheGuestGetsTheCniInterfacesMacAddressesRoutesAndDns) {
  auto result = ParseCniResult(R"({
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "cni0", "mac": "00:00:00:00:00:01"},
                   {"name": "eth0", "mac": "7e:14:c8:8b:27:26", "sandbox": "/n"},
                   {"name": "tap0", "mac": "0e:00:00:00:00:02", "sandbox": "/n"}],
    "ips": [{"interface": 1, "address": "10.99.0.2/24", "gateway": "10.99.0.1"},
            {"interface": 1, "address": "fd00::2/64", "gateway": "fd00::1"}],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.5.0.0/16", "gw": "10.99.0.254"},
               {"dst": "::/0"}],
    "dns": {"nameservers": ["10.99.0.1", "fd00::1"], "search": ["svc.test"]}})",
                               "chain");
  ASSERT_TRUE(result.ok()) << result.error().message;
  auto attachment = AttachmentFromResult(*result, "eth0", "/n", "ff:ff:ff:ff:ff:ff");
  ASSERT_TRUE(attachment.ok()) << attachment.error().message;
  EXPECT_EQ(attachment->mac(), "7e:14:c8:8b:27:26");
  EXPECT_EQ(attachment->netns_path(), "/n");
  ASSERT_EQ(attachment->addresses_size(), 2);  // dual stack
  EXPECT_EQ(attachment->addresses(0).address(), "10.99.0.2");
  EXPECT_EQ(attachment->addresses(0).prefix_length(), 24u);
  EXPECT_EQ(attachment->addresses(1).address(), "fd00::2");
  EXPECT_EQ(attachment->addresses(1).prefix_length(), 64u);
  ASSERT_EQ(attachment->routes_size(), 3);
  EXPECT_EQ(attachment->routes(0).gateway(), "10.99.0.1");  // the IPv4 IP's gateway
  EXPECT_EQ(attachment->routes(1).gateway(), "10.99.0.254");
  EXPECT_EQ(attachment->routes(2).destination(), "::/0");
  EXPECT_EQ(attachment->routes(2).gateway(), "fd00::1");  // the IPv6 IP's gateway
  ASSERT_EQ(attachment->dns_servers_size(), 2);
  EXPECT_EQ(attachment->dns_servers(0), "10.99.0.1");
  EXPECT_EQ(attachment->dns_servers(1), "fd00::1");
  EXPECT_EQ(attachment->dns_search(0), "svc.test");

  auto no_address = ParseCniResult(R"({"cniVersion":"1.0.0"})", "p");
  ASSERT_TRUE(no_address.ok());
  EXPECT_FALSE(AttachmentFromResult(*no_address, "eth0", "/n", "").ok());
}

// host-local with only an IPv6 range: the guest gets IPv6 alone.
TEST(Cache, AnIpv6OnlyResultIsEnough) {
  auto result = ParseCniResult(R"({
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "mac": "7e:14:c8:8b:27:26", "sandbox": "/n"}],
    "ips": [{"interface": 0, "address": "fd00:5::9/64", "gateway": "fd00:5::1"}],
    "routes": [{"dst": "::/0"}, {"dst": "fd00:6::/48", "gw": "fd00:5::fe"}]})",
                               "host-local");
  ASSERT_TRUE(result.ok()) << result.error().message;
  auto attachment = AttachmentFromResult(*result, "eth0", "/n", "");
  ASSERT_TRUE(attachment.ok()) << attachment.error().message;
  ASSERT_EQ(attachment->addresses_size(), 1);
  EXPECT_EQ(attachment->addresses(0).address(), "fd00:5::9");
  ASSERT_EQ(attachment->routes_size(), 2);
  EXPECT_EQ(attachment->routes(0).gateway(), "fd00:5::1");
  EXPECT_EQ(attachment->routes(1).gateway(), "fd00:5::fe");
}

// An IPv4 gateway never becomes the next hop of an IPv6 route (nor the other way).
TEST(Cache, ARouteThroughAGatewayOfTheOtherFamilyIsRefused) {
  auto result = ParseCniResult(R"({
    "cniVersion": "1.0.0",
    "ips": [{"address": "10.99.0.2/24", "gateway": "10.99.0.1"}],
    "routes": [{"dst": "::/0", "gw": "10.99.0.1"}]})",
                               "evil");
  ASSERT_TRUE(result.ok()) << result.error().message;
  auto attachment = AttachmentFromResult(*result, "eth0", "/n", "");
  ASSERT_FALSE(attachment.ok());
  EXPECT_NE(attachment.error().message.find("an address of the other family"), std::string::npos)
      << attachment.error().message;
  // A route of a family without a gateway of its own stays on the link.
  result = ParseCniResult(R"({
    "cniVersion": "1.0.0",
    "ips": [{"address": "10.99.0.2/24", "gateway": "10.99.0.1"}],
    "routes": [{"dst": "fd00:7::/48"}]})",
                          "p");
  ASSERT_TRUE(result.ok());
  attachment = AttachmentFromResult(*result, "eth0", "/n", "");
  ASSERT_TRUE(attachment.ok()) << attachment.error().message;
  ASSERT_EQ(attachment->routes_size(), 1);
  EXPECT_EQ(attachment->routes(0).gateway(), "");
}

TEST(Config, DefaultsAndBadKeys) {
  auto config = ParseCniConfig("", "/var/lib/beacon", "/run/beacon");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->cache_dir, "/var/lib/beacon/cni");
  EXPECT_EQ(config->netns_dir, "/run/beacon/netns");
  EXPECT_EQ(config->bin_dirs,
            (std::vector<std::string>{"/opt/cni/bin", "/usr/lib/cni", "/usr/lib/beaconbox/cni"}));
  config = ParseCniConfig("bin_dir = \"/a::/b\"", "/s", "/r");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->bin_dirs, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_FALSE(config->configured_netns);
  config = ParseCniConfig("configured_netns = true", "/s", "/r");
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(config->configured_netns);
  for (const char* bad :
       {"bin_dir = \"rel\"", "nope = 1", "ifname = \"a/b\"", "tap_name = \"eth0\"",
        "timeout_seconds = 0", "conf_dir = \"x\"", "configured_netns = \"yes\""}) {
    EXPECT_FALSE(ParseCniConfig(bad, "/s", "/r").ok()) << bad;
  }
}

}  // namespace
}  // namespace beaconbox::cni
