// The storage-erofs plugin's C entry: the ops table and its translation to
// RootfsExporter. Everything else lives in rootfs_export.cc.
#include <toml++/toml.h>

#include <memory>
#include <new>

#include "beaconbox/plugin_support.hpp"
#include "plugins/common/abi_error.h"
#include "plugins/storage-erofs/rootfs_export.h"

struct bbx_plugin {
  const bbx_host_services* host;
  beaconbox::storage::RootfsExporter exporter;
};

namespace {

namespace pluginapi = ::beaconbox::plugin::v1;
using beaconbox::Error;

const bbx_config_key kConfigKeys[] = {
    {"layers", BBX_CONFIG_STRING, "\"virtiofs\"",
     "how image layers reach the guest: \"virtiofs\" (the mounted rootfs, shared) or "
     "\"erofs\" (not implemented yet)"},
    {"share_tag", BBX_CONFIG_STRING, "\"rootfs\"", "virtio-fs tag of the rootfs share"},
};

bbx_status Init(const bbx_host_services* host, bbx_bytes config_toml, bbx_plugin** out,
                bbx_error* error) {
  beaconbox::storage::ExportConfig config;
  try {
    toml::table table = toml::parse(bbx::View(config_toml));
    std::string layers = table["layers"].value_or(std::string("virtiofs"));
    if (layers == "erofs") {
      return bbx::Fail(error, BBX_ERR_NOT_IMPLEMENTED,
                       "layers = \"erofs\" is not implemented yet: use \"virtiofs\"");
    }
    if (layers != "virtiofs") {
      return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                       "layers = \"" + layers + "\" is unknown: use \"virtiofs\"");
    }
    config.share_tag = table["share_tag"].value_or(config.share_tag);
  } catch (const toml::parse_error& parse_error) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT,
                     std::string("config: ") + std::string(parse_error.description()));
  }
  if (config.share_tag.empty() || config.share_tag.size() > 36) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "share_tag must be 1 to 36 characters");
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

bbx_status Release(bbx_plugin* plugin, const char* container_id, const char* bundle,
                   bbx_error* error) {
  if (container_id == nullptr || bundle == nullptr) {
    return bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, "release: NULL container id or bundle");
  }
  auto status = plugin->exporter.Release(container_id, bundle);
  return status.ok() ? BBX_OK : beaconbox::plugins::Fail(status.error(), error);
}

const bbx_storage_ops kOps = {
    .struct_size = sizeof(bbx_storage_ops),
    .common = {.struct_size = sizeof(bbx_plugin_common_ops), .init = Init, .fini = Fini},
    .prepare = Prepare,
    .release = Release,
};

}  // namespace

extern "C" BBX_EXPORT bbx_status bbx_plugin_entry(const bbx_entry_request* request,
                                                  bbx_entry_response* response, bbx_error* error) {
  const bbx_entry_response mine = {
      .struct_size = sizeof(bbx_entry_response),
      .abi_version = BBX_ABI_VERSION_CURRENT,
      .kind = BBX_PLUGIN_KIND_STORAGE,
      .name = "erofs",
      .version = BEACONBOX_VERSION,
      .config_keys = kConfigKeys,
      .config_key_count = sizeof(kConfigKeys) / sizeof(kConfigKeys[0]),
      .ops = &kOps,
  };
  return bbx::Negotiate(request, response, mine, error);
}
