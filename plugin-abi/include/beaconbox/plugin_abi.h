/*
 * beaconbox plugin ABI, version 1.
 *
 * The contract between the beaconbox shim host and its VMM, network and storage
 * plugins. Pure C11; only <stdint.h>, <stddef.h> and <stdbool.h>. No C++ type ever
 * crosses this boundary, so a plugin can be built with another compiler, another
 * standard library or another language.
 *
 * Rules every function below follows (each comment repeats what is specific to it):
 *
 *  - ENTRY. A plugin exports exactly one symbol, `bbx_plugin_entry`. The host calls
 *    it with the ABI range it speaks; the plugin answers with the version it uses.
 *    The host refuses a plugin whose answer lies outside
 *    [BBX_ABI_VERSION_MIN_SUPPORTED, BBX_ABI_VERSION_CURRENT].
 *  - EXTENSIBLE STRUCTS start with `uint32_t struct_size` and are append-only. A reader
 *    touches a member only if `struct_size` covers it (see BBX_STRUCT_HAS). An ops
 *    member marked OPTIONAL may be NULL; the host checks before calling.
 *  - HANDLES are opaque (`bbx_plugin`, `bbx_vm`) and are destroyed by the side that
 *    created them, through that side's own destroy function.
 *  - ERRORS. Every fallible call returns a `bbx_status`. On failure the plugin writes
 *    one line of text (NUL-terminated, truncated to fit) into the caller-owned
 *    `bbx_error` buffer. Nothing is ever freed across the boundary.
 *  - BYTES. Complex arguments and results are protobuf messages defined in
 *    plugin-abi/proto/beaconbox/plugin/v1/, passed as (pointer, length). Inputs are
 *    borrowed for the duration of the call. Results are handed to a caller-provided
 *    `bbx_sink`, which copies them before returning.
 *  - FILE DESCRIPTORS are plain ints; each function states who owns them after the call.
 *  - THREADING. Plugin-level ops (those taking `bbx_plugin *`) may be called from any
 *    thread, concurrently; a plugin makes them thread-safe. Ops on one `bbx_vm` are
 *    called by one thread at a time; different VMs may be driven concurrently.
 */
#ifndef BEACONBOX_PLUGIN_ABI_H
#define BEACONBOX_PLUGIN_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BBX_ABI_VERSION_MIN_SUPPORTED 1u
#define BBX_ABI_VERSION_CURRENT 1u

/* Name of the one symbol a plugin exports. */
#define BBX_PLUGIN_ENTRY_SYMBOL "bbx_plugin_entry"

/* True when the struct pointed to by `ptr` (whose first member is struct_size) is
 * large enough to contain `member`. */
#define BBX_STRUCT_HAS(ptr, type, member) \
  ((ptr)->struct_size >= offsetof(type, member) + sizeof(((type *)0)->member))

#if defined(__GNUC__)
#define BBX_EXPORT __attribute__((visibility("default")))
#else
#define BBX_EXPORT
#endif

typedef enum bbx_status {
  BBX_OK = 0,
  BBX_ERR_INVALID_ARGUMENT = 1, /* the request or configuration is wrong */
  BBX_ERR_NOT_FOUND = 2,        /* a file, device or object does not exist */
  BBX_ERR_ALREADY_EXISTS = 3,
  BBX_ERR_PERMISSION = 4,       /* the system refused (EPERM, EACCES) */
  BBX_ERR_UNAVAILABLE = 5,      /* a needed component is missing or not running */
  BBX_ERR_EXHAUSTED = 6,        /* a pool (addresses, ports, memory) is used up */
  BBX_ERR_TIMEOUT = 7,
  BBX_ERR_NOT_IMPLEMENTED = 8,  /* the op exists but this plugin cannot do it */
  BBX_ERR_ABI_MISMATCH = 9,     /* no ABI version both sides speak */
  BBX_ERR_INTERNAL = 10
} bbx_status;

typedef enum bbx_plugin_kind {
  BBX_PLUGIN_KIND_VMM = 1,
  BBX_PLUGIN_KIND_NETWORK = 2,
  BBX_PLUGIN_KIND_STORAGE = 3
} bbx_plugin_kind;

typedef enum bbx_log_level {
  BBX_LOG_TRACE = 0,
  BBX_LOG_DEBUG = 1,
  BBX_LOG_INFO = 2,
  BBX_LOG_WARN = 3,
  BBX_LOG_ERROR = 4
} bbx_log_level;

/* A caller-owned buffer for a one-line error message. The callee writes at most
 * `capacity` bytes including the terminating NUL. `message` may be NULL when
 * capacity is 0; the callee then writes nothing. */
typedef struct bbx_error {
  char *message;
  size_t capacity;
} bbx_error;

/* Borrowed bytes: valid only for the duration of the call that receives them. */
typedef struct bbx_bytes {
  const uint8_t *data;
  size_t len;
} bbx_bytes;

/* Where a callee delivers a result. `write` copies `len` bytes of `data` (borrowed)
 * and returns 0, or non-zero if it cannot take them (the callee then fails with
 * BBX_ERR_INTERNAL). A callee calls `write` at most once per result. */
typedef struct bbx_sink {
  void *context;
  int (*write)(void *context, const uint8_t *data, size_t len);
} bbx_sink;

/* Services the host offers every plugin. OWNERSHIP: host-owned; valid from
 * init until fini returns. THREADING: every member may be called from any thread. */
typedef struct bbx_host_services {
  uint32_t struct_size;
  uint32_t abi_version; /* the version negotiated with this plugin */
  void *host_context;   /* passed back as the first argument of each callback */
  /* Logs one line into the host's log. `message` is borrowed. */
  void (*log)(void *host_context, bbx_log_level level, const char *message);
  /* Directories the plugin may use, absolute, NUL-terminated, host-owned.
   * state_dir: persistent state (seed default /var/lib/beacon).
   * run_dir:   sockets and per-VM runtime files, removed with each VM.
   * log_dir:   VM console logs (seed default /var/log/beacon).
   * share_dir: installed assets: kernel, initrd, VMM binary (seed default
   *            /usr/share/beacon). */
  const char *state_dir;
  const char *run_dir;
  const char *log_dir;
  const char *share_dir;
} bbx_host_services;

/* ------------------------------------------------------------------------- */
/* Configuration schema                                                       */

typedef enum bbx_config_type {
  BBX_CONFIG_STRING = 1,
  BBX_CONFIG_INTEGER = 2,
  BBX_CONFIG_BOOLEAN = 3,
  BBX_CONFIG_STRING_ARRAY = 4
} bbx_config_type;

/* One key a plugin accepts in its `[plugins.<kind>.<name>.config]` table. The host
 * refuses keys not in the schema and values of the wrong type before init is called.
 * OWNERSHIP: plugin-owned static data, valid while the plugin is loaded. */
typedef struct bbx_config_key {
  const char *name;
  bbx_config_type type;
  const char *default_value; /* as written in TOML; NULL when there is none */
  const char *description;   /* one line, for `beaconbox-ctl plugins` and docs */
} bbx_config_key;

/* ------------------------------------------------------------------------- */
/* Entry point                                                                */

typedef struct bbx_plugin bbx_plugin; /* opaque; created by init, freed by fini */

/* What the host offers. OWNERSHIP: host-owned, borrowed for the call. */
typedef struct bbx_entry_request {
  uint32_t struct_size;
  uint32_t abi_min; /* lowest ABI version the host speaks */
  uint32_t abi_max; /* highest ABI version the host speaks */
} bbx_entry_request;

/* Ops every plugin kind has. Embedded first in each kind's ops table. */
typedef struct bbx_plugin_common_ops {
  uint32_t struct_size;
  /* Parses `config_toml` (the plugin's own table as TOML text, already checked
   * against the schema; borrowed) and creates the plugin instance. MUST NOT change
   * the system (no devices, processes or files): `beaconbox-ctl config validate`
   * calls it. OWNERSHIP: `host` stays valid until fini; `*out` is plugin-owned and
   * released by fini. THREADING: called once, before any other op. */
  bbx_status (*init)(const bbx_host_services *host, bbx_bytes config_toml,
                     bbx_plugin **out, bbx_error *error);
  /* Releases the instance. Resources handed out per container are released by
   * their own ops before; fini only frees what init made. THREADING: called once,
   * after every other op has returned. */
  void (*fini)(bbx_plugin *plugin);
} bbx_plugin_common_ops;

/* What the plugin answers. OWNERSHIP: every pointer is plugin-owned static data,
 * valid while the shared object stays loaded. The host sets struct_size to the size
 * it knows; the plugin fills only members that fit. */
typedef struct bbx_entry_response {
  uint32_t struct_size;
  uint32_t abi_version;  /* chosen by the plugin, within [abi_min, abi_max] */
  bbx_plugin_kind kind;
  const char *name;      /* e.g. "qemu", "bridge", "erofs" */
  const char *version;   /* the plugin's own version, e.g. "0.1.0" */
  const bbx_config_key *config_keys;
  size_t config_key_count;
  /* Points to a bbx_vmm_ops, bbx_network_ops or bbx_storage_ops per `kind`; each
   * starts with its own struct_size followed by bbx_plugin_common_ops. */
  const void *ops;
} bbx_entry_response;

/* The exported entry. Returns BBX_ERR_ABI_MISMATCH (with a message) when the plugin
 * speaks no version in the offered range. THREADING: may be called more than once,
 * from any thread; it must not have side effects. */
typedef bbx_status (*bbx_plugin_entry_fn)(const bbx_entry_request *request,
                                          bbx_entry_response *response, bbx_error *error);
BBX_EXPORT bbx_status bbx_plugin_entry(const bbx_entry_request *request,
                                       bbx_entry_response *response, bbx_error *error);

/* ------------------------------------------------------------------------- */
/* VMM plugins                                                                */

typedef struct bbx_vm bbx_vm; /* opaque; created by vm_create, freed by vm_destroy */

typedef struct bbx_vmm_ops {
  uint32_t struct_size;
  bbx_plugin_common_ops common;
  /* Prepares a VM from a beaconbox.plugin.v1.VmSpec (borrowed) and starts its VMM
   * and helper processes; the guest boots. On success `*out` is plugin-owned and
   * must be released with vm_destroy; on failure nothing is left behind. */
  bbx_status (*vm_create)(bbx_plugin *plugin, bbx_bytes vm_spec, bbx_vm **out,
                          bbx_error *error);
  /* Waits up to `timeout_ms` for the guest agent and returns a connected stream
   * socket to it in `*fd_out`. OWNERSHIP: the caller owns `*fd_out` and closes it.
   * The host treats every byte read from it as untrusted. */
  bbx_status (*vm_connect_guest)(bbx_vm *vm, uint32_t timeout_ms, int *fd_out,
                                 bbx_error *error);
  /* Writes a beaconbox.plugin.v1.VmInfo (pids, sockets, log path, accelerator)
   * into `info`. */
  bbx_status (*vm_info)(bbx_vm *vm, bbx_sink info, bbx_error *error);
  /* Asks the guest to power off, waits up to `timeout_ms`, then forces it. Returns
   * when no process of this VM runs any more. Idempotent. */
  bbx_status (*vm_stop)(bbx_vm *vm, uint32_t timeout_ms, bbx_error *error);
  /* Stops the VM if still running (forcefully), removes its runtime files and frees
   * the handle. Never fails; `vm` is invalid afterwards. */
  void (*vm_destroy)(bbx_vm *vm);
  /* OPTIONAL. Pause and resume all vCPUs. */
  bbx_status (*vm_pause)(bbx_vm *vm, bbx_error *error);
  bbx_status (*vm_resume)(bbx_vm *vm, bbx_error *error);
  /* OPTIONAL. Hotplug a beaconbox.plugin.v1.Device (borrowed) into a running VM. */
  bbx_status (*vm_add_device)(bbx_vm *vm, bbx_bytes device, bbx_error *error);
  /* OPTIONAL. Sets the vCPU count and memory (MiB) within the spec's maxima. */
  bbx_status (*vm_resize)(bbx_vm *vm, uint32_t vcpus, uint64_t memory_mib,
                          bbx_error *error);
  /* OPTIONAL. Removes what VMs of a dead shim left behind (pids recorded in
   * beaconbox.plugin.v1.VmInfo bytes, borrowed). Idempotent. */
  bbx_status (*vm_cleanup_stale)(bbx_plugin *plugin, bbx_bytes vm_info, bbx_error *error);
} bbx_vmm_ops;

/* ------------------------------------------------------------------------- */
/* Network plugins                                                            */

typedef struct bbx_network_ops {
  uint32_t struct_size;
  bbx_plugin_common_ops common;
  /* Gives a container a network attachment from a
   * beaconbox.plugin.v1.NetworkAttachRequest (borrowed) and writes the
   * beaconbox.plugin.v1.NetworkAttachment (TAP device, MAC, addresses, routes, DNS)
   * into `attachment`. Idempotent per container id. */
  bbx_status (*attach)(bbx_plugin *plugin, bbx_bytes request, bbx_sink attachment,
                       bbx_error *error);
  /* Releases everything attach made for `container_id` (NUL-terminated, borrowed).
   * Releasing an unknown or already released id succeeds. */
  bbx_status (*detach)(bbx_plugin *plugin, const char *container_id, bbx_error *error);
  /* OPTIONAL. Removes leases and devices whose owner is gone; writes a
   * beaconbox.plugin.v1.ReconcileReport into `report`. */
  bbx_status (*reconcile)(bbx_plugin *plugin, bbx_sink report, bbx_error *error);
  /* OPTIONAL. Writes a beaconbox.plugin.v1.LeaseList into `leases`. */
  bbx_status (*list_leases)(bbx_plugin *plugin, bbx_sink leases, bbx_error *error);
} bbx_network_ops;

/* ------------------------------------------------------------------------- */
/* Storage plugins                                                            */

typedef struct bbx_storage_ops {
  uint32_t struct_size;
  bbx_plugin_common_ops common;
  /* Turns a beaconbox.plugin.v1.StoragePrepareRequest (the container's rootfs
   * mounts and bundle, borrowed) into a beaconbox.plugin.v1.MountPlan (shares and
   * block devices for the VMM, mounts for the guest) written into `plan`. Host-side
   * mounts it makes are recorded under the bundle so release can undo them. */
  bbx_status (*prepare)(bbx_plugin *plugin, bbx_bytes request, bbx_sink plan,
                        bbx_error *error);
  /* Undoes prepare for `container_id` and `bundle` (NUL-terminated, borrowed).
   * Idempotent. */
  bbx_status (*release)(bbx_plugin *plugin, const char *container_id, const char *bundle,
                        bbx_error *error);
} bbx_storage_ops;

#ifdef __cplusplus
}
#endif

#endif /* BEACONBOX_PLUGIN_ABI_H */
