// `beaconbox-ctl net leases` and `beaconbox-ctl gc`: the network plugin's lease
// table and its reconciliation, and the storage plugin's cache gc (storage-erofs's
// unused EROFS images), run on demand by an operator.
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
  std::printf("%-16s %-28s %-16s %-8s %-20s %-16s %s\n", "ADDRESS", "ADDRESS6", "TAP", "OWNER",
              "CREATED", "NAMESPACE", "CONTAINER");
  for (const auto& lease : leases->leases()) {
    char created[32] = "-";
    std::time_t when = static_cast<std::time_t>(lease.created_unix());
    if (std::tm tm; when > 0 && gmtime_r(&when, &tm)) {
      std::strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    std::printf("%-16s %-28s %-16s %-8lld %-20s %-16s %s\n",
                lease.address().empty() ? "-" : lease.address().c_str(),
                lease.address6().empty() ? "-" : lease.address6().c_str(), lease.tap_name().c_str(),
                static_cast<long long>(lease.owner_pid()), created,
                lease.namespace_().empty() ? "-" : lease.namespace_().c_str(),
                lease.container_id().c_str());
  }
  return 0;
}

namespace {

std::string Mib(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

// The storage plugin's gc (storage-erofs: its image cache); false when it has none.
Result<bool> StorageGc(plugin_host::StoragePlugin& storage) {
  auto report = storage.Gc();
  if (!report.ok()) {
    if (report.error().code == ErrorCode::kNotImplemented) return false;
    return report.error();
  }
  uint64_t freed = 0;
  for (const auto& item : report->removed()) {
    std::printf("removed %s (%s; %s)\n", item.path().c_str(), Mib(item.bytes()).c_str(),
                item.reason().c_str());
    freed += item.bytes();
  }
  for (const auto& item : report->kept()) {
    std::printf("kept %s (%s; %s)\n", item.path().c_str(), Mib(item.bytes()).c_str(),
                item.reason().c_str());
  }
  std::printf("gc: storage %s: %d cached image(s) removed (%s), %d kept\n",
              storage.info().name.c_str(), report->removed_size(), Mib(freed).c_str(),
              report->kept_size());
  return true;
}

}  // namespace

// The network plugin's leases and devices whose shim is gone, and the storage
// plugin's cache entries nothing uses; each part when the configured plugin has it.
int RunGc(const Args& args) {
  if (!args.rest.empty()) {
    std::cerr << "usage: beaconbox-ctl gc\n";
    return 2;
  }
  auto config = LoadConfigFor(args);
  if (!config.ok()) {
    std::cerr << config.error().message << "\n";
    return 1;
  }
  auto host = plugin_host::PluginHost::Load(std::move(config).value());
  if (!host.ok()) {
    std::cerr << host.error().message << "\n";
    return 1;
  }
  bool did_any = false;
  if ((*host)->network() != nullptr) {
    auto report = (*host)->network()->Reconcile();
    if (!report.ok()) {
      std::cerr << report.error().message << "\n";
      return 1;
    }
    for (const auto& id : report->released_leases())
      std::printf("released lease of %s\n", id.c_str());
    for (const auto& device : report->removed_devices())
      std::printf("removed %s\n", device.c_str());
    std::printf("gc: %d lease(s) released, %d device(s) removed\n", report->released_leases_size(),
                report->removed_devices_size());
    did_any = true;
  }
  auto storage = StorageGc((*host)->storage());
  if (!storage.ok()) {
    std::cerr << storage.error().message << "\n";
    return 1;
  }
  if (!did_any && !*storage) {
    std::cerr << "nothing to collect: network.mode is \"none\" and storage plugin "
              << (*host)->storage().info().name << " keeps no cache (in "
              << (*host)->config().source << ")\n";
    return 1;
  }
  return 0;
}

}  // namespace beaconbox::ctl
