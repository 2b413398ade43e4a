/* A minimal storage plugin in plain C11: the ABI needs no C++ on the plugin's side.
 * It accepts one config key, exports nothing for the guest (an empty MountPlan, which
 * is zero bytes of protobuf) and keeps no state besides its greeting. */
#include <beaconbox/plugin_abi.h>
#include <stdlib.h>
#include <string.h>

struct bbx_plugin {
  const bbx_host_services* host;
};

static void example_set_error(bbx_error* error, const char* message) {
  if (error == NULL || error->message == NULL || error->capacity == 0) return;
  size_t n = strlen(message);
  if (n >= error->capacity) n = error->capacity - 1;
  memcpy(error->message, message, n);
  error->message[n] = '\0';
}

static bbx_status example_init(const bbx_host_services* host, bbx_bytes config_toml,
                               bbx_plugin** out, bbx_error* error) {
  (void)config_toml; /* a real plugin parses its TOML table here */
  bbx_plugin* plugin = calloc(1, sizeof(*plugin));
  if (plugin == NULL) {
    example_set_error(error, "out of memory");
    return BBX_ERR_INTERNAL;
  }
  plugin->host = host;
  if (BBX_STRUCT_HAS(host, bbx_host_services, log) && host->log != NULL) {
    host->log(host->host_context, BBX_LOG_INFO, "storage-example ready");
  }
  *out = plugin;
  return BBX_OK;
}

static void example_fini(bbx_plugin* plugin) { free(plugin); }

static bbx_status example_prepare(bbx_plugin* plugin, bbx_bytes request, bbx_sink plan,
                                  bbx_error* error) {
  (void)plugin;
  (void)request;
  static const uint8_t empty_plan[1];
  if (plan.write == NULL || plan.write(plan.context, empty_plan, 0) != 0) {
    example_set_error(error, "the host refused the mount plan");
    return BBX_ERR_INTERNAL;
  }
  return BBX_OK;
}

static bbx_status example_release(bbx_plugin* plugin, const char* container_id, const char* bundle,
                                  bbx_error* error) {
  (void)plugin;
  (void)container_id;
  (void)bundle;
  (void)error;
  return BBX_OK;
}

static const bbx_config_key example_keys[] = {
    {"greeting", BBX_CONFIG_STRING, "\"hello\"", "logged at init"},
};

static const bbx_storage_ops example_ops = {
    .struct_size = sizeof(bbx_storage_ops),
    .common = {.struct_size = sizeof(bbx_plugin_common_ops),
               .init = example_init,
               .fini = example_fini},
    .prepare = example_prepare,
    .release = example_release,
};

BBX_EXPORT bbx_status bbx_plugin_entry(const bbx_entry_request* request,
                                       bbx_entry_response* response, bbx_error* error) {
  if (request == NULL || response == NULL) {
    example_set_error(error, "NULL request or response");
    return BBX_ERR_INVALID_ARGUMENT;
  }
  if (request->abi_min > BBX_ABI_VERSION_CURRENT || request->abi_max < BBX_ABI_VERSION_CURRENT) {
    example_set_error(error, "storage-example speaks plugin ABI 1 only");
    return BBX_ERR_ABI_MISMATCH;
  }
  bbx_entry_response mine = {
      .struct_size = sizeof(bbx_entry_response),
      .abi_version = BBX_ABI_VERSION_CURRENT,
      .kind = BBX_PLUGIN_KIND_STORAGE,
      .name = "example",
      .version = "1.0.0",
      .config_keys = example_keys,
      .config_key_count = sizeof(example_keys) / sizeof(example_keys[0]),
      .ops = &example_ops,
  };
  /* Fill only what the host's struct has room for. */
  size_t n = response->struct_size < sizeof(mine) ? response->struct_size : sizeof(mine);
  memcpy(response, &mine, n);
  response->struct_size = (uint32_t)n;
  return BBX_OK;
}
