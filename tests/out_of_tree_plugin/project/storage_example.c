/* A minimal storage plugin in plain C11: the ABI needs no C++ on the plugin's side.
 * It accepts one config key (overridable by an environment variable its schema names),
 * exports nothing for the guest (an empty MountPlan, which is zero bytes of protobuf),
 * reports one check line and keeps no state besides its host services.
 *
 * Built twice (CMakeLists.txt): as is, and with EXAMPLE_NEWER, as a plugin built
 * against a future header would be: its common and storage tables, its config keys and
 * its entry answer each end with a member this ABI does not have. Both load. */
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

static bbx_status example_write(bbx_sink sink, const uint8_t* data, size_t len, bbx_error* error) {
  if (sink.host_write == NULL || sink.host_write(sink.context, data, len) != 0) {
    example_set_error(error, "the host refused the result");
    return BBX_ERR_INTERNAL;
  }
  return BBX_OK;
}

static bbx_status example_init(const bbx_host_services* host, bbx_bytes config_toml,
                               bbx_plugin** out, bbx_error* error) {
  bbx_plugin* plugin = calloc(1, sizeof(*plugin));
  if (plugin == NULL) {
    example_set_error(error, "out of memory");
    return BBX_ERR_INTERNAL;
  }
  plugin->host = host;
  if (BBX_STRUCT_HAS(host, bbx_host_services, host_log) && host->host_log != NULL) {
    /* A real plugin parses its TOML table; this one only shows what it got. */
    char line[256] = "storage-example config: ";
    size_t used = strlen(line);
    size_t n = config_toml.len < sizeof(line) - used - 1 ? config_toml.len : sizeof(line) - used - 1;
    memcpy(line + used, config_toml.data, n);
    line[used + n] = '\0';
    host->host_log(host->host_context, BBX_LOG_INFO, line);
  }
  *out = plugin;
  return BBX_OK;
}

static void example_fini(bbx_plugin* plugin) { free(plugin); }

/* One CheckReport line, hand-encoded: lines (1) { level (1) = OK, what (2), detail (3) }. */
static bbx_status example_check(bbx_plugin* plugin, bbx_sink report, bbx_error* error) {
  (void)plugin;
  static const char what[] = "example";
  static const char detail[] = "nothing to check";
  uint8_t line[64];
  size_t n = 0;
  line[n++] = 0x08; /* level = CHECK_OK (0): written anyway, harmless */
  line[n++] = 0x00;
  line[n++] = 0x12;
  line[n++] = (uint8_t)(sizeof(what) - 1);
  memcpy(line + n, what, sizeof(what) - 1);
  n += sizeof(what) - 1;
  line[n++] = 0x1a;
  line[n++] = (uint8_t)(sizeof(detail) - 1);
  memcpy(line + n, detail, sizeof(detail) - 1);
  n += sizeof(detail) - 1;
  uint8_t message[80];
  message[0] = 0x0a;
  message[1] = (uint8_t)n;
  memcpy(message + 2, line, n);
  return example_write(report, message, n + 2, error);
}

static bbx_status example_prepare(bbx_plugin* plugin, bbx_bytes request, bbx_sink plan,
                                  bbx_error* error) {
  (void)plugin;
  (void)request;
  static const uint8_t empty_plan[1];
  return example_write(plan, empty_plan, 0, error);
}

/* `request` is a StorageReleaseRequest (namespace, id, bundle); nothing to undo. */
static bbx_status example_release(bbx_plugin* plugin, bbx_bytes request, bbx_error* error) {
  (void)plugin;
  (void)request;
  (void)error;
  return BBX_OK;
}

#ifdef EXAMPLE_NEWER
static bbx_status example_future_hook(bbx_plugin* plugin, bbx_error* error) {
  (void)plugin;
  example_set_error(error, "a host of ABI 2 never calls this");
  return BBX_ERR_INTERNAL;
}
/* Tables as a future header would declare them: one more member each. */
typedef struct {
  bbx_config_key key;
  const char* future_member;
} example_config_key;
typedef struct {
  bbx_plugin_common_ops ops;
  bbx_status (*future_hook)(bbx_plugin*, bbx_error*);
} example_common_ops;
typedef struct {
  bbx_storage_ops ops;
  bbx_status (*future_hook)(bbx_plugin*, bbx_error*);
} example_storage_ops;
typedef struct {
  bbx_entry_response response;
  const char* future_member;
} example_entry_response;
#define EXAMPLE_KEY(...) {{sizeof(example_config_key), __VA_ARGS__}, "future"}
#define EXAMPLE_TABLE(base, ...) {base, __VA_ARGS__}
#define EXAMPLE_NAME "example-newer"
#else
typedef bbx_config_key example_config_key;
typedef bbx_plugin_common_ops example_common_ops;
typedef bbx_storage_ops example_storage_ops;
typedef bbx_entry_response example_entry_response;
#define EXAMPLE_KEY(...) {sizeof(example_config_key), __VA_ARGS__}
#define EXAMPLE_NAME "example"
#endif

static const example_config_key example_keys[] = {
    EXAMPLE_KEY(BBX_CONFIG_STRING, "greeting", "\"hello\"", "logged at init",
                "BEACONBOX_EXAMPLE_GREETING"),
    EXAMPLE_KEY(BBX_CONFIG_INTEGER, "repeat", "1", "how often to greet", NULL),
};

#define EXAMPLE_COMMON                                                                 \
  {.struct_size = sizeof(example_common_ops), .init = example_init, .fini = example_fini, \
   .check = example_check, .capabilities = NULL}
#define EXAMPLE_STORAGE \
  {.struct_size = sizeof(example_storage_ops), .prepare = example_prepare, .release = example_release}

#ifdef EXAMPLE_NEWER
static const example_common_ops example_common = EXAMPLE_TABLE(EXAMPLE_COMMON, example_future_hook);
static const example_storage_ops example_storage =
    EXAMPLE_TABLE(EXAMPLE_STORAGE, example_future_hook);
#else
static const example_common_ops example_common = EXAMPLE_COMMON;
static const example_storage_ops example_storage = EXAMPLE_STORAGE;
#endif

BBX_EXPORT bbx_status bbx_plugin_entry(const bbx_entry_request* request,
                                       bbx_entry_response* response, bbx_error* error) {
  if (request == NULL || response == NULL) {
    example_set_error(error, "NULL request or response");
    return BBX_ERR_INVALID_ARGUMENT;
  }
  if (request->abi_min > BBX_ABI_VERSION_CURRENT || request->abi_max < BBX_ABI_VERSION_CURRENT) {
    example_set_error(error, "storage-example speaks plugin ABI 2 only");
    return BBX_ERR_ABI_MISMATCH;
  }
  example_entry_response mine;
  memset(&mine, 0, sizeof(mine));
  bbx_entry_response* base = (bbx_entry_response*)&mine;
  base->struct_size = sizeof(mine);
  base->abi_version = BBX_ABI_VERSION_CURRENT;
  base->kind = BBX_PLUGIN_KIND_STORAGE;
  base->name = EXAMPLE_NAME;
  base->version = "1.0.0";
  /* The first key; the host walks the array with its struct_size as the stride. */
  base->config_keys = (const bbx_config_key*)example_keys;
  base->config_key_count = sizeof(example_keys) / sizeof(example_keys[0]);
  base->common_ops = (const bbx_plugin_common_ops*)&example_common;
  base->kind_ops = &example_storage;
#ifdef EXAMPLE_NEWER
  mine.future_member = "future";
#endif
  /* Fill only what the host's struct has room for. */
  size_t n = response->struct_size < sizeof(mine) ? response->struct_size : sizeof(mine);
  memcpy(response, &mine, n);
  response->struct_size = (uint32_t)n;
  return BBX_OK;
}
