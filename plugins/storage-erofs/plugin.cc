// The storage-erofs plugin's C entry: the ops tables and their translation to
// ErofsExporter (layer_export.h). Image layers become cached EROFS images, attached
// read-only as virtio-blk disks; the writable layer lives in the VM.
#include <toml++/toml.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "beaconbox/plugin/v1/plugin.pb.h"
#include "beaconbox/plugin_support.hpp"
#include "common/base/file_util.h"
#include "plugins/common/abi_error.h"
#include "plugins/common/check_report.h"
#include "plugins/storage-erofs/cache_gc.h"
#include "plugins/storage-erofs/guest_image.h"
#include "plugins/storage-erofs/layer_export.h"

struct bbx_plugin {
  const bbx_host_services* host;
  beaconbox::storage::ErofsExporter exporter;
  std::string guest_initrd;  // for check: the guest image whose erofs support it reports
  // Per "<namespace>/<id>", the locks that keep its images in use (cache_gc.h) from
  // Prepare to Release; a dead shim's go with its fds.
  std::mutex holds_mutex;
  std::map<std::string, std::vector<beaconbox::UniqueFd>> holds;
};

namespace {

namespace pluginapi = ::beaconbox::plugin::v1;

const bbx_config_key kConfigKeys[] = {
    bbx::ConfigKey("cache_dir", BBX_CONFIG_STRING, "\"<state_dir>/erofs\"",
                   "where the EROFS images of image layers are cached (absolute)"),
    bbx::ConfigKey("mkfs_erofs", BBX_CONFIG_STRING, "\"mkfs.erofs\"",
                   "mkfs.erofs of erofs-utils: a name searched in PATH, or a path"),
    bbx::ConfigKey("convert_timeout_s", BBX_CONFIG_INTEGER, "600",
                   "how long converting one layer may take, seconds (1..86400)"),
    bbx::ConfigKey("writable_layer_size_mib", BBX_CONFIG_INTEGER, "0",
                   "size of the VM's tmpfs holding the container's writable layer, MiB (0: "
                   "half the guest memory)"),
    bbx::ConfigKey("cache_max_mib", BBX_CONFIG_INTEGER, "0",
                   "size limit of the EROFS cache, MiB: after a conversion, the least recently "
                   "used images no running container holds are evicted while over it (0: no "
                   "limit)"),
    bbx::ConfigKey("transport", BBX_CONFIG_STRING, "\"blk\"",
                   "how the images reach the guest: \"blk\" (a read-only virtio-blk disk per "
                   "layer) or \"virtiofs\" (a read-only share of the container's images, loop "
                   "mounts in the guest)"),
    bbx::ConfigKey("writable_layer", BBX_CONFIG_STRING, "\"vm\"",
                   "where the container's writes go: \"vm\" (a file system of the VM; the "
                   "host's snapshot stays untouched) or \"host\" (containerd's upperdir, shared "
                   "over virtio-fs: ctr snapshot diff sees the writes)"),
    bbx::ConfigKey("scratch_size_mib", BBX_CONFIG_INTEGER, "0",
                   "writable_layer \"vm\": 0 keeps the writes on a tmpfs of the VM; a size in "
                   "MiB puts them on a sparse ext4 disk of that size in the VM's run directory, "
                   "removed with the VM"),
    bbx::ConfigKey("mkfs_ext4", BBX_CONFIG_STRING, "\"mkfs.ext4\"",
                   "mkfs.ext4 of e2fsprogs for the scratch disk: a name searched in PATH, or a "
                   "path"),
    bbx::ConfigKey("guest_initrd", BBX_CONFIG_STRING, "\"\"",
                   "the guest initrd whose erofs support check reports (empty: where the host "
                   "finds it, <share_dir>/kernel/beacon-initrd or beaconbox-initrd next to the "
                   "program)"),
    bbx::ConfigKey("volume_share_tag", BBX_CONFIG_STRING, "\"volumes\"",
                   "virtio-fs tag of the share holding a container's volumes (bind mounts)"),
};

bbx_status Init(const bbx_host_services* host, bbx_bytes config_toml, bbx_plugin** out,
                bbx_error* error) {
  if (out == nullptr) return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "init: NULL out");
  beaconbox::storage::ErofsExportConfig config;
  std::string state_dir;
  std::string guest_initrd;
  if (host != nullptr && BBX_STRUCT_HAS(host, bbx_host_services, share_dir)) {
    guest_initrd =
        beaconbox::storage::DefaultGuestInitrd(host->share_dir != nullptr ? host->share_dir : "");
  }
  if (host != nullptr && BBX_STRUCT_HAS(host, bbx_host_services, state_dir) &&
      host->state_dir != nullptr) {
    state_dir = host->state_dir;
  }
  try {
    toml::table table = toml::parse(bbx::View(config_toml));
    config.cache.cache_dir = table["cache_dir"].value_or(std::string());
    config.cache.mkfs_erofs = table["mkfs_erofs"].value_or(config.cache.mkfs_erofs);
    const int64_t timeout = table["convert_timeout_s"].value_or(int64_t{600});
    if (timeout < 1 || timeout > 86400) {
      return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                       "convert_timeout_s must be 1..86400 seconds");
    }
    config.cache.convert_timeout = std::chrono::seconds(timeout);
    const int64_t max_mib = table["cache_max_mib"].value_or(int64_t{0});
    if (max_mib < 0 || max_mib > (int64_t{1} << 32)) {
      return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                       "cache_max_mib must be 0 (no limit) or a size in MiB");
    }
    config.cache.max_bytes = static_cast<uint64_t>(max_mib) << 20;
    const int64_t size = table["writable_layer_size_mib"].value_or(int64_t{0});
    if (size < 0 || size > (int64_t{1} << 30)) {
      return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                       "writable_layer_size_mib must be 0 (the kernel's default) or a size in MiB");
    }
    config.writable_layer_size_mib = static_cast<uint64_t>(size);
    config.volume_share_tag = table["volume_share_tag"].value_or(config.volume_share_tag);
    guest_initrd = table["guest_initrd"].value_or(guest_initrd);
    const std::string writable = table["writable_layer"].value_or(std::string("vm"));
    if (writable == "vm") {
      config.writable_layer = beaconbox::storage::WritableLayer::kVm;
    } else if (writable == "host") {
      config.writable_layer = beaconbox::storage::WritableLayer::kHost;
    } else {
      return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                       "writable_layer '" + writable + "' is neither \"vm\" nor \"host\"");
    }
    const int64_t scratch = table["scratch_size_mib"].value_or(int64_t{0});
    if (scratch < 0 || scratch > (int64_t{1} << 30) || (scratch > 0 && scratch < 16)) {
      return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                       "scratch_size_mib must be 0 (a tmpfs) or a size of at least 16 MiB");
    }
    if (scratch > 0 && writable == "host") {
      return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                       "scratch_size_mib is for writable_layer = \"vm\"; with \"host\" the "
                       "writes go to containerd's upperdir: remove one of the two");
    }
    config.scratch_size_mib = static_cast<uint64_t>(scratch);
    config.mkfs_ext4 = table["mkfs_ext4"].value_or(config.mkfs_ext4);
    if (config.mkfs_ext4.empty()) {
      return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "mkfs_ext4 must not be empty");
    }
    const std::string transport = table["transport"].value_or(std::string("blk"));
    if (transport == "blk") {
      config.transport = beaconbox::storage::LayerTransport::kBlock;
    } else if (transport == "virtiofs") {
      config.transport = beaconbox::storage::LayerTransport::kVirtiofs;
    } else {
      return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                       "transport '" + transport + "' is neither \"blk\" nor \"virtiofs\"");
    }
  } catch (const toml::parse_error& parse_error) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                     std::string("config: ") + std::string(parse_error.description()));
  }
  if (!state_dir.empty()) config.record_dir = state_dir + "/storage-erofs";
  if (config.cache.cache_dir.empty()) {
    if (state_dir.empty()) {
      return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                       "no state directory given: set cache_dir (or paths.state_dir)");
    }
    config.cache.cache_dir = state_dir + "/erofs";
  }
  if (config.cache.cache_dir[0] != '/' ||
      config.cache.cache_dir.find_first_of(",\n") != std::string::npos) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                     "cache_dir '" + config.cache.cache_dir +
                         "' must be an absolute path without ',' (QEMU's -drive syntax)");
  }
  if (config.cache.mkfs_erofs.empty()) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "mkfs_erofs must not be empty");
  }
  if (config.volume_share_tag.empty() || config.volume_share_tag.size() > 36) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                     "volume_share_tag must be 1 to 36 characters");
  }
  *out = new (std::nothrow)
      bbx_plugin{host, beaconbox::storage::ErofsExporter(std::move(config)), guest_initrd, {}, {}};
  return *out ? BBX_OK : bbx::Fail(error, BBX_ERR_INTERNAL, "out of memory");
}

void Fini(bbx_plugin* plugin) { delete plugin; }

std::string Milliseconds(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f ms", value);
  return text;
}

bbx_status Prepare(bbx_plugin* plugin, bbx_bytes request_bytes, bbx_sink plan_sink,
                   bbx_error* error) {
  pluginapi::StoragePrepareRequest request;
  if (!request.ParseFromArray(request_bytes.data, static_cast<int>(request_bytes.len))) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "unparsable StoragePrepareRequest");
  }
  auto prepared = plugin->exporter.Prepare(request);
  if (!prepared.ok()) return beaconbox::plugins::Fail(prepared.error(), error);
  // One line per layer: what the benchmark and the e2e read (conversion vs cache hit).
  for (const auto& layer : prepared->layers) {
    bbx::Log(plugin->host, BBX_LOG_INFO,
             "erofs layer " + layer.layer_dir + ": " +
                 (layer.provided    ? "containerd's EROFS layer used as is in "
                  : layer.converted ? "converted in "
                                    : "cache hit in ") +
                 Milliseconds(layer.milliseconds) + " (" + layer.image_path + ") for " +
                 request.namespace_() + "/" + request.container_id());
    if (!layer.cache_note.empty()) {
      // Evicting is routine; a cache over its limit (all in use) is worth a warning.
      const bool over = layer.cache_note.find("over cache_max_mib") != std::string::npos;
      bbx::Log(plugin->host, over ? BBX_LOG_WARN : BBX_LOG_INFO,
               "erofs cache: " + layer.cache_note);
    }
  }
  {
    std::lock_guard lock(plugin->holds_mutex);
    plugin->holds[request.namespace_() + "/" + request.container_id()] = std::move(prepared->holds);
  }
  return bbx::WriteSink(plan_sink, prepared->plan.SerializeAsString(), error);
}

bbx_status Release(bbx_plugin* plugin, bbx_bytes request_bytes, bbx_error* error) {
  pluginapi::StorageReleaseRequest request;
  if (!request.ParseFromArray(request_bytes.data, static_cast<int>(request_bytes.len))) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "unparsable StorageReleaseRequest");
  }
  if (request.bundle().empty()) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "release: no bundle given");
  }
  auto status = plugin->exporter.Release(request);
  {
    std::lock_guard lock(plugin->holds_mutex);
    plugin->holds.erase(request.namespace_() + "/" + request.container_id());
  }
  return status.ok() ? BBX_OK : beaconbox::plugins::Fail(status.error(), error);
}

// `beaconbox-ctl gc`: the images no layer directory and no running container uses.
bbx_status Gc(bbx_plugin* plugin, bbx_sink report_sink, bbx_error* error) {
  auto collected = beaconbox::storage::CollectGarbage(plugin->exporter.cache().config().cache_dir);
  if (!collected.ok()) return beaconbox::plugins::Fail(collected.error(), error);
  pluginapi::StorageGcReport report;
  auto add = [](pluginapi::StorageGcItem* item, const beaconbox::storage::GcItem& from) {
    item->set_path(from.image_path);
    item->set_source(from.layer);
    item->set_bytes(from.bytes);
    item->set_reason(from.reason);
  };
  for (const auto& item : collected->removed) add(report.add_removed(), item);
  for (const auto& item : collected->kept) add(report.add_kept(), item);
  return bbx::WriteSink(report_sink, report.SerializeAsString(), error);
}

// mkfs.erofs (present, its version) and the cache directory (writable).
bbx_status Check(bbx_plugin* plugin, bbx_sink report_sink, bbx_error* error) {
  pluginapi::CheckReport report;
  const auto& cache = plugin->exporter.cache();
  const std::string mkfs = cache.MkfsPath();
  if (::access(mkfs.c_str(), X_OK) == 0) {
    auto version = beaconbox::storage::MkfsErofsVersion(mkfs);
    if (version.ok()) {
      beaconbox::plugins::AddCheckLine(report, pluginapi::CHECK_OK, "mkfs.erofs",
                                       mkfs + " (" + *version + ")");
    } else {
      beaconbox::plugins::AddCheckLine(report, pluginapi::CHECK_FAIL, "mkfs.erofs",
                                       version.error().message + ": reinstall erofs-utils");
    }
  } else {
    beaconbox::plugins::AddCheckLine(
        report, pluginapi::CHECK_FAIL, "mkfs.erofs",
        mkfs + " not found (config key mkfs_erofs): install erofs-utils");
  }
  const std::string& dir = cache.config().cache_dir;
  std::string parent = dir;
  while (::access(parent.c_str(), F_OK) != 0 && parent.size() > 1) {
    parent = parent.substr(0, parent.rfind('/') == 0 ? 1 : parent.rfind('/'));
  }
  if (::access(parent.c_str(), W_OK) == 0) {
    beaconbox::plugins::AddCheckLine(report, pluginapi::CHECK_OK, "cache_dir",
                                     dir + " is writable");
  } else {
    beaconbox::plugins::AddCheckLine(
        report, pluginapi::CHECK_FAIL, "cache_dir",
        dir + " is not writable (" + parent + "): run as root or set cache_dir");
  }
  // The guest's erofs: from the initrd guest/build-image.sh made (its module lists).
  if (plugin->guest_initrd.empty()) {
    beaconbox::plugins::AddCheckLine(report, pluginapi::CHECK_WARN, "guest erofs",
                                     "no guest initrd known: set guest_initrd");
  } else if (auto support = beaconbox::storage::GuestErofsSupport(plugin->guest_initrd);
             support.ok()) {
    beaconbox::plugins::AddCheckLine(report, pluginapi::CHECK_OK, "guest erofs",
                                     *support + " (" + plugin->guest_initrd + ")");
  } else {
    beaconbox::plugins::AddCheckLine(report, pluginapi::CHECK_FAIL, "guest erofs",
                                     support.error().message);
  }
  return bbx::WriteSink(report_sink, report.SerializeAsString(), error);
}

bbx_status Capabilities(bbx_plugin*, bbx_sink sink, bbx_error* error) {
  pluginapi::Capabilities capabilities;
  capabilities.set_read_only_rootfs(true);
  return bbx::WriteSink(sink, capabilities.SerializeAsString(), error);
}

const bbx_plugin_common_ops kCommonOps = {
    .struct_size = sizeof(bbx_plugin_common_ops),
    .init = Init,
    .fini = Fini,
    .check = Check,
    .capabilities = Capabilities,
};

const bbx_storage_ops kOps = {
    .struct_size = sizeof(bbx_storage_ops),
    .prepare = Prepare,
    .release = Release,
    .gc = Gc,
};

}  // namespace

extern "C" BBX_EXPORT bbx_status bbx_plugin_entry(const bbx_entry_request* request,
                                                  bbx_entry_response* response, bbx_error* error) {
  return bbx::AnswerEntry(request, response, error, "erofs", BEACONBOX_PLUGIN_VERSION, kConfigKeys,
                          kCommonOps, kOps);
}
