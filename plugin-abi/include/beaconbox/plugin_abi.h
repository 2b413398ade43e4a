/*
 * beaconbox plugin ABI, version 2.
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
 *  - EXTENSIBLE STRUCTS start with `uint32_t struct_size` and are append-only, each on
 *    its own: no extensible struct is ever embedded by value in another (they are
 *    reached through pointers), so growing one never moves another's members. A
 *    reader touches a member only if `struct_size` covers it (BBX_STRUCT_HAS). A
 *    struct_size larger than the reader knows is fine: the reader ignores the tail.
 *  - OPS TABLES. Members of the `bbx_*_ops` tables are HOOKS: the plugin implements
 *    them, the host calls them. Members of `bbx_host_services` named `host_*` are
 *    CALLBACKS: the host implements them, the plugin calls them (so is
 *    `bbx_sink.host_write`). A hook marked
 *    OPTIONAL may be NULL (or lie beyond struct_size); the host then answers "not
 *    implemented" itself. A hook that exists but cannot do what is asked returns
 *    BBX_ERR_NOT_IMPLEMENTED with a message, never a silent success.
 *  - ENUMS are 32 bits wide (each has a `_FORCE_32BIT` sentinel) and only gain values.
 *    A reader treats a value it does not know as an error, never as a default.
 *  - HANDLES are opaque (`bbx_plugin`, `bbx_vm`) and are destroyed by the side that
 *    created them, through that side's own destroy function.
 *  - ERRORS. Every fallible call returns a `bbx_status`. On failure the plugin writes
 *    one line of text (NUL-terminated, truncated to fit) into the caller-owned
 *    `bbx_error` buffer. Nothing is ever freed across the boundary.
 *  - BYTES. Complex arguments and results are protobuf messages defined in
 *    plugin-abi/proto/beaconbox/plugin/v1/ (the package versions the messages, which
 *    only ever gain fields; the C ABI has its own version here). They are passed as
 *    (pointer, length). Inputs are borrowed for the duration of the call. Results are
 *    handed to a caller-provided `bbx_sink`, which copies them before returning.
 *  - CONTAINERS. Every per-container hook takes a message carrying the containerd
 *    namespace and the container id: the same id may exist in two namespaces, and
 *    everything a plugin keys by container (devices, leases, files) includes both.
 *  - FILE DESCRIPTORS are plain ints; each function states who owns them after the call.
 *  - THREADING. Plugin-level hooks (those taking `bbx_plugin *`) may be called from
 *    any thread, concurrently; a plugin makes them thread-safe. Hooks on one `bbx_vm`
 *    are called by one thread at a time; different VMs may be driven concurrently.
 */
#ifndef BEACONBOX_PLUGIN_ABI_H
#define BEACONBOX_PLUGIN_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version 1 embedded the common ops in each kind's table and passed bare container
 * ids; a v2 host refuses v1 plugins (plugin-abi/README.md, "What changed"). */
#define BBX_ABI_VERSION_MIN_SUPPORTED 2u
#define BBX_ABI_VERSION_CURRENT 2u

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
  BBX_ERR_INTERNAL = 10,
  BBX_STATUS_FORCE_32BIT = 0x7fffffff
} bbx_status;

typedef enum bbx_plugin_kind {
  BBX_PLUGIN_KIND_VMM = 1,
  BBX_PLUGIN_KIND_NETWORK = 2,
  BBX_PLUGIN_KIND_STORAGE = 3,
  BBX_PLUGIN_KIND_FORCE_32BIT = 0x7fffffff
} bbx_plugin_kind;

typedef enum bbx_log_level {
  BBX_LOG_TRACE = 0,
  BBX_LOG_DEBUG = 1,
  BBX_LOG_INFO = 2,
  BBX_LOG_WARN = 3,
  BBX_LOG_ERROR = 4,
  BBX_LOG_FORCE_32BIT = 0x7fffffff
} bbx_log_level;

/* A caller-owned buffer for a one-line error message. The callee writes at most
 * `capacity` bytes including the terminating NUL. `message` may be NULL when
 * capacity is 0; the callee then writes nothing. Not extensible: two members. */
typedef struct bbx_error {
  char *message;
  size_t capacity;
} bbx_error;

/* Borrowed bytes: valid only for the duration of the call that receives them. */
typedef struct bbx_bytes {
  const uint8_t *data;
  size_t len;
} bbx_bytes;

/* Where a plugin delivers a result. CALLBACK `host_write` copies `len` bytes of
 * `data` (borrowed) and returns 0, or non-zero if it cannot take them (the plugin then
 * fails with BBX_ERR_INTERNAL). A plugin calls it at most once per result. OWNERSHIP:
 * the host owns `context`. THREADING: called on the thread of the hook that received
 * the sink, before that hook returns. */
typedef struct bbx_sink {
  void *context;
  int (*host_write)(void *context, const uint8_t *data, size_t len);
} bbx_sink;

/* Services the host offers every plugin. OWNERSHIP: host-owned, with every string in
 * it; valid from init until fini returns. THREADING: every callback may be called
 * from any thread, concurrently. */
typedef struct bbx_host_services {
  uint32_t struct_size;
  uint32_t abi_version; /* the version negotiated with this plugin */
  void *host_context;   /* passed back as the first argument of each callback */
  /* CALLBACK. Logs one line into the host's log, prefixed with the plugin's kind and
   * name. `message` is borrowed for the call. */
  void (*host_log)(void *host_context, bbx_log_level level, const char *message);
  /* Directories the plugin may use, absolute, NUL-terminated.
   * state_dir: persistent state (seed default /var/lib/beacon). What a plugin keeps
   *            across VMs on purpose (host-wide caches, e.g. the qemu plugin's KVM
   *            verdict) goes under <state_dir>/<plugin name>/cache/: checks for
   *            leftovers (beaconbox-vmm-conformance) leave that directory alone.
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
  BBX_CONFIG_STRING_ARRAY = 4,
  BBX_CONFIG_FORCE_32BIT = 0x7fffffff
} bbx_config_type;

/* One key a plugin accepts in its `[plugins.<kind>.<name>.config]` table. The host
 * refuses keys not in the schema and values of the wrong type before init is called.
 *
 * The keys are one array of `config_key_count` elements whose stride is the FIRST
 * key's struct_size: the host reads key i at `(const char *)config_keys + i *
 * config_keys[0].struct_size`, so every key of one array must carry the same
 * struct_size (a plugin simply writes sizeof(bbx_config_key) into each). A key array
 * built against a newer header (larger struct_size) is walked correctly by an older
 * host, and the reverse.
 *
 * OWNERSHIP: plugin-owned static data, valid while the plugin is loaded. */
typedef struct bbx_config_key {
  uint32_t struct_size;
  bbx_config_type type;
  const char *name;
  const char *default_value; /* as written in TOML; NULL when there is none */
  const char *description;   /* one line, for `beaconbox-ctl plugins` and docs */
  /* An environment variable that overrides this key (e.g. "BEACON_CNI_BIN_DIR"), or
   * NULL. The host applies it generically before init: a set, non-empty variable
   * replaces the file's value. Only STRING and BOOLEAN keys take an override (for a
   * BOOLEAN key the variable is 1, true, 0 or false). */
  const char *env_var;
} bbx_config_key;

/* ------------------------------------------------------------------------- */
/* Entry point and common hooks                                               */

typedef struct bbx_plugin bbx_plugin; /* opaque; created by init, freed by fini */

/* What the host offers. OWNERSHIP: host-owned, borrowed for the call. */
typedef struct bbx_entry_request {
  uint32_t struct_size;
  uint32_t abi_min; /* lowest ABI version the host speaks */
  uint32_t abi_max; /* highest ABI version the host speaks */
} bbx_entry_request;

/* Hooks every plugin kind has, in a table of their own (never embedded in a kind's
 * table). OWNERSHIP: plugin-owned static data. */
typedef struct bbx_plugin_common_ops {
  uint32_t struct_size;
  /* Parses `config_toml` (the plugin's own table as TOML text, already checked
   * against the schema, environment overrides applied; borrowed) and creates the
   * plugin instance. MUST NOT change the system (no devices, processes or files):
   * `beaconbox-ctl config validate` calls it. OWNERSHIP: `host` stays valid until
   * fini; `*out` is plugin-owned and released by fini. THREADING: called once, before
   * any other hook but entry. */
  bbx_status (*init)(const bbx_host_services *host, bbx_bytes config_toml,
                     bbx_plugin **out, bbx_error *error);
  /* Releases the instance. Resources handed out per container are released by
   * their own hooks before; fini only frees what init made. OWNERSHIP: `plugin` is
   * invalid afterwards; `host` may go right after. THREADING: called once, after every
   * other hook has returned. */
  void (*fini)(bbx_plugin *plugin);
  /* OPTIONAL. Checks the plugin's own prerequisites on this host (its binaries,
   * devices, permissions, directories) and writes a beaconbox.plugin.v1.CheckReport
   * (one line each: OK, WARN or FAIL, what, and the fix) into `report`; `beaconbox-ctl
   * check` prints it under the plugin's name. A failed prerequisite is a FAIL line in
   * a successful call; the call itself fails only when it cannot check. MUST NOT
   * change the system. OWNERSHIP: nothing retained. THREADING: any thread. */
  bbx_status (*check)(bbx_plugin *plugin, bbx_sink report, bbx_error *error);
  /* OPTIONAL. Writes a beaconbox.plugin.v1.Capabilities (which optional features this
   * plugin has: pause, hotplug, resize, read-only shares, agent channel kinds, ...)
   * into `capabilities`, so the host asks instead of guessing. Absent: the host
   * assumes none. Must not depend on the system's state (it describes the plugin, not
   * the host). OWNERSHIP: nothing retained. THREADING: any thread. */
  bbx_status (*capabilities)(bbx_plugin *plugin, bbx_sink capabilities, bbx_error *error);
} bbx_plugin_common_ops;

/* What the plugin answers. OWNERSHIP: every pointer is plugin-owned static data,
 * valid while the shared object stays loaded. The host sets struct_size to the size
 * it knows; the plugin fills only members that fit and sets struct_size to what it
 * wrote. */
typedef struct bbx_entry_response {
  uint32_t struct_size;
  uint32_t abi_version;  /* chosen by the plugin, within [abi_min, abi_max] */
  bbx_plugin_kind kind;
  const char *name;      /* e.g. "qemu", "bridge", "virtiofs" */
  const char *version;   /* the plugin's own version, e.g. "0.1.0" */
  /* The config schema: `config_key_count` keys, walked with the stride of the first
   * key's struct_size (see bbx_config_key). NULL when the count is 0. */
  const bbx_config_key *config_keys;
  size_t config_key_count;
  /* The common hooks; required. */
  const bbx_plugin_common_ops *common_ops;
  /* The kind's hooks: a bbx_vmm_ops, bbx_network_ops or bbx_storage_ops per `kind`,
   * each starting with its own struct_size. Required. */
  const void *kind_ops;
} bbx_entry_response;

/* The exported entry. Returns BBX_ERR_ABI_MISMATCH (with a message) when the plugin
 * speaks no version in the offered range. OWNERSHIP: `request` and `error` are
 * host-owned and borrowed; the plugin writes into `*response` (host-owned) no more
 * than its struct_size. THREADING: may be called more than once, from any thread; it
 * must not have side effects. */
typedef bbx_status (*bbx_plugin_entry_fn)(const bbx_entry_request *request,
                                          bbx_entry_response *response, bbx_error *error);
BBX_EXPORT bbx_status bbx_plugin_entry(const bbx_entry_request *request,
                                       bbx_entry_response *response, bbx_error *error);

/* ------------------------------------------------------------------------- */
/* VMM plugins                                                                */

typedef struct bbx_vm bbx_vm; /* opaque; created by vm_create, freed by vm_destroy */

/* OWNERSHIP of every hook below: byte inputs are borrowed for the call; nothing is
 * retained unless said. THREADING: see the file comment (one thread per bbx_vm). */
typedef struct bbx_vmm_ops {
  uint32_t struct_size;
  /* Prepares a VM from a beaconbox.plugin.v1.VmSpec (namespace, id, and what the host
   * decided: agent channel, guest CID, kernel arguments, vhost-user sockets) and
   * starts its VMM and helper processes (virtiofsd on each share's socket); the guest
   * boots. On success `*out` is plugin-owned and must be released with vm_destroy; on
   * failure nothing is left behind. THREADING: any thread, concurrently. */
  bbx_status (*vm_create)(bbx_plugin *plugin, bbx_bytes vm_spec, bbx_vm **out,
                          bbx_error *error);
  /* Waits up to `timeout_ms` for the guest agent on the spec's agent channel and
   * returns a connected stream socket to it in `*fd_out`. OWNERSHIP: the caller owns
   * `*fd_out` and closes it. The host treats every byte read from it as untrusted. */
  bbx_status (*vm_connect_guest)(bbx_vm *vm, uint32_t timeout_ms, int *fd_out,
                                 bbx_error *error);
  /* Writes a beaconbox.plugin.v1.VmInfo (namespace, id, pids, sockets, log path,
   * accelerator) into `info`. */
  bbx_status (*vm_info)(bbx_vm *vm, bbx_sink info, bbx_error *error);
  /* Asks the guest to power off, waits up to `timeout_ms`, then forces it. Returns
   * when no process of this VM runs any more. Idempotent. */
  bbx_status (*vm_stop)(bbx_vm *vm, uint32_t timeout_ms, bbx_error *error);
  /* Stops the VM if still running (forcefully), removes its runtime files and frees
   * the handle. Never fails. OWNERSHIP: `vm` is invalid afterwards. */
  void (*vm_destroy)(bbx_vm *vm);
  /* OPTIONAL (capability pause). Pause and resume all vCPUs. */
  bbx_status (*vm_pause)(bbx_vm *vm, bbx_error *error);
  bbx_status (*vm_resume)(bbx_vm *vm, bbx_error *error);
  /* OPTIONAL (capabilities hotplug_*). Hotplugs a beaconbox.plugin.v1.Device into a
   * running VM. */
  bbx_status (*vm_add_device)(bbx_vm *vm, bbx_bytes device, bbx_error *error);
  /* OPTIONAL (capabilities resize_*). Sets the vCPU count and memory (MiB) within the
   * spec's maxima; 0 leaves one unchanged. */
  bbx_status (*vm_resize)(bbx_vm *vm, uint32_t vcpus, uint64_t memory_mib,
                          bbx_error *error);
  /* OPTIONAL. Removes what the VM of a dead shim left behind, from the
   * beaconbox.plugin.v1.VmInfo its vm_info wrote (namespace, id, pids). Idempotent.
   * THREADING: any thread, concurrently. */
  bbx_status (*vm_cleanup_stale)(bbx_plugin *plugin, bbx_bytes vm_info, bbx_error *error);
  /* OPTIONAL (capability save). Saves the paused VM (its memory and device state) into
   * new files in the existing directory `dir` (a NUL-terminated absolute path; the
   * plugin creates no file outside it and follows no symlink in it) and writes a
   * beaconbox.plugin.v1.VmSaved (the names of those files, relative to `dir`, and the
   * VMM's version) into `saved`. The VM stays paused; resumed, it runs on. On failure
   * the files it created are removed. A VmSpec with restore_dir set loads such a save
   * instead of booting (see vmm.proto). OWNERSHIP: `dir` is borrowed for the call. */
  bbx_status (*vm_save)(bbx_vm *vm, const char *dir, bbx_sink saved, bbx_error *error);
} bbx_vmm_ops;

/* ------------------------------------------------------------------------- */
/* Network plugins                                                            */

/* OWNERSHIP of every hook below: byte inputs are borrowed for the call; results are
 * copied by the sink. THREADING: any thread, concurrently. */
typedef struct bbx_network_ops {
  uint32_t struct_size;
  /* Gives a container a network attachment from a
   * beaconbox.plugin.v1.NetworkAttachRequest (namespace, id, owner) and writes the
   * beaconbox.plugin.v1.NetworkAttachment (TAP device, MAC, addresses, routes, DNS)
   * into `attachment`. Idempotent per (namespace, id). */
  bbx_status (*attach)(bbx_plugin *plugin, bbx_bytes request, bbx_sink attachment,
                       bbx_error *error);
  /* Releases everything attach made for the (namespace, id) of a
   * beaconbox.plugin.v1.NetworkDetachRequest. Releasing an unknown or already
   * released container succeeds. */
  bbx_status (*detach)(bbx_plugin *plugin, bbx_bytes request, bbx_error *error);
  /* OPTIONAL. Removes leases and devices whose owner is gone; writes a
   * beaconbox.plugin.v1.ReconcileReport into `report`. */
  bbx_status (*reconcile)(bbx_plugin *plugin, bbx_sink report, bbx_error *error);
  /* OPTIONAL. Writes a beaconbox.plugin.v1.LeaseList into `leases`. */
  bbx_status (*list_leases)(bbx_plugin *plugin, bbx_sink leases, bbx_error *error);
} bbx_network_ops;

/* ------------------------------------------------------------------------- */
/* Storage plugins                                                            */

/* OWNERSHIP of every hook below: byte inputs are borrowed for the call; results are
 * copied by the sink. THREADING: any thread, concurrently. */
typedef struct bbx_storage_ops {
  uint32_t struct_size;
  /* Turns a beaconbox.plugin.v1.StoragePrepareRequest (namespace, id, the rootfs
   * mounts and bundle) into a beaconbox.plugin.v1.MountPlan (shares and block devices
   * for the VMM, mounts for the guest) written into `plan`. What release needs to undo
   * it is recorded under the plugin's own <state_dir>/<plugin name>/, not in the
   * bundle (see release). */
  bbx_status (*prepare)(bbx_plugin *plugin, bbx_bytes request, bbx_sink plan,
                        bbx_error *error);
  /* Undoes prepare for the (namespace, id, bundle) of a
   * beaconbox.plugin.v1.StorageReleaseRequest. Idempotent. The bundle may be gone
   * (containerd removes it while a dead shim's `delete` action runs): keep what
   * release needs under state_dir, keyed by (namespace, id). */
  bbx_status (*release)(bbx_plugin *plugin, bbx_bytes request, bbx_error *error);
  /* OPTIONAL. Removes what the plugin keeps for containers (caches) that no container
   * and no snapshot uses any more; writes a beaconbox.plugin.v1.StorageGcReport into
   * `report`. Never removes what a running container uses. */
  bbx_status (*gc)(bbx_plugin *plugin, bbx_sink report, bbx_error *error);
} bbx_storage_ops;

#ifdef __cplusplus
}
#endif

#endif /* BEACONBOX_PLUGIN_ABI_H */
