// Pure logic of vminitd and of the guest image build, kept free of system calls so
// that it is unit-tested on the host: kernel command line parsing, id validation,
// mount option parsing and kernel module load order.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::guest {

// --- kernel command line -------------------------------------------------------

// Splits /proc/cmdline into key -> value ("quiet" -> ""). Double quotes group words;
// the last occurrence of a key wins, as for the kernel's own parameters.
std::map<std::string, std::string> ParseCmdline(std::string_view cmdline);

struct ChannelSpec {
  enum class Kind { kVirtioSerial, kVsock };
  Kind kind = Kind::kVirtioSerial;
  std::string port_name;  // virtio-serial port name, e.g. beaconbox.agent
  unsigned vsock_port = 0;
};

inline constexpr std::string_view kChannelParam = "beaconbox.channel";

// Parses "virtio-serial:<name>" or "vsock:<port>".
Result<ChannelSpec> ParseChannelSpec(std::string_view value);

// --- ids -------------------------------------------------------------------------

// A container or exec id becomes a path component in the guest: 1..128 characters of
// [A-Za-z0-9_.-], starting with a letter or digit (so never "." or "..").
Status ValidateId(std::string_view id, std::string_view what);

// A mount target relative to the bundle: no empty, "." or ".." components.
Status ValidateRelativePath(std::string_view path);

// --- mounts ----------------------------------------------------------------------

struct MountOptions {
  unsigned long flags = 0;        // MS_* passed to mount(2)
  unsigned long propagation = 0;  // MS_SHARED/MS_PRIVATE/... applied afterwards
  bool bind = false;
  bool remount_readonly = false;  // "ro" with bind needs a second remount
  std::string data;               // filesystem-specific options, comma separated
};

// Turns fstab-style options ("ro", "nosuid", "rbind", "size=64m") into mount(2) flags
// and the data string. Unknown words are passed to the filesystem as data.
MountOptions ParseMountOptions(const std::vector<std::string>& options);

// --- kernel modules --------------------------------------------------------------

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

// --- network ---------------------------------------------------------------------

struct Cidr4 {
  uint32_t address = 0;  // network byte order
  uint32_t netmask = 0;  // network byte order
  unsigned prefix = 0;
};

// Parses "10.88.0.2/16" (IPv4 only; the prefix is required).
Result<Cidr4> ParseCidr4(std::string_view text);

// Renders /etc/resolv.conf from name servers and search domains (bounded, one line
// each; anything holding whitespace or control characters is rejected).
Result<std::string> RenderResolvConf(const std::vector<std::string>& servers,
                                     const std::vector<std::string>& search);

}  // namespace beaconbox::guest
