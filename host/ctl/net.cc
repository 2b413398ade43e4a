// `beaconbox-ctl net leases` and `beaconbox-ctl gc`: the network plugin's lease
// table and its reconciliation, run on demand by an operator.
#include <cstdio>
#include <ctime>
#include <iostream>

#include "host/ctl/ctl.h"
#include "host/plugin_host/plugin_host.h"

namespace beaconbox::ctl {
namespace {

// Loads the configured plugins and returns the network one, or prints why not.
Result<std::unique_ptr<plugin_host::PluginHost>> LoadWithNetwork(const Args& args) {
  BBX_ASSIGN_OR_RETURN(config::Config config, LoadConfigFor(args));
  BBX_ASSIGN_OR_RETURN(auto host, plugin_host::PluginHost::Load(std::move(config)));
  if (host->network() == nullptr) {
    return MakeError(ErrorCode::kFailedPrecondition, "network.mode is \"none\" in " +
                                                         host->config().source +
                                                         ": there is no network plugin to ask");
  }
  return host;
}

}  // namespace

int RunNetLeases(const Args& args) {
  if (!args.rest.empty()) {
    std::cerr << "usage: beaconbox-ctl net leases\n";
    return 2;
  }
  auto host = LoadWithNetwork(args);
  if (!host.ok()) {
    std::cerr << host.error().message << "\n";
    return 1;
  }
  auto leases = (*host)->network()->ListLeases();
  if (!leases.ok()) {
    std::cerr << leases.error().message << "\n";
    return 1;
  }
  std::printf("%-16s %-16s %-8s %-20s %-16s %s\n", "ADDRESS", "TAP", "OWNER", "CREATED",
              "NAMESPACE", "CONTAINER");
  for (const auto& lease : leases->leases()) {
    char created[32] = "-";
    std::time_t when = static_cast<std::time_t>(lease.created_unix());
    if (std::tm tm; when > 0 && gmtime_r(&when, &tm)) {
      std::strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    std::printf("%-16s %-16s %-8lld %-20s %-16s %s\n", lease.address().c_str(),
                lease.tap_name().c_str(), static_cast<long long>(lease.owner_pid()), created,
                lease.namespace_().empty() ? "-" : lease.namespace_().c_str(),
                lease.container_id().c_str());
  }
  return 0;
}

int RunGc(const Args& args) {
  if (!args.rest.empty()) {
    std::cerr << "usage: beaconbox-ctl gc\n";
    return 2;
  }
  auto host = LoadWithNetwork(args);
  if (!host.ok()) {
    std::cerr << host.error().message << "\n";
    return 1;
  }
  auto report = (*host)->network()->Reconcile();
  if (!report.ok()) {
    std::cerr << report.error().message << "\n";
    return 1;
  }
  for (const auto& id : report->released_leases())
    std::printf("released lease of %s\n", id.c_str());
  for (const auto& device : report->removed_devices()) std::printf("removed %s\n", device.c_str());
  std::printf("gc: %d lease(s) released, %d device(s) removed\n", report->released_leases_size(),
              report->removed_devices_size());
  return 0;
}

}  // namespace beaconbox::ctl
