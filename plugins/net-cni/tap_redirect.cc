#include "plugins/net-cni/tap_redirect.h"

#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/pkt_cls.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <net/if.h>
#include <netlink/cache.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/action.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/tc.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "common/base/errno_error.h"
#include "common/base/unique_fd.h"
#include "plugins/net-cni/rtnl_socket.h"

namespace beaconbox::cni {

Error NlError(const std::string& what, int rc) {
  const int code = rc < 0 ? -rc : rc;
  return MakeError(
      code == NLE_PERM ? ErrorCode::kPermission : ErrorCode::kInternal,
      what + ": " + nl_geterror(code) + (code == NLE_PERM ? " (needs CAP_NET_ADMIN)" : ""));
}

Result<NlSockPtr> ConnectRtnl() {
  NlSockPtr socket(nl_socket_alloc());
  if (!socket) return MakeError(ErrorCode::kExhausted, "netlink: out of memory");
  if (int rc = nl_connect(socket.get(), NETLINK_ROUTE); rc < 0) {
    return NlError("connect rtnetlink", rc);
  }
  return socket;
}

namespace {

struct LinkPut {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
struct QdiscPut {
  void operator()(rtnl_qdisc* q) const { rtnl_qdisc_put(q); }
};
struct ClsPut {
  void operator()(rtnl_cls* c) const { rtnl_cls_put(c); }
};
using SockPtr = NlSockPtr;
using LinkPtr = std::unique_ptr<rtnl_link, LinkPut>;
using QdiscPtr = std::unique_ptr<rtnl_qdisc, QdiscPut>;
using ClsPtr = std::unique_ptr<rtnl_cls, ClsPut>;

constexpr uint32_t kIngressHandle = 0xffff0000u;  // ffff:

Result<SockPtr> Connect() { return ConnectRtnl(); }

Result<LinkPtr> GetLink(nl_sock* socket, const std::string& name) {
  rtnl_link* link = nullptr;
  int rc = rtnl_link_get_kernel(socket, 0, name.c_str(), &link);
  if (rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV) return LinkPtr();
  if (rc < 0) return NlError("look up device " + name, rc);
  return LinkPtr(link);
}

LinkFacts FactsOf(rtnl_link* link) {
  LinkFacts facts;
  facts.ifindex = rtnl_link_get_ifindex(link);
  facts.mtu = rtnl_link_get_mtu(link);
  if (nl_addr* address = rtnl_link_get_addr(link);
      address != nullptr && nl_addr_get_len(address) == 6) {
    const auto* bytes = static_cast<const uint8_t*>(nl_addr_get_binary_addr(address));
    char text[18];
    std::snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1], bytes[2],
                  bytes[3], bytes[4], bytes[5]);
    facts.mac = text;
  }
  return facts;
}

// Deletes the ingress qdisc of `ifindex` (and with it every filter under it).
void DeleteIngress(nl_sock* socket, int ifindex) {
  QdiscPtr qdisc(rtnl_qdisc_alloc());
  if (!qdisc) return;
  rtnl_tc_set_ifindex(TC_CAST(qdisc.get()), ifindex);
  rtnl_tc_set_parent(TC_CAST(qdisc.get()), TC_H_INGRESS);
  rtnl_tc_set_handle(TC_CAST(qdisc.get()), kIngressHandle);
  rtnl_tc_set_kind(TC_CAST(qdisc.get()), "ingress");
  (void)rtnl_qdisc_delete(socket, qdisc.get());
}

// An ingress qdisc on `from` whose one filter sends every frame out of `to`.
Status Redirect(nl_sock* socket, int from, int to, const std::string& what) {
  DeleteIngress(socket, from);  // a previous redirect (a retried ADD) goes
  QdiscPtr qdisc(rtnl_qdisc_alloc());
  if (!qdisc) return MakeError(ErrorCode::kExhausted, "netlink: out of memory");
  rtnl_tc_set_ifindex(TC_CAST(qdisc.get()), from);
  rtnl_tc_set_parent(TC_CAST(qdisc.get()), TC_H_INGRESS);
  rtnl_tc_set_handle(TC_CAST(qdisc.get()), kIngressHandle);
  if (int rc = rtnl_tc_set_kind(TC_CAST(qdisc.get()), "ingress"); rc < 0) {
    return NlError("ingress qdisc on " + what, rc);
  }
  if (int rc = rtnl_qdisc_add(socket, qdisc.get(), NLM_F_CREATE); rc < 0 && rc != -NLE_EXIST) {
    return NlError("add ingress qdisc on " + what, rc);
  }
  ClsPtr filter(rtnl_cls_alloc());
  rtnl_act* action = rtnl_act_alloc();
  if (!filter || action == nullptr) {
    if (action != nullptr) rtnl_act_put(action);
    return MakeError(ErrorCode::kExhausted, "netlink: out of memory");
  }
  rtnl_tc_set_ifindex(TC_CAST(filter.get()), from);
  rtnl_tc_set_parent(TC_CAST(filter.get()), kIngressHandle);
  rtnl_cls_set_protocol(filter.get(), ETH_P_ALL);
  rtnl_cls_set_prio(filter.get(), 1);
  // u32 matching every packet (a zero key under a zero mask): matchall is not built
  // into every kernel (Debian's has it as a module, some have none), u32 is.
  if (int rc = rtnl_tc_set_kind(TC_CAST(filter.get()), "u32"); rc < 0) {
    rtnl_act_put(action);
    return NlError("u32 filter on " + what, rc);
  }
  rtnl_u32_add_key_uint32(filter.get(), 0, 0, 0, 0);
  rtnl_u32_set_cls_terminal(filter.get());
  if (int rc = rtnl_tc_set_kind(TC_CAST(action), "mirred"); rc < 0) {
    rtnl_act_put(action);
    return NlError("mirred action on " + what, rc);
  }
  rtnl_mirred_set_action(action, TCA_EGRESS_REDIR);
  rtnl_mirred_set_policy(action, TC_ACT_STOLEN);
  rtnl_mirred_set_ifindex(action, static_cast<uint32_t>(to));
  int rc = rtnl_u32_add_action(filter.get(), action);
  rtnl_act_put(action);  // the filter holds its own reference
  if (rc < 0) return NlError("attach mirred to the filter on " + what, rc);
  if (rc = rtnl_cls_add(socket, filter.get(), NLM_F_CREATE | NLM_F_EXCL); rc < 0) {
    return NlError("add redirect filter on " + what, rc);
  }
  return Status::Ok();
}

Status SetOwner(int tun_fd, const std::string& tap_name, const TapOwner& owner) {
  if (::ioctl(tun_fd, TUNSETOWNER, static_cast<unsigned long>(owner.uid)) != 0) {
    return ErrnoError("TUNSETOWNER " + std::to_string(owner.uid), tap_name);
  }
  if (::ioctl(tun_fd, TUNSETGROUP, static_cast<unsigned long>(owner.gid)) != 0) {
    return ErrnoError("TUNSETGROUP " + std::to_string(owner.gid), tap_name);
  }
  return Status::Ok();
}

// Gives the existing persistent TAP `tap_name` another owner: attaching to it is the
// only way to reach the ioctls, so one a VMM holds open (EBUSY) cannot be changed.
Status Reown(const std::string& tap_name, const TapOwner& owner) {
  UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!tun) return ErrnoError("open", "/dev/net/tun");
  ifreq request{};
  std::strncpy(request.ifr_name, tap_name.c_str(), IFNAMSIZ - 1);
  request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(tun.get(), TUNSETIFF, &request) != 0) {
    return ErrnoError("attach to re-own the existing TAP", tap_name);
  }
  return SetOwner(tun.get(), tap_name, owner);
}

struct OwnershipReply {
  bool got = false;
  bool is_tun = false;
  TapOwnership ownership;
};

int OnLinkMessage(nl_msg* message, void* arg) {
  auto* reply = static_cast<OwnershipReply*>(arg);
  nlattr* attrs[IFLA_MAX + 1] = {};
  if (nlmsg_parse(nlmsg_hdr(message), sizeof(ifinfomsg), attrs, IFLA_MAX, nullptr) < 0) {
    return NL_SKIP;
  }
  reply->got = true;
  if (attrs[IFLA_LINKINFO] == nullptr) return NL_OK;
  nlattr* info[IFLA_INFO_MAX + 1] = {};
  if (nla_parse_nested(info, IFLA_INFO_MAX, attrs[IFLA_LINKINFO], nullptr) < 0) return NL_OK;
  if (info[IFLA_INFO_KIND] == nullptr || nla_strcmp(info[IFLA_INFO_KIND], "tun") != 0 ||
      info[IFLA_INFO_DATA] == nullptr) {
    return NL_OK;
  }
  nlattr* tun[IFLA_TUN_MAX + 1] = {};
  if (nla_parse_nested(tun, IFLA_TUN_MAX, info[IFLA_INFO_DATA], nullptr) < 0) return NL_OK;
  if (tun[IFLA_TUN_TYPE] != nullptr && nla_len(tun[IFLA_TUN_TYPE]) >= 1) {
    reply->is_tun = (nla_get_u8(tun[IFLA_TUN_TYPE]) & IFF_TAP) != 0;
  }
  if (tun[IFLA_TUN_OWNER] != nullptr && nla_len(tun[IFLA_TUN_OWNER]) >= 4) {
    reply->ownership.uid = nla_get_u32(tun[IFLA_TUN_OWNER]);
  }
  if (tun[IFLA_TUN_GROUP] != nullptr && nla_len(tun[IFLA_TUN_GROUP]) >= 4) {
    reply->ownership.gid = nla_get_u32(tun[IFLA_TUN_GROUP]);
  }
  return NL_OK;
}

// libnl does not read a tun device's link info: one RTM_GETLINK of its own.
Result<TapOwnership> OwnershipOf(rtnl_link* link, const std::string& tap_name) {
  BBX_ASSIGN_OR_RETURN(SockPtr socket, Connect());
  ifinfomsg request{};
  request.ifi_family = AF_UNSPEC;
  request.ifi_index = rtnl_link_get_ifindex(link);
  OwnershipReply reply;
  nl_socket_modify_cb(socket.get(), NL_CB_VALID, NL_CB_CUSTOM, OnLinkMessage, &reply);
  if (int rc = nl_send_simple(socket.get(), RTM_GETLINK, 0, &request, sizeof(request)); rc < 0) {
    return NlError("ask for " + tap_name, rc);
  }
  if (int rc = nl_recvmsgs_default(socket.get()); rc < 0) {
    if (rc == -NLE_NODEV || rc == -NLE_OBJ_NOTFOUND) {
      return MakeError(ErrorCode::kNotFound, "device " + tap_name + " not found");
    }
    return NlError("read " + tap_name, rc);
  }
  if (!reply.got) return MakeError(ErrorCode::kNotFound, "device " + tap_name + " not found");
  if (!reply.is_tun) {
    return MakeError(ErrorCode::kInvalidArgument, "device " + tap_name + " is not a TAP");
  }
  return reply.ownership;
}

// Whether an ingress filter of `from` redirects (mirred egress redirect) to `to`.
Result<bool> RedirectsTo(nl_sock* socket, int from, int to, const std::string& what) {
  nl_cache* cache = nullptr;
  if (int rc = rtnl_cls_alloc_cache(socket, from, kIngressHandle, &cache); rc < 0) {
    return NlError("list the filters of " + what, rc);
  }
  bool found = false;
  for (nl_object* object = nl_cache_get_first(cache); object != nullptr && !found;
       object = nl_cache_get_next(object)) {
    auto* filter = reinterpret_cast<rtnl_cls*>(object);
    const char* kind = rtnl_tc_get_kind(TC_CAST(filter));
    if (kind == nullptr || std::string(kind) != "u32") continue;
    for (rtnl_act* action = rtnl_u32_get_action(filter); action != nullptr && !found;
         action = rtnl_act_next(action)) {
      const char* action_kind = rtnl_tc_get_kind(TC_CAST(action));
      found = action_kind != nullptr && std::string(action_kind) == "mirred" &&
              rtnl_mirred_get_action(action) == TCA_EGRESS_REDIR &&
              static_cast<int>(rtnl_mirred_get_ifindex(action)) == to;
    }
  }
  nl_cache_free(cache);
  return found;
}

std::string OwnerText(const std::optional<uint32_t>& id) {
  return id ? std::to_string(*id) : std::string("unset");
}

}  // namespace

Result<TapOwnership> TapOwnershipOf(const std::string& tap_name) {
  BBX_ASSIGN_OR_RETURN(SockPtr socket, Connect());
  BBX_ASSIGN_OR_RETURN(LinkPtr link, GetLink(socket.get(), tap_name));
  if (!link) return MakeError(ErrorCode::kNotFound, "device " + tap_name + " not found");
  return OwnershipOf(link.get(), tap_name);
}

Status CheckRedirectedTap(const std::string& peer, const std::string& tap_name,
                          const TapOwner& owner) {
  BBX_ASSIGN_OR_RETURN(SockPtr socket, Connect());
  BBX_ASSIGN_OR_RETURN(LinkPtr tap, GetLink(socket.get(), tap_name));
  if (!tap) return MakeError(ErrorCode::kFailedPrecondition, "TAP " + tap_name + " is missing");
  BBX_ASSIGN_OR_RETURN(LinkPtr peer_link, GetLink(socket.get(), peer));
  if (!peer_link) {
    return MakeError(ErrorCode::kFailedPrecondition, "interface " + peer + " is missing");
  }
  auto ownership = OwnershipOf(tap.get(), tap_name);
  if (!ownership.ok()) {
    return MakeError(ErrorCode::kFailedPrecondition, ownership.error().message);
  }
  if (ownership->uid != owner.uid || ownership->gid != owner.gid) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "TAP " + tap_name + " is owned by " + OwnerText(ownership->uid) + ":" +
                         OwnerText(ownership->gid) + ", not " + std::to_string(owner.uid) + ":" +
                         std::to_string(owner.gid));
  }
  const int tap_index = rtnl_link_get_ifindex(tap.get());
  const int peer_index = rtnl_link_get_ifindex(peer_link.get());
  BBX_ASSIGN_OR_RETURN(bool outward, RedirectsTo(socket.get(), tap_index, peer_index, tap_name));
  if (!outward) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "no tc redirect from " + tap_name + " to " + peer);
  }
  BBX_ASSIGN_OR_RETURN(bool inward, RedirectsTo(socket.get(), peer_index, tap_index, peer));
  if (!inward) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "no tc redirect from " + peer + " to " + tap_name);
  }
  return Status::Ok();
}

bool IsValidInterfaceName(const std::string& name) {
  if (name.empty() || name.size() > 15 || name == "." || name == "..") return false;
  for (char c : name) {
    if (c == '/' || c == ':' || c <= ' ' || c == 0x7f) return false;
  }
  return true;
}

Result<LinkFacts> LinkFactsOf(const std::string& name) {
  BBX_ASSIGN_OR_RETURN(SockPtr socket, Connect());
  BBX_ASSIGN_OR_RETURN(LinkPtr link, GetLink(socket.get(), name));
  if (!link) return MakeError(ErrorCode::kNotFound, "device " + name + " not found");
  return FactsOf(link.get());
}

TapOwner ProcessTapOwner() { return TapOwner{::geteuid(), ::getegid()}; }

Result<LinkFacts> CreateRedirectedTap(const std::string& peer, const std::string& tap_name) {
  return CreateRedirectedTap(peer, tap_name, ProcessTapOwner());
}

Result<LinkFacts> CreateRedirectedTap(const std::string& peer, const std::string& tap_name,
                                      const TapOwner& owner) {
  if (!IsValidInterfaceName(peer) || !IsValidInterfaceName(tap_name) || peer == tap_name) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "bad interface names \"" + peer + "\" / \"" + tap_name + "\"");
  }
  BBX_ASSIGN_OR_RETURN(SockPtr socket, Connect());
  BBX_ASSIGN_OR_RETURN(LinkPtr peer_link, GetLink(socket.get(), peer));
  if (!peer_link) {
    return MakeError(ErrorCode::kNotFound,
                     "interface " + peer + " not found in the container's network namespace");
  }
  const LinkFacts peer_facts = FactsOf(peer_link.get());
  BBX_ASSIGN_OR_RETURN(LinkPtr tap, GetLink(socket.get(), tap_name));
  bool made = false;
  if (tap) {
    const char* kind = rtnl_link_get_type(tap.get());
    if (kind == nullptr || std::string(kind) != "tun") {
      return MakeError(ErrorCode::kAlreadyExists,
                       "device " + tap_name + " exists and is not a TAP: remove it");
    }
    BBX_ASSIGN_OR_RETURN(TapOwnership current, OwnershipOf(tap.get(), tap_name));
    if (current.uid != owner.uid || current.gid != owner.gid) {
      BBX_RETURN_IF_ERROR(Reown(tap_name, owner));
    }
  } else {
    UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!tun) return ErrnoError("open", "/dev/net/tun");
    ifreq request{};
    std::strncpy(request.ifr_name, tap_name.c_str(), IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(tun.get(), TUNSETIFF, &request) != 0) return ErrnoError("TUNSETIFF", tap_name);
    // Owner first: until TUNSETPERSIST the device goes with the descriptor.
    BBX_RETURN_IF_ERROR(SetOwner(tun.get(), tap_name, owner));
    if (::ioctl(tun.get(), TUNSETPERSIST, 1) != 0) return ErrnoError("TUNSETPERSIST", tap_name);
    made = true;
    BBX_ASSIGN_OR_RETURN(tap, GetLink(socket.get(), tap_name));
    if (!tap) return MakeError(ErrorCode::kInternal, "TAP " + tap_name + " vanished");
  }
  auto undo = [&](Error error) -> Error {
    DeleteIngress(socket.get(), peer_facts.ifindex);
    if (made) (void)rtnl_link_delete(socket.get(), tap.get());
    return error;
  };
  {
    LinkPtr change(rtnl_link_alloc());
    if (peer_facts.mtu != 0) rtnl_link_set_mtu(change.get(), peer_facts.mtu);
    rtnl_link_set_flags(change.get(), IFF_UP);
    if (int rc = rtnl_link_change(socket.get(), tap.get(), change.get(), 0); rc < 0) {
      return undo(NlError("bring up " + tap_name, rc));
    }
  }
  const int tap_index = rtnl_link_get_ifindex(tap.get());
  if (Status s = Redirect(socket.get(), peer_facts.ifindex, tap_index, peer); !s.ok()) {
    return undo(s.error());
  }
  if (Status s = Redirect(socket.get(), tap_index, peer_facts.ifindex, tap_name); !s.ok()) {
    return undo(s.error());
  }
  BBX_ASSIGN_OR_RETURN(LinkPtr fresh, GetLink(socket.get(), tap_name));
  if (!fresh) return undo(MakeError(ErrorCode::kInternal, "TAP " + tap_name + " vanished"));
  return FactsOf(fresh.get());
}

Status DeleteRedirectedTap(const std::string& peer, const std::string& tap_name) {
  BBX_ASSIGN_OR_RETURN(SockPtr socket, Connect());
  if (IsValidInterfaceName(tap_name)) {
    BBX_ASSIGN_OR_RETURN(LinkPtr tap, GetLink(socket.get(), tap_name));
    if (tap) {
      int rc = rtnl_link_delete(socket.get(), tap.get());
      if (rc < 0 && rc != -NLE_OBJ_NOTFOUND && rc != -NLE_NODEV) {
        return NlError("delete TAP " + tap_name, rc);
      }
    }
  }
  if (IsValidInterfaceName(peer)) {
    BBX_ASSIGN_OR_RETURN(LinkPtr link, GetLink(socket.get(), peer));
    if (link) DeleteIngress(socket.get(), rtnl_link_get_ifindex(link.get()));
  }
  return Status::Ok();
}

}  // namespace beaconbox::cni
