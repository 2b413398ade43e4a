#include "plugins/net-cni/tap_redirect.h"

#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/pkt_cls.h>
#include <linux/tc_act/tc_mirred.h>
#include <net/if.h>
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

namespace beaconbox::cni {
namespace {

struct SockFree {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct LinkPut {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
struct QdiscPut {
  void operator()(rtnl_qdisc* q) const { rtnl_qdisc_put(q); }
};
struct ClsPut {
  void operator()(rtnl_cls* c) const { rtnl_cls_put(c); }
};
using SockPtr = std::unique_ptr<nl_sock, SockFree>;
using LinkPtr = std::unique_ptr<rtnl_link, LinkPut>;
using QdiscPtr = std::unique_ptr<rtnl_qdisc, QdiscPut>;
using ClsPtr = std::unique_ptr<rtnl_cls, ClsPut>;

constexpr uint32_t kIngressHandle = 0xffff0000u;  // ffff:

Error NlError(const std::string& what, int rc) {
  const int code = rc < 0 ? -rc : rc;
  return MakeError(
      code == NLE_PERM ? ErrorCode::kPermission : ErrorCode::kInternal,
      what + ": " + nl_geterror(code) + (code == NLE_PERM ? " (needs CAP_NET_ADMIN)" : ""));
}

Result<SockPtr> Connect() {
  SockPtr socket(nl_socket_alloc());
  if (!socket) return MakeError(ErrorCode::kExhausted, "netlink: out of memory");
  if (int rc = nl_connect(socket.get(), NETLINK_ROUTE); rc < 0) {
    return NlError("connect rtnetlink", rc);
  }
  return socket;
}

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

}  // namespace

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

Result<LinkFacts> CreateRedirectedTap(const std::string& peer, const std::string& tap_name) {
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
  } else {
    UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!tun) return ErrnoError("open", "/dev/net/tun");
    ifreq request{};
    std::strncpy(request.ifr_name, tap_name.c_str(), IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(tun.get(), TUNSETIFF, &request) != 0) return ErrnoError("TUNSETIFF", tap_name);
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
