// Every path the shim makes or reads, in one place, keyed by containerd namespace
// and container id: the same id in two namespaces never shares a socket, a VM
// directory, a console log or a state file.
//
//   <run_dir>/s/<32 hex>              the shim's ttrpc socket (hash of address, ns, id)
//   <run_dir>/vm/<ns>--<id>           a VM's directory: the VMM's and helpers' sockets
//   <run_dir>/vm/h-<16 hex>           the same when the readable name would not leave
//                                     room for socket names within sun_path
//   <log_dir>/vm-<ns>--<id>.log       the VM's console log (hashed like the VM dir when
//                                     ns or id hold unexpected characters)
//   <state_dir>/shim/<ns>--<id>.json  the shim record: who serves the sandbox (pid and
//                                     start time), its socket, config and bundle
//                                     (shim_record.h); hashed like the VM dir
//   <state_dir>/shim/<ns>--<id>.state.json
//                                     what the sandbox set up, step by step (state file)
//   <bundle>/beaconbox-state.json     the state file of a shim without a state_dir
//                                     (read as a fallback: records of an older shim)
//   <bundle>/address, <bundle>/shim.pid
//
// "--" separates namespace and id because containerd allows neither to hold two
// separators in a row, so no two (ns, id) pairs give the same name.
#pragma once

#include <chrono>
#include <compare>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace beaconbox::shim {

// Who a per-container resource belongs to.
struct ContainerKey {
  std::string namespace_name;
  std::string id;

  auto operator<=>(const ContainerKey&) const = default;
  bool operator==(const ContainerKey&) const = default;
  std::string ToString() const { return namespace_name + "/" + id; }
};

class RuntimeLayout {
 public:
  // sizeof(sockaddr_un::sun_path) - 1: the longest socket path bind() takes.
  static constexpr size_t kMaxSocketPath = 107;
  // Room a VM directory leaves for the socket names a VMM plugin puts in it
  // ("/virtiofsd-12.sock" and the like).
  static constexpr size_t kVmSocketNameRoom = 24;

  // How long a deleted container's console log is kept (config key
  // vm.console_log_retention_s; console_logs.h).
  static constexpr std::chrono::seconds kDefaultConsoleLogRetention{7 * 24 * 3600};

  RuntimeLayout(std::string run_dir, std::string log_dir,
                std::chrono::seconds console_log_retention = kDefaultConsoleLogRetention,
                std::string state_dir = "");

  const std::string& run_dir() const { return run_dir_; }
  const std::string& log_dir() const { return log_dir_; }
  const std::string& state_dir() const { return state_dir_; }

  // The shim's listening socket for (containerd address, ns, id). Fails, naming the
  // config key, when even the hashed path is too long.
  Result<std::string> ShimSocketPath(std::string_view containerd_address,
                                     const ContainerKey& key) const;
  // The VM directory of the sandbox `key`; fails when no name fits sun_path.
  Result<std::string> VmDir(const ContainerKey& key) const;
  // The parent of every VM directory: teardown removes nothing outside it.
  std::string VmRoot() const { return run_dir_ + "/vm/"; }
  // True when `path` is a directory VmDir could have returned (under VmRoot, one
  // component, no ".."): a path read from a state file is checked before removal.
  bool IsVmDir(std::string_view path) const;
  std::string ConsoleLogPath(const ContainerKey& key) const;
  std::chrono::seconds console_log_retention() const { return console_log_retention_; }

  // <state_dir>/shim: the shim records and state files; "" without a state_dir.
  std::string ShimRecordDir() const;
  // The shim record and the state file of the sandbox `key` ("" without a state_dir).
  std::string ShimRecordPath(const ContainerKey& key) const;
  std::string SandboxStatePath(const ContainerKey& key) const;
  // The directory of every shim socket (<run_dir>/s): a socket path read from a record
  // is removed only when it is one of these.
  std::string ShimSocketDir() const { return run_dir_ + "/s"; }

  // The state file in a bundle (shims without a state_dir, and older shims).
  static std::string StateFilePath(const std::string& bundle);
  static std::string AddressFilePath(const std::string& bundle);
  static std::string ShimPidFilePath(const std::string& bundle);

 private:
  std::string run_dir_;
  std::string log_dir_;
  std::chrono::seconds console_log_retention_;
  std::string state_dir_;
};

// "<ns>--<id>" when both are containerd-style identifiers ([A-Za-z0-9] runs joined by
// single '.', '_' or '-'), else "h-" and 16 hex digits of a hash of both.
std::string KeyFileName(const ContainerKey& key);

// containerd's identifier rule (IsContainerdName, common/base/containerd_name.h).
bool IsContainerdIdentifier(std::string_view text);

// 64-bit FNV-1a of `text` from `seed`, as hex; for names that must be short and stable.
std::string HashHex(std::string_view text, uint64_t seed = 14695981039346656037ull);

}  // namespace beaconbox::shim
