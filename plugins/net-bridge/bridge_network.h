// The net-bridge plugin's logic: one instance per plugin init. It turns attach /
// detach / reconcile / list into lease, device and nftables changes. Nothing on the
// system changes before the first operation (init must not change the system); the
// first attach reconciles stale state and starts the periodic reconciler.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "beaconbox/plugin/v1/network.pb.h"
#include "common/base/result.h"
#include "plugins/net-bridge/config.h"
#include "plugins/net-bridge/lease_store.h"
#include "plugins/net-bridge/links.h"
#include "plugins/net-bridge/nft_rules.h"

namespace beaconbox::net {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
using LogFn = std::function<void(LogLevel, const std::string&)>;

class BridgeNetwork {
 public:
  static constexpr const char* kTapPrefix = "beacon-";

  // The ifalias every TAP of this configuration carries: "beaconbox:<db_path>" (or
  // "beaconbox:#<hash of db_path>" when longer than an ifalias holds). Reconcile
  // deletes only TAPs with this mark, so two configurations with their own lease
  // databases on one host never delete each other's TAPs.
  static std::string OwnerMarkFor(const std::string& db_path);

  BridgeNetwork(BridgeConfig config, LogFn log);
  ~BridgeNetwork();  // stops the reconciler thread
  BridgeNetwork(const BridgeNetwork&) = delete;
  BridgeNetwork& operator=(const BridgeNetwork&) = delete;

  Result<plugin::v1::NetworkAttachment> Attach(const plugin::v1::NetworkAttachRequest& request);
  // Releases the lease and TAP of `container` (namespace and id); unknown: success.
  Status Detach(const ContainerRef& container);
  // Releases leases whose owner is gone (unless a process still holds their TAP)
  // and deletes this configuration's beacon-* TAPs without a lease; re-creates missing
  // nftables rules and anti-spoofing guards.
  Result<plugin::v1::ReconcileReport> Reconcile();
  // Empty when the lease database does not exist yet (it is not created for this).
  Result<plugin::v1::LeaseList> ListLeases();

  const BridgeConfig& config() const { return config_; }

 private:
  // Opens the store, the netlink socket and the nftables context once.
  Status OpenResources();
  // First attach only: reconcile, then start the periodic reconciler.
  void StartOnce();
  void ReconcilerLoop();
  Result<bool> LeasesIdle();
  Status EnsureRules(bool force);
  Result<plugin::v1::ReconcileReport> ReconcileOpened();
  // Deletes `tap` and its anti-spoofing guard unless it is another configuration's.
  // Returns whether the device existed and was deleted.
  Result<bool> DeleteOwnTap(const std::string& tap);
  // After EnsureBridge: with ipv4, records the gateway address when this attach added
  // it (`added`); without, removes the one recorded (ours), once no lease holds an
  // IPv4 address any more.
  Status TrackIpv4Gateway(bool added);
  // The addresses the anti-spoofing guard lets `lease`'s guest send from.
  GuestAddresses GuardedAddresses(const LeaseRecord& lease) const;

  BridgeConfig config_;
  LogFn log_;
  std::string owner_mark_;

  std::mutex open_mutex_;
  std::unique_ptr<LeaseStore> store_;
  std::unique_ptr<Links> links_;
  std::unique_ptr<NftRules> nft_;
  bool started_ = false;
  std::atomic<bool> ip_forward_checked_ = false;
  std::atomic<bool> rules_ensured_ = false;  // cached only when rules are never removed

  std::mutex reconcile_mutex_;  // one reconcile at a time in this process

  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread reconciler_;
};

}  // namespace beaconbox::net
