// The storage-virtiofs plugin's C entry: the ops tables and their translation to
// RootfsExporter. Everything else lives in rootfs_export.cc. It shares the container's
// mounted rootfs over virtio-fs; EROFS image layers are another plugin's job (the name
// storage-erofs is kept for it).
#include <toml++/toml.h>
#include <unistd.h>

#include <memory>
#include <new>

#include "beaconbox/plugin/v1/plugin.pb.h"
#include "beaconbox/plugin_support.hpp"
#include "plugins/common/abi_error.h"
#include "plugins/storage-virtiofs/rootfs_export.h"

struct bbx_plugin {
  const bbx_host_services* host;
  beaconbox::storage::RootfsExporter exporter;
};

namespace {

namespace pluginapi = ::beaconbox::plugin::v1;
using beaconbox::Error;

const bbx_config_key kConfigKeys[] = {
    bbx::ConfigKey("share_tag", BBX_CONFIG_STRING, "\"rootfs\"",
                   "virtio-fs tag of the rootfs share"),
    bbx::ConfigKey("volume_share_tag", BBX_CONFIG_STRING, "\"volumes\"",
                   "virtio-fs tag of the share holding a container's volumes (bind mounts)"),
};

bbx_status Init(const bbx_host_services* host, bbx_bytes config_toml, bbx_plugin** out,
                bbx_error* error) {
  beaconbox::storage::ExportConfig config;
  try {
    toml::table table = toml::parse(bbx::View(config_toml));
    config.share_tag = table["share_tag"].value_or(config.share_tag);
    config.volume_share_tag = table["volume_share_tag"].value_or(config.volume_share_tag);
  } catch (const toml::parse_error& parse_error) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                     std::string("config: ") + std::string(parse_error.description()));
  }
  if (config.share_tag.empty() || config.share_tag.size() > 36) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "share_tag must be 1 to 36 characters");
  }
  if (config.volume_share_tag.empty() || config.volume_share_tag.size() > 36 ||
      config.volume_share_tag == config.share_tag) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                     "volume_share_tag must be 1 to 36 characters and differ from share_tag");
  }
  if (host != nullptr && BBX_STRUCT_HAS(host, bbx_host_services, state_dir) &&
      host->state_dir != nullptr && host->state_dir[0] != '\0') {
    config.record_dir = std::string(host->state_dir) + "/storage-virtiofs";
  }
  *out = new (std::nothrow) bbx_plugin{host, beaconbox::storage::RootfsExporter(config)};
  return *out ? BBX_OK : bbx::Fail(error, BBX_ERR_INTERNAL, "out of memory");
}

void Fini(bbx_plugin* plugin) { delete plugin; }

bbx_status Prepare(bbx_plugin* plugin, bbx_bytes request_bytes, bbx_sink plan_sink,
                   bbx_error* error) {
  pluginapi::StoragePrepareRequest request;
  if (!request.ParseFromArray(request_bytes.data, static_cast<int>(request_bytes.len))) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "unparsable StoragePrepareRequest");
  }
  auto plan = plugin->exporter.Prepare(request);
  if (!plan.ok()) return beaconbox::plugins::Fail(plan.error(), error);
  return bbx::WriteSink(plan_sink, plan->SerializeAsString(), error);
}

bbx_status Release(bbx_plugin* plugin, bbx_bytes request_bytes, bbx_error* error) {
  pluginapi::StorageReleaseRequest request;
  if (!request.ParseFromArray(request_bytes.data, static_cast<int>(request_bytes.len))) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "unparsable StorageReleaseRequest");
  }
  if (request.bundle().empty()) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "release: no bundle given");
  }
  // The bundle may be gone (containerd 1.7 removes it while the shim's delete action
  // runs): what release needs is found by (namespace, id) under the state directory.
  auto status =
      plugin->exporter.Release(request.namespace_(), request.container_id(), request.bundle());
  return status.ok() ? BBX_OK : beaconbox::plugins::Fail(status.error(), error);
}

// Its own prerequisite: mounting (the rootfs is mounted at <bundle>/rootfs as runc's
// shim does). virtiofsd itself is started by the VMM plugin, which checks it.
bbx_status Check(bbx_plugin*, bbx_sink report_sink, bbx_error* error) {
  pluginapi::CheckReport report;
  auto* line = report.add_lines();
  line->set_what("mount");
  if (::geteuid() == 0) {
    line->set_level(pluginapi::CHECK_OK);
    line->set_detail("running as root: container rootfs mounts can be made");
  } else {
    line->set_level(pluginapi::CHECK_FAIL);
    line->set_detail(
        "not root: the shim mounts each container's rootfs; run it as root "
        "(containerd does)");
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
    .gc = nullptr,  // nothing cached
};

}  // namespace

extern "C" BBX_EXPORT bbx_status bbx_plugin_entry(const bbx_entry_request* request,
                                                  bbx_entry_response* response, bbx_error* error) {
  return bbx::AnswerEntry(request, response, error, "virtiofs", BEACONBOX_PLUGIN_VERSION,
                          kConfigKeys, kCommonOps, kOps);
}
