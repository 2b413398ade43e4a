// Which kernel modules to load, in which order (from modules.dep and
// modules.builtin). Used by vminitd and by the image build tool on the host.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::guest {

// Normalizes a module name: "virtio-rng" and "virtio_rng.ko" both -> "virtio_rng".
std::string ModuleName(std::string_view name_or_path);

struct ModuleDep {
  std::string path;               // relative to /lib/modules/<version>/
  std::vector<std::string> deps;  // paths, as depmod wrote them
};

// Parses modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko") keyed by module name.
std::map<std::string, ModuleDep> ParseModulesDep(std::string_view text);

// Parses modules.builtin (one path per line) into module names.
std::set<std::string> ParseModulesBuiltin(std::string_view text);

// Returns the module paths to load so that every module comes after its
// dependencies, each once. A wanted module that is built in is skipped; one that is
// neither built in nor in modules.dep is an error naming it.
Result<std::vector<std::string>> ResolveModuleOrder(const std::vector<std::string>& wanted,
                                                    const std::map<std::string, ModuleDep>& deps,
                                                    const std::set<std::string>& builtin);

// Removes the kernel module files an order file lists (absolute paths, one a line;
// a line not naming a module file is left alone), once vminitd loaded them: the
// initramfs stays in guest RAM for the VM's life and a loaded module's file is never
// read again (2.1 MiB of the image). Returns how many files were removed.
int RemoveListedModuleFiles(const std::string& order_file);

// The modules the guest's modprobe helper may load when the kernel asks for one
// (request_module, e.g. "bridge" for brctl addbr, "rtnl-link-dummy" for ip link add
// type dummy): /etc/beaconbox/modules.ondemand, one line a module,
//   NAME [ALIAS...]: PATH...
// the paths absolute, dependencies first, the module itself last.
inline constexpr char kOnDemandModulesFile[] = "/etc/beaconbox/modules.ondemand";

// A module name or alias the kernel may request: 1 to 55 characters (MODULE_NAME_LEN
// less the NUL) of [A-Za-z0-9_-], not starting with '-'; no path, no wildcard.
bool IsValidModuleRequest(std::string_view name);

// The module name the helper's argv asks for: the kernel passes "-q -- NAME"; the
// options -q, -b and -- are accepted before the one name, nothing else.
Result<std::string> ParseModprobeArgs(const std::vector<std::string>& args);

// The files to load, in order, for `request` (name or alias, '-' and '_' alike) from
// the on-demand list's text; kNotFound when the list does not have it, and
// kInvalidArgument for a request that is not a module name or a list line that is broken.
Result<std::vector<std::string>> OnDemandModuleFiles(std::string_view request,
                                                     std::string_view list_text);

}  // namespace beaconbox::guest
