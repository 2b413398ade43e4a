#include "guest/vminitd/network.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/base/errno_error.h"
#include "common/base/unique_fd.h"
#include "guest/vminitd/network_config.h"
#include "guest/vminitd/system.h"

namespace beaconbox::guest {
namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

Result<std::string> InterfaceByMac(const std::string& mac) {
  std::string wanted = Lower(mac);
  DIR* dir = ::opendir("/sys/class/net");
  if (!dir) return ErrnoError("opendir", "/sys/class/net");
  std::string found;
  while (struct dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    auto address = ReadSmallFile("/sys/class/net/" + name + "/address", 64);
    if (address.ok() && Lower(*address).starts_with(wanted) && wanted.size() == 17) found = name;
  }
  ::closedir(dir);
  if (found.empty())
    return MakeError(ErrorCode::kNotFound, "no network interface with MAC " + mac.substr(0, 32));
  return found;
}

void SetSockaddr(struct sockaddr* sa, uint32_t address) {
  auto* in = reinterpret_cast<struct sockaddr_in*>(sa);
  std::memset(in, 0, sizeof(*in));
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = address;
}

Status Ioctl(int sock, unsigned long request, struct ifreq& ifr, const char* what) {
  if (::ioctl(sock, request, &ifr) != 0) return ErrnoError(what, ifr.ifr_name);
  return Status::Ok();
}

Status ValidIfName(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ ||
      name.find_first_of("/: \t\n") != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "interface name \"" + name.substr(0, 32) + "\" is invalid");
  }
  return Status::Ok();
}

// The kernel's struct in6_ifreq (linux/ipv6.h, which clashes with netinet/in.h).
struct In6Ifreq {
  struct in6_addr ifr6_addr;
  uint32_t ifr6_prefixlen;
  int ifr6_ifindex;
};

// Writes one IPv6 sysctl of `name` (/proc/sys/net/ipv6/conf/<name>/<key>).
Status SetIpv6Conf(const std::string& name, const char* key, const char* value) {
  std::string path = "/proc/sys/net/ipv6/conf/" + name + "/" + key;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  size_t size = std::strlen(value);
  if (!fd || ::write(fd.get(), value, size) != ssize_t(size)) {
    return ErrnoError("write", path).Wrap("configure IPv6 of " + name);
  }
  return Status::Ok();
}

// Addresses are static (from the host): no router advertisements, no SLAAC, and no
// duplicate address detection delay (the host's lease store keeps them unique).
Status PrepareIpv6(const std::string& name) {
  BBX_RETURN_IF_ERROR(SetIpv6Conf(name, "disable_ipv6", "0"));
  BBX_RETURN_IF_ERROR(SetIpv6Conf(name, "accept_ra", "0"));
  BBX_RETURN_IF_ERROR(SetIpv6Conf(name, "autoconf", "0"));
  BBX_RETURN_IF_ERROR(SetIpv6Conf(name, "accept_dad", "0"));
  return SetIpv6Conf(name, "dad_transmits", "0");
}

Status AddAddress6(const std::string& name, const Cidr6& cidr) {
  UniqueFd sock6(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock6) return ErrnoError("socket", "AF_INET6").Wrap("the guest kernel has no IPv6?");
  In6Ifreq request{};
  std::memcpy(request.ifr6_addr.s6_addr, cidr.address, 16);
  request.ifr6_prefixlen = cidr.prefix;
  request.ifr6_ifindex = int(::if_nametoindex(name.c_str()));
  if (request.ifr6_ifindex == 0) return ErrnoError("find interface", name);
  if (::ioctl(sock6.get(), SIOCSIFADDR, &request) != 0 && errno != EEXIST) {
    return ErrnoError("set IPv6 address of", name);
  }
  return Status::Ok();
}

// Removes every IPv4 address of `name`: its aliases (name:N, whose SIOCSIFFLAGS
// without IFF_UP deletes the address), then its own (set to 0.0.0.0, which deletes it).
Status RemoveIpv4Addresses(int sock, const std::string& name) {
  std::vector<struct ifreq> entries(256);
  struct ifconf list {};
  list.ifc_len = int(entries.size() * sizeof(struct ifreq));
  list.ifc_req = entries.data();
  if (::ioctl(sock, SIOCGIFCONF, &list) != 0) return ErrnoError("list IPv4 addresses of", name);
  std::vector<std::string> labels;
  for (size_t i = 0; i < size_t(list.ifc_len) / sizeof(struct ifreq); ++i) {
    const std::string label(entries[i].ifr_name, strnlen(entries[i].ifr_name, IFNAMSIZ));
    if (label.starts_with(name + ":")) labels.insert(labels.begin(), label);
    if (label == name) labels.push_back(label);
  }
  for (const std::string& label : labels) {
    struct ifreq ifr {};
    std::strncpy(ifr.ifr_name, label.c_str(), IFNAMSIZ - 1);
    int rc = 0;
    if (label == name) {
      SetSockaddr(&ifr.ifr_addr, 0);
      rc = ::ioctl(sock, SIOCSIFADDR, &ifr);
    } else {
      rc = ::ioctl(sock, SIOCSIFFLAGS, &ifr);
    }
    // Gone already: removing the primary address took its subnet's secondaries with it.
    if (rc != 0 && errno != EADDRNOTAVAIL) return ErrnoError("remove the IPv4 address of", label);
  }
  return Status::Ok();
}

// The NIC `name` of a restored VM, which still has the MAC, addresses and routes it was
// saved with: down (the kernel drops its IPv6 addresses and its routes), no IPv4
// address, then the new lease's `mac` (virtio-net tells the device: its receive
// filter follows, and the host's anti-spoofing rules expect this MAC).
Status ResetRestoredInterface(int sock, const std::string& name, const std::string& mac) {
  BBX_ASSIGN_OR_RETURN(auto hwaddr, ParseMac(mac));
  struct ifreq ifr {};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  BBX_RETURN_IF_ERROR(Ioctl(sock, SIOCGIFFLAGS, ifr, "get flags of"));
  ifr.ifr_flags &= ~IFF_UP;
  BBX_RETURN_IF_ERROR(Ioctl(sock, SIOCSIFFLAGS, ifr, "bring down"));
  BBX_RETURN_IF_ERROR(RemoveIpv4Addresses(sock, name));
  std::memset(&ifr, 0, sizeof(ifr));
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  std::memcpy(ifr.ifr_hwaddr.sa_data, hwaddr.data(), hwaddr.size());
  return Ioctl(sock, SIOCSIFHWADDR, ifr, "set the MAC of");
}

Status ConfigureInterface(int sock, const ::beaconbox::guest::v1::InterfaceConfig& config,
                          bool restored) {
  std::string current;
  if (restored) {
    // Named by the first ConfigureNetwork before the save.
    BBX_RETURN_IF_ERROR(ValidIfName(config.name()));
    if (::if_nametoindex(config.name().c_str()) == 0) {
      return MakeError(ErrorCode::kNotFound,
                       "the restored VM has no network interface " + config.name());
    }
    current = config.name();
    BBX_RETURN_IF_ERROR(ResetRestoredInterface(sock, current, config.mac()));
  } else {
    BBX_ASSIGN_OR_RETURN(current, InterfaceByMac(config.mac()));
  }
  std::string name = config.name().empty() ? current : config.name();
  BBX_RETURN_IF_ERROR(ValidIfName(name));
  if (config.addresses_size() > 16)
    return MakeError(ErrorCode::kInvalidArgument, "more than 16 addresses");
  std::vector<Cidr4> addresses;
  std::vector<Cidr6> addresses6;
  for (const std::string& text : config.addresses()) {
    if (LooksIpv6(text)) {
      BBX_ASSIGN_OR_RETURN(Cidr6 cidr, ParseCidr6(text, true));
      addresses6.push_back(cidr);
      continue;
    }
    BBX_ASSIGN_OR_RETURN(Cidr4 cidr, ParseCidr4(text));
    addresses.push_back(cidr);
  }
  struct ifreq ifr {};
  std::strncpy(ifr.ifr_name, current.c_str(), IFNAMSIZ - 1);
  BBX_RETURN_IF_ERROR(Ioctl(sock, SIOCGIFFLAGS, ifr, "get flags of"));
  if (name != current) {
    ifr.ifr_flags &= ~IFF_UP;
    BBX_RETURN_IF_ERROR(Ioctl(sock, SIOCSIFFLAGS, ifr, "bring down"));
    std::strncpy(ifr.ifr_newname, name.c_str(), IFNAMSIZ - 1);
    BBX_RETURN_IF_ERROR(Ioctl(sock, SIOCSIFNAME, ifr, "rename"));
  }
  std::memset(&ifr, 0, sizeof(ifr));
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (config.mtu() != 0) {
    if (config.mtu() < 68 || config.mtu() > 65535) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "MTU " + std::to_string(config.mtu()) + " out of range");
    }
    ifr.ifr_mtu = int(config.mtu());
    BBX_RETURN_IF_ERROR(Ioctl(sock, SIOCSIFMTU, ifr, "set MTU of"));
  }
  // The first address is the interface's own; more go on aliases name:1, name:2, ...
  for (size_t i = 0; i < addresses.size(); ++i) {
    std::string label = i == 0 ? name : name + ":" + std::to_string(i);
    if (label.size() >= IFNAMSIZ)
      return MakeError(ErrorCode::kInvalidArgument, "alias name too long: " + label);
    struct ifreq addr {};
    std::strncpy(addr.ifr_name, label.c_str(), IFNAMSIZ - 1);
    SetSockaddr(&addr.ifr_addr, addresses[i].address);
    BBX_RETURN_IF_ERROR(Ioctl(sock, SIOCSIFADDR, addr, "set address of"));
    SetSockaddr(&addr.ifr_netmask, addresses[i].netmask);
    BBX_RETURN_IF_ERROR(Ioctl(sock, SIOCSIFNETMASK, addr, "set netmask of"));
  }
  if (!addresses6.empty()) BBX_RETURN_IF_ERROR(PrepareIpv6(name));
  BBX_RETURN_IF_ERROR(Ioctl(sock, SIOCGIFFLAGS, ifr, "get flags of"));
  ifr.ifr_flags |= IFF_UP;
  BBX_RETURN_IF_ERROR(Ioctl(sock, SIOCSIFFLAGS, ifr, "bring up"));
  for (const Cidr6& cidr : addresses6) BBX_RETURN_IF_ERROR(AddAddress6(name, cidr));
  return Status::Ok();
}

Status AddRoute6(const ::beaconbox::guest::v1::RouteConfig& route) {
  BBX_ASSIGN_OR_RETURN(
      Cidr6 destination,
      ParseCidr6(route.destination().empty() ? "::/0" : route.destination(), false));
  struct in6_rtmsg entry {};
  std::memcpy(entry.rtmsg_dst.s6_addr, destination.address, 16);
  entry.rtmsg_dst_len = uint16_t(destination.prefix);
  entry.rtmsg_flags = RTF_UP;
  entry.rtmsg_metric = 1;
  if (!route.gateway().empty()) {
    if (::inet_pton(AF_INET6, route.gateway().c_str(), &entry.rtmsg_gateway) != 1 ||
        IN6_IS_ADDR_MULTICAST(&entry.rtmsg_gateway) ||
        IN6_IS_ADDR_UNSPECIFIED(&entry.rtmsg_gateway)) {
      return MakeError(ErrorCode::kInvalidArgument, "gateway \"" + route.gateway().substr(0, 64) +
                                                        "\" is not a usable IPv6 address");
    }
    entry.rtmsg_flags |= RTF_GATEWAY;
  }
  if (destination.prefix == 128) entry.rtmsg_flags |= RTF_HOST;
  if (!route.device().empty()) {
    BBX_RETURN_IF_ERROR(ValidIfName(route.device()));
    entry.rtmsg_ifindex = int(::if_nametoindex(route.device().c_str()));
    if (entry.rtmsg_ifindex == 0) return ErrnoError("find interface", route.device());
  }
  UniqueFd sock6(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock6) return ErrnoError("socket", "AF_INET6");
  if (::ioctl(sock6.get(), SIOCADDRT, &entry) != 0 && errno != EEXIST) {
    return ErrnoError("add route to", route.destination() + " via " + route.gateway());
  }
  return Status::Ok();
}

Status AddRoute(int sock, const ::beaconbox::guest::v1::RouteConfig& route) {
  if (LooksIpv6(route.destination()) || LooksIpv6(route.gateway())) return AddRoute6(route);
  BBX_ASSIGN_OR_RETURN(Cidr4 destination,
                       ParseCidr4(route.destination().empty() ? "0.0.0.0/0" : route.destination()));
  struct rtentry entry {};
  SetSockaddr(&entry.rt_dst, destination.address & destination.netmask);
  SetSockaddr(&entry.rt_genmask, destination.netmask);
  entry.rt_flags = RTF_UP;
  if (!route.gateway().empty()) {
    struct in_addr gateway {};
    if (::inet_pton(AF_INET, route.gateway().c_str(), &gateway) != 1) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "gateway \"" + route.gateway().substr(0, 64) + "\" is not IPv4");
    }
    SetSockaddr(&entry.rt_gateway, gateway.s_addr);
    entry.rt_flags |= RTF_GATEWAY;
  }
  if (destination.prefix == 32) entry.rt_flags |= RTF_HOST;
  std::string device = route.device();
  if (!device.empty()) {
    BBX_RETURN_IF_ERROR(ValidIfName(device));
    entry.rt_dev = device.data();
  }
  if (::ioctl(sock, SIOCADDRT, &entry) != 0 && errno != EEXIST) {
    return ErrnoError("add route to", route.destination() + " via " + route.gateway());
  }
  return Status::Ok();
}

}  // namespace

Status ConfigureNetwork(const ::beaconbox::guest::v1::NetworkConfig& config) {
  if (config.interfaces_size() > 64 || config.routes_size() > 256) {
    return MakeError(ErrorCode::kInvalidArgument, "too many interfaces or routes");
  }
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return ErrnoError("socket", "AF_INET");
  for (const auto& interface : config.interfaces()) {
    Status s = ConfigureInterface(sock.get(), interface, config.restored());
    // A NIC hot-added to a VM restored from a template (plugins/vmm-qemu/template.h)
    // may still be probing. A restored VM's NIC was there when it was saved.
    for (int retry = 0; !s.ok() && !config.restored() && retry < 100; ++retry) {
      ::usleep(100 * 1000);
      s = ConfigureInterface(sock.get(), interface, config.restored());
    }
    if (!s.ok()) return s.error().Wrap("configuring NIC " + interface.mac().substr(0, 32));
  }
  for (const auto& route : config.routes()) BBX_RETURN_IF_ERROR(AddRoute(sock.get(), route));
  if (config.dns_servers_size() > 0 || config.dns_search_size() > 0) {
    std::vector<std::string> servers(config.dns_servers().begin(), config.dns_servers().end());
    std::vector<std::string> search(config.dns_search().begin(), config.dns_search().end());
    BBX_ASSIGN_OR_RETURN(std::string text, RenderResolvConf(servers, search));
    BBX_RETURN_IF_ERROR(WriteFileAtomic("/etc/resolv.conf", text));
  }
  return Status::Ok();
}

}  // namespace beaconbox::guest
