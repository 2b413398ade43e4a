#include "plugins/net-bridge/bridge_network.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>

namespace beaconbox::net {

namespace pb = ::beaconbox::plugin::v1;

std::string BridgeNetwork::OwnerMarkFor(const std::string& db_path) {
  constexpr size_t kMaxAlias = 255;  // IFALIASZ - 1
  std::string mark = "beaconbox:" + db_path;
  if (mark.size() <= kMaxAlias) return mark;
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : db_path) hash = (hash ^ c) * 1099511628211ull;
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(hash));
  return std::string("beaconbox:#") + hex;
}

BridgeNetwork::BridgeNetwork(BridgeConfig config, LogFn log)
    : config_(std::move(config)), log_(std::move(log)), owner_mark_(OwnerMarkFor(config_.db_path)) {
  if (!log_) log_ = [](LogLevel, const std::string&) {};
}

BridgeNetwork::~BridgeNetwork() {
  {
    std::lock_guard lock(stop_mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (reconciler_.joinable()) reconciler_.join();
}

Status BridgeNetwork::OpenResources() {
  std::lock_guard lock(open_mutex_);
  if (!store_) {
    BBX_ASSIGN_OR_RETURN(store_, LeaseStore::Open(config_.db_path, AddressPools::Of(config_)));
  }
  if (!links_) {
    BBX_ASSIGN_OR_RETURN(links_, Links::Open());
  }
  if (!nft_) {
    BBX_ASSIGN_OR_RETURN(nft_, NftRules::Open(config_, config_.db_path + ".nft-lock"));
  }
  return Status::Ok();
}

void BridgeNetwork::StartOnce() {
  {
    std::lock_guard lock(open_mutex_);
    if (started_) return;
    started_ = true;
  }
  auto report = ReconcileOpened();
  if (!report.ok()) {
    log_(LogLevel::kWarn, "net-bridge: reconcile at start failed: " + report.error().message);
  }
  if (config_.reconcile_interval_seconds > 0) {
    reconciler_ = std::thread([this] { ReconcilerLoop(); });
  }
}

void BridgeNetwork::ReconcilerLoop() {
  std::unique_lock lock(stop_mutex_);
  while (!stop_cv_.wait_for(lock, std::chrono::seconds(config_.reconcile_interval_seconds),
                            [this] { return stopping_; })) {
    lock.unlock();
    auto report = ReconcileOpened();
    if (!report.ok()) {
      log_(LogLevel::kWarn, "net-bridge: periodic reconcile failed: " + report.error().message);
    }
    lock.lock();
  }
}

Result<bool> BridgeNetwork::LeasesIdle() {
  BBX_ASSIGN_OR_RETURN(size_t count, store_->Count());
  return count == 0;
}

Status BridgeNetwork::EnsureRules(bool force) {
  // With remove_rules_when_idle another shim may delete the rules whenever the
  // last lease goes, so every attach checks again (under the shared lock).
  if (!force && rules_ensured_ && !config_.remove_rules_when_idle) return Status::Ok();
  BBX_RETURN_IF_ERROR(nft_->Ensure());
  rules_ensured_ = true;
  return Status::Ok();
}

GuestAddresses BridgeNetwork::GuardedAddresses(const LeaseRecord& lease) const {
  // Only the families the guest is given: an address of a family turned off stays
  // in the lease (until it is released) but the guest may not send from it.
  return GuestAddresses{config_.ipv4 ? lease.address : 0, config_.ipv6 ? lease.address6 : 0};
}

namespace {
constexpr const char* kGatewayMadeKey = "gateway4_made";
}  // namespace

Status BridgeNetwork::TrackIpv4Gateway(bool added) {
  if (config_.ipv4) {
    if (!added) return Status::Ok();  // there before: ours only if recorded then
    return store_->SetMeta(kGatewayMadeKey, config_.bridge + " " + FormatIpv4(config_.gateway) +
                                                "/" + std::to_string(config_.subnet.prefix_length));
  }
  BBX_ASSIGN_OR_RETURN(std::string made, store_->Meta(kGatewayMadeKey));
  const size_t space = made.find(' ');
  if (made.empty() || space == std::string::npos || made.substr(0, space) != config_.bridge) {
    return Status::Ok();  // none of ours on this bridge
  }
  // "<a.b.c.d>/<len>" as written above.
  const std::string cidr = made.substr(space + 1);
  const size_t slash = cidr.find('/');
  auto address = ParseIpv4(cidr.substr(0, slash));
  const std::string prefix_text = slash == std::string::npos ? "" : cidr.substr(slash + 1);
  if (!address.ok() || prefix_text.empty() || prefix_text.size() > 2 ||
      prefix_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(prefix_text) > 32) {
    log_(LogLevel::kWarn, "net-bridge: ignoring a malformed gateway4_made record \"" +
                              made.substr(0, 64) + "\" in " + config_.db_path);
    return store_->SetMeta(kGatewayMadeKey, "");
  }
  // Containers started with ipv4 = true still route through it.
  BBX_ASSIGN_OR_RETURN(size_t ipv4_leases, store_->CountIpv4());
  if (ipv4_leases > 0) return Status::Ok();
  BBX_ASSIGN_OR_RETURN(bool removed,
                       links_->RemoveAddress(config_.bridge, *address,
                                             static_cast<uint32_t>(std::stoul(prefix_text))));
  if (removed) {
    log_(LogLevel::kInfo, "net-bridge: ipv4 = false: removed the IPv4 gateway " + cidr +
                              " it had added to " + config_.bridge);
  }
  return store_->SetMeta(kGatewayMadeKey, "");
}

Result<pb::NetworkAttachment> BridgeNetwork::Attach(const pb::NetworkAttachRequest& request) {
  const ContainerRef container{request.namespace_(), request.container_id()};
  const std::string id = container.Name();
  if (container.id.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "attach: empty container id");
  }
  BBX_RETURN_IF_ERROR(OpenResources());
  StartOnce();

  int64_t owner_pid = request.owner_pid() > 0 ? request.owner_pid() : ::getpid();
  LeaseOwner owner = CurrentOwner(owner_pid);
  if (owner.start_time == 0) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "attach " + id + ": owner pid " + std::to_string(owner_pid) + " is not running");
  }
  // The shared parts first, so that a broken setup leaves no lease behind.
  bool added_gateway = false;
  BBX_ASSIGN_OR_RETURN(
      int bridge_ifindex,
      links_->EnsureBridge(config_.bridge, config_.gateway, config_.subnet.prefix_length,
                           config_.mtu, config_.ipv6 ? config_.gateway6 : 0,
                           config_.prefix6.prefix_length, config_.ipv4, &added_gateway));
  BBX_RETURN_IF_ERROR(TrackIpv4Gateway(added_gateway));
  if (config_.enable_ip_forward && !ip_forward_checked_) {
    auto changed = EnableIpForwarding(config_.ipv4, config_.ipv6);
    if (!changed.ok()) return changed.error();
    if (*changed) log_(LogLevel::kInfo, "net-bridge: enabled IP forwarding");
    ip_forward_checked_ = true;
  }
  // A new lease never takes the name of a device another configuration made.
  auto taken = [this](const std::string& tap) {
    auto alias = links_->Alias(tap);
    return !alias.ok() || (alias->has_value() && **alias != owner_mark_);
  };
  BBX_ASSIGN_OR_RETURN(LeaseStore::Acquired acquired, store_->Acquire(container, owner, taken));
  const LeaseRecord& lease = acquired.lease;
  const std::string mac = MacFor(container);
  Status devices = links_->EnsureTap(lease.tap_name, bridge_ifindex, config_.mtu, owner_mark_);
  if (devices.ok()) devices = EnsureRules(false);
  // Before the VMM can open the TAP: the guest can send only as its own lease.
  if (devices.ok()) devices = nft_->GuardTap(lease.tap_name, mac, GuardedAddresses(lease));
  if (!devices.ok()) {
    if (acquired.created) {  // undo: the TAP and its guard, then the lease
      (void)DeleteOwnTap(lease.tap_name);
      (void)store_->Release(container, &lease);
    }
    return devices.error().Wrap("attach " + id);
  }

  pb::NetworkAttachment attachment;
  attachment.set_tap_name(lease.tap_name);
  attachment.set_mac(mac);
  attachment.set_mtu(config_.mtu);
  std::string addresses;
  if (config_.ipv4 && lease.address != 0) {
    auto* address = attachment.add_addresses();
    address->set_address(FormatIpv4(lease.address));
    address->set_prefix_length(config_.subnet.prefix_length);
    auto* route = attachment.add_routes();
    route->set_destination("0.0.0.0/0");
    route->set_gateway(FormatIpv4(config_.gateway));
    addresses = FormatIpv4(lease.address);
  }
  if (config_.ipv6 && lease.address6 != 0) {
    auto* address = attachment.add_addresses();
    address->set_address(FormatIpv6(lease.address6));
    address->set_prefix_length(config_.prefix6.prefix_length);
    auto* route = attachment.add_routes();
    route->set_destination("::/0");
    route->set_gateway(FormatIpv6(config_.gateway6));
    addresses += (addresses.empty() ? "" : " ") + FormatIpv6(lease.address6);
  }
  for (const std::string& server : config_.dns_servers) attachment.add_dns_servers(server);
  if (acquired.created) {
    log_(LogLevel::kInfo, "net-bridge: " + id + " -> " + addresses + " on " + lease.tap_name);
  }
  return attachment;
}

Status BridgeNetwork::Detach(const ContainerRef& container) {
  if (container.id.empty())
    return MakeError(ErrorCode::kInvalidArgument, "detach: empty container id");
  const std::string container_id = container.Name();
  BBX_RETURN_IF_ERROR(OpenResources());
  BBX_ASSIGN_OR_RETURN(std::optional<LeaseRecord> lease, store_->Find(container));
  if (!lease) return Status::Ok();  // unknown or already released
  // The device first: a crash in between leaves a lease whose owner dies with
  // the shim, which reconcile clears.
  auto deleted = DeleteOwnTap(lease->tap_name);
  if (!deleted.ok()) return deleted.error().Wrap("detach " + container_id);
  auto released = store_->Release(container);
  if (!released.ok()) return released.error().Wrap("detach " + container_id);
  if (config_.remove_rules_when_idle) {
    auto removed = nft_->RemoveIfIdle([this] { return LeasesIdle(); });
    if (!removed.ok()) return removed.error().Wrap("detach " + container_id);
    if (*removed) rules_ensured_ = false;
  }
  return Status::Ok();
}

Result<bool> BridgeNetwork::DeleteOwnTap(const std::string& tap) {
  BBX_ASSIGN_OR_RETURN(std::optional<std::string> alias, links_->Alias(tap));
  // "" is a TAP of an older plugin: ours when our lease names it (the callers' case).
  if (alias && !alias->empty() && *alias != owner_mark_) {
    log_(LogLevel::kWarn, "net-bridge: " + tap + " is another configuration's (alias \"" + *alias +
                              "\"): left alone");
    return false;
  }
  BBX_ASSIGN_OR_RETURN(bool deleted, links_->Delete(tap));
  // The guard after the device: a guest never runs unguarded.
  BBX_RETURN_IF_ERROR(nft_->UnguardTap(tap));
  return deleted;
}

Result<pb::ReconcileReport> BridgeNetwork::Reconcile() {
  BBX_RETURN_IF_ERROR(OpenResources());
  return ReconcileOpened();
}

Result<pb::ReconcileReport> BridgeNetwork::ReconcileOpened() {
  std::lock_guard lock(reconcile_mutex_);
  pb::ReconcileReport report;
  // Devices before leases: attach commits a lease before it creates the TAP, so
  // every TAP seen here whose attach is still running has its lease visible below.
  BBX_ASSIGN_OR_RETURN(std::vector<TapDevice> taps, links_->ListTaps(kTapPrefix));
  BBX_ASSIGN_OR_RETURN(std::vector<LeaseRecord> leases, store_->List());

  std::set<std::string> leased_taps;
  std::vector<const LeaseRecord*> live_leases;
  for (const LeaseRecord& lease : leases) {
    const TapDevice* tap = nullptr;
    for (const TapDevice& candidate : taps) {
      if (candidate.name == lease.tap_name) tap = &candidate;
    }
    if (OwnerAlive(lease)) {
      leased_taps.insert(lease.tap_name);
      live_leases.push_back(&lease);
      continue;
    }
    if (tap != nullptr && tap->in_use) {
      live_leases.push_back(&lease);
      // The shim died but its VMM still holds the TAP: the address is in use, so
      // the lease stays until the VMM is gone (vm_cleanup_stale ends it).
      leased_taps.insert(lease.tap_name);
      log_(LogLevel::kWarn, "net-bridge: lease of " + lease.container_id + " (owner pid " +
                                std::to_string(lease.owner_pid) + " gone) kept: " + lease.tap_name +
                                " is still open");
      continue;
    }
    {  // also when the TAP is gone: a crash may have left its guard
      auto deleted = DeleteOwnTap(lease.tap_name);
      if (!deleted.ok()) return deleted.error().Wrap("reconcile");
      if (*deleted) report.add_removed_devices(lease.tap_name);
    }
    const ContainerRef owner_ref{lease.container_namespace, lease.container_id};
    BBX_ASSIGN_OR_RETURN(auto released, store_->Release(owner_ref, &lease));
    if (released) {
      report.add_released_leases(owner_ref.Name());
      log_(LogLevel::kInfo, "net-bridge: released stale lease " + owner_ref.Name() + " (" +
                                FormatIpv4(lease.address) +
                                (lease.address6 != 0 ? " " + FormatIpv6(lease.address6) : "") +
                                ", owner pid " + std::to_string(lease.owner_pid) + " gone)");
    }
  }
  for (const TapDevice& tap : taps) {
    if (leased_taps.count(tap.name) != 0) continue;
    // A TAP of a lease released just above was deleted there already.
    bool reported = false;
    for (const auto& name : report.removed_devices()) reported = reported || name == tap.name;
    if (reported) continue;
    // Only this configuration's: another one (its own lease database) may share the
    // host, and a TAP without our mark may be anyone's.
    if (tap.alias != owner_mark_) continue;
    auto deleted = DeleteOwnTap(tap.name);
    if (!deleted.ok()) return deleted.error().Wrap("reconcile");
    if (*deleted) {
      report.add_removed_devices(tap.name);
      log_(LogLevel::kInfo, "net-bridge: removed " + tap.name + " (no lease)");
    }
  }

  // Guards of running containers: re-created if missing (flushed by someone, or a
  // TAP made by an older plugin).
  if (!live_leases.empty()) {
    BBX_ASSIGN_OR_RETURN(std::vector<std::string> guarded, nft_->GuardedTaps());
    std::set<std::string> guarded_set(guarded.begin(), guarded.end());
    for (const LeaseRecord* lease : live_leases) {
      if (guarded_set.count(lease->tap_name) != 0) continue;
      const TapDevice* tap = nullptr;
      for (const TapDevice& candidate : taps) {
        if (candidate.name == lease->tap_name) tap = &candidate;
      }
      if (tap == nullptr || (!tap->alias.empty() && tap->alias != owner_mark_)) continue;
      BBX_RETURN_IF_ERROR(nft_->GuardTap(lease->tap_name,
                                         MacFor({lease->container_namespace, lease->container_id}),
                                         GuardedAddresses(*lease)));
      log_(LogLevel::kInfo, "net-bridge: guarded " + lease->tap_name + " (it had no guard)");
    }
  }

  // Rules: re-created if someone removed them while containers run; removed when
  // idle if so configured.
  BBX_ASSIGN_OR_RETURN(bool idle, LeasesIdle());
  if (idle && config_.remove_rules_when_idle) {
    BBX_ASSIGN_OR_RETURN(bool removed, nft_->RemoveIfIdle([this] { return LeasesIdle(); }));
    if (removed) rules_ensured_ = false;
  } else if (!idle) {
    BBX_RETURN_IF_ERROR(EnsureRules(true));
  }
  return report;
}

Result<pb::LeaseList> BridgeNetwork::ListLeases() {
  pb::LeaseList list;
  {
    std::lock_guard lock(open_mutex_);
    if (!store_) {
      std::error_code ec;
      if (!std::filesystem::exists(config_.db_path, ec)) return list;
      BBX_ASSIGN_OR_RETURN(store_, LeaseStore::Open(config_.db_path, AddressPools::Of(config_)));
    }
  }
  BBX_ASSIGN_OR_RETURN(std::vector<LeaseRecord> leases, store_->List());
  for (const LeaseRecord& record : leases) {
    pb::Lease* lease = list.add_leases();
    lease->set_container_id(record.container_id);
    lease->set_namespace_(record.container_namespace);
    if (record.address != 0) lease->set_address(FormatIpv4(record.address));
    if (record.address6 != 0) lease->set_address6(FormatIpv6(record.address6));
    lease->set_tap_name(record.tap_name);
    lease->set_owner_pid(record.owner_pid);
    lease->set_created_unix(record.created_unix);
  }
  return list;
}

}  // namespace beaconbox::net
