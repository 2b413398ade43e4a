/* Prints the layout of every public struct and the value of every enum constant of
 * plugin_abi.h, one line each ("field <struct> <member> <offset> <size>", "enum
 * <constant> <value>"). tests/abi_layout compares the output with the committed
 * baseline plugin-abi/abi/layout.txt: a line that changed or vanished (a member moved,
 * resized, removed or renamed; an enum value changed) breaks the ABI; new lines
 * (appended members, new constants) do not.
 *
 * A member added to a struct in plugin_abi.h is added here too, at the end of its
 * struct's list; a member removed or renamed makes this file fail to compile, which
 * the test counts as a break. */
#include <stdio.h>

#include "beaconbox/plugin_abi.h"

#define FIELD(type, member)                                                  \
  printf("field %s %s %zu %zu\n", #type, #member, offsetof(type, member), \
         sizeof(((type *)0)->member))
#define ENUM(constant) printf("enum %s %lld\n", #constant, (long long)(constant))

int main(void) {
  FIELD(bbx_error, message);
  FIELD(bbx_error, capacity);
  FIELD(bbx_bytes, data);
  FIELD(bbx_bytes, len);
  FIELD(bbx_sink, context);
  FIELD(bbx_sink, host_write);

  FIELD(bbx_host_services, struct_size);
  FIELD(bbx_host_services, abi_version);
  FIELD(bbx_host_services, host_context);
  FIELD(bbx_host_services, host_log);
  FIELD(bbx_host_services, state_dir);
  FIELD(bbx_host_services, run_dir);
  FIELD(bbx_host_services, log_dir);
  FIELD(bbx_host_services, share_dir);

  FIELD(bbx_config_key, struct_size);
  FIELD(bbx_config_key, type);
  FIELD(bbx_config_key, name);
  FIELD(bbx_config_key, default_value);
  FIELD(bbx_config_key, description);
  FIELD(bbx_config_key, env_var);

  FIELD(bbx_entry_request, struct_size);
  FIELD(bbx_entry_request, abi_min);
  FIELD(bbx_entry_request, abi_max);

  FIELD(bbx_plugin_common_ops, struct_size);
  FIELD(bbx_plugin_common_ops, init);
  FIELD(bbx_plugin_common_ops, fini);
  FIELD(bbx_plugin_common_ops, check);
  FIELD(bbx_plugin_common_ops, capabilities);

  FIELD(bbx_entry_response, struct_size);
  FIELD(bbx_entry_response, abi_version);
  FIELD(bbx_entry_response, kind);
  FIELD(bbx_entry_response, name);
  FIELD(bbx_entry_response, version);
  FIELD(bbx_entry_response, config_keys);
  FIELD(bbx_entry_response, config_key_count);
  FIELD(bbx_entry_response, common_ops);
  FIELD(bbx_entry_response, kind_ops);

  FIELD(bbx_vmm_ops, struct_size);
  FIELD(bbx_vmm_ops, vm_create);
  FIELD(bbx_vmm_ops, vm_connect_guest);
  FIELD(bbx_vmm_ops, vm_info);
  FIELD(bbx_vmm_ops, vm_stop);
  FIELD(bbx_vmm_ops, vm_destroy);
  FIELD(bbx_vmm_ops, vm_pause);
  FIELD(bbx_vmm_ops, vm_resume);
  FIELD(bbx_vmm_ops, vm_add_device);
  FIELD(bbx_vmm_ops, vm_resize);
  FIELD(bbx_vmm_ops, vm_cleanup_stale);
  FIELD(bbx_vmm_ops, vm_save);

  FIELD(bbx_network_ops, struct_size);
  FIELD(bbx_network_ops, attach);
  FIELD(bbx_network_ops, detach);
  FIELD(bbx_network_ops, reconcile);
  FIELD(bbx_network_ops, list_leases);

  FIELD(bbx_storage_ops, struct_size);
  FIELD(bbx_storage_ops, prepare);
  FIELD(bbx_storage_ops, release);
  FIELD(bbx_storage_ops, gc);

  ENUM(BBX_ABI_VERSION_MIN_SUPPORTED);
  ENUM(BBX_ABI_VERSION_CURRENT);
  ENUM(BBX_OK);
  ENUM(BBX_ERR_INVALID_ARGUMENT);
  ENUM(BBX_ERR_NOT_FOUND);
  ENUM(BBX_ERR_ALREADY_EXISTS);
  ENUM(BBX_ERR_PERMISSION);
  ENUM(BBX_ERR_UNAVAILABLE);
  ENUM(BBX_ERR_EXHAUSTED);
  ENUM(BBX_ERR_TIMEOUT);
  ENUM(BBX_ERR_NOT_IMPLEMENTED);
  ENUM(BBX_ERR_ABI_MISMATCH);
  ENUM(BBX_ERR_INTERNAL);
  ENUM(BBX_STATUS_FORCE_32BIT);
  ENUM(BBX_PLUGIN_KIND_VMM);
  ENUM(BBX_PLUGIN_KIND_NETWORK);
  ENUM(BBX_PLUGIN_KIND_STORAGE);
  ENUM(BBX_PLUGIN_KIND_FORCE_32BIT);
  ENUM(BBX_LOG_TRACE);
  ENUM(BBX_LOG_DEBUG);
  ENUM(BBX_LOG_INFO);
  ENUM(BBX_LOG_WARN);
  ENUM(BBX_LOG_ERROR);
  ENUM(BBX_LOG_FORCE_32BIT);
  ENUM(BBX_CONFIG_STRING);
  ENUM(BBX_CONFIG_INTEGER);
  ENUM(BBX_CONFIG_BOOLEAN);
  ENUM(BBX_CONFIG_STRING_ARRAY);
  ENUM(BBX_CONFIG_FORCE_32BIT);
  /* Every enum is 32 bits wide. */
  printf("size bbx_status %zu\n", sizeof(bbx_status));
  printf("size bbx_plugin_kind %zu\n", sizeof(bbx_plugin_kind));
  printf("size bbx_log_level %zu\n", sizeof(bbx_log_level));
  printf("size bbx_config_type %zu\n", sizeof(bbx_config_type));
  return 0;
}
