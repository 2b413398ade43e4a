#include "host/shim/spec_adapter.h"

#include <nlohmann/json.hpp>

#include "common/base/bounded_json.h"

namespace beaconbox::shim {
namespace {

using nlohmann::json;

bool IsBindMount(const json& mount) {
  if (mount.value("type", "") == "bind") return true;
  if (auto it = mount.find("options"); it != mount.end() && it->is_array()) {
    for (const auto& option : *it) {
      if (option == "bind" || option == "rbind") return true;
    }
  }
  return false;
}

// The volume a bind mount names; an error for propagation a VM cannot honour: the
// guest's mounts never reach the host, nor the host's later mounts the guest.
Result<HostVolume> VolumeOf(const json& mount) {
  HostVolume volume;
  volume.source = mount.value("source", "");
  volume.destination = mount.value("destination", "");
  if (volume.source.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "bind mount to '" + volume.destination +
                                                      "' has no source: name the host path");
  }
  if (auto it = mount.find("options"); it != mount.end() && it->is_array()) {
    for (const auto& option : *it) {
      if (!option.is_string()) continue;
      const std::string& word = option.get_ref<const std::string&>();
      if (word == "ro" || word == "rro") volume.read_only = true;
      if (word == "rw") volume.read_only = false;
      if (word == "rbind") volume.recursive = true;
      if (word == "shared" || word == "rshared" || word == "slave" || word == "rslave") {
        return MakeError(ErrorCode::kInvalidArgument,
                         "bind mount of host path '" + volume.source + "' to '" +
                             volume.destination + "' asks for " + word +
                             " propagation, which cannot cross into the container's VM: use "
                             "private or rprivate (Kubernetes: mountPropagation None)");
      }
    }
  }
  return volume;
}

Result<AdaptedSpec> Adapt(std::string_view host_config_json, bool share_vm_dns,
                          std::string_view guest_rootfs,
                          const std::vector<std::string>* guest_volume_paths) {
  BBX_ASSIGN_OR_RETURN(json spec, ParseBoundedJson(host_config_json, "config.json in the bundle"));
  if (!spec.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "config.json in the bundle is not a JSON object");
  }
  AdaptedSpec adapted;

  json& root = spec["root"];
  if (!root.is_object()) root = json::object();
  if (root.contains("path") && root["path"].is_string()) {
    adapted.host_root_path = root["path"].get<std::string>();
  }
  adapted.root_read_only = root.value("readonly", false);
  root["path"] = std::string(guest_rootfs);

  if (auto it = spec.find("annotations"); it != spec.end() && it->is_object()) {
    for (const auto& [key, value] : it->items()) {
      if (value.is_string()) adapted.annotations[key] = value.get<std::string>();
    }
  }

  if (auto linux_it = spec.find("linux"); linux_it != spec.end() && linux_it->is_object()) {
    if (auto ns = linux_it->find("namespaces"); ns != linux_it->end() && ns->is_array()) {
      json kept = json::array();
      for (const auto& entry : *ns) {
        if (entry.is_object() && entry.value("type", "") == "network") {
          if (auto path = entry.find("path"); path != entry.end() && path->is_string()) {
            adapted.network_namespace_path = path->get<std::string>();
          }
          continue;
        }
        kept.push_back(entry);
      }
      *ns = std::move(kept);
    }
  }

  // The guest's crun (Debian bookworm's) refuses any ociVersion but 1.0.x, and
  // containerd 1.7 writes 1.1.0-rc.N. The fields it sets exist in 1.0.2 as well.
  if (spec.value("ociVersion", std::string("1.0.2")).rfind("1.0", 0) != 0) {
    spec["ociVersion"] = "1.0.2";
  }

  // The host's hooks are run by the shim (oci_hooks.h); startContainer stays for the
  // guest's crun, which runs it in the container, where its path resolves.
  if (auto hooks = spec.find("hooks"); hooks != spec.end()) {
    BBX_ASSIGN_OR_RETURN(adapted.hooks, ParseHostHooks(*hooks));
    json start_container = hooks->is_object() ? hooks->value("startContainer", json()) : json();
    if (start_container.is_array() && !start_container.empty()) {
      *hooks = json{{"startContainer", std::move(start_container)}};
    } else {
      spec.erase("hooks");
    }
  }

  if (auto mounts = spec.find("mounts"); mounts != spec.end() && mounts->is_array()) {
    for (auto& mount : *mounts) {
      if (!mount.is_object() || !IsBindMount(mount)) continue;
      BBX_ASSIGN_OR_RETURN(HostVolume volume, VolumeOf(mount));
      if (guest_volume_paths != nullptr) {
        if (adapted.volumes.size() >= guest_volume_paths->size()) {
          return MakeError(ErrorCode::kInternal,
                           "the storage plugin placed " +
                               std::to_string(guest_volume_paths->size()) +
                               " volumes in the guest, fewer than the spec's bind mounts");
        }
        mount["source"] = (*guest_volume_paths)[adapted.volumes.size()];
      }
      adapted.volumes.push_back(std::move(volume));
    }
  }

  if (share_vm_dns) {
    json& mounts = spec["mounts"];
    if (!mounts.is_array()) mounts = json::array();
    bool has_own = false;
    for (const auto& mount : mounts) {
      if (mount.is_object() && mount.value("destination", "") == "/etc/resolv.conf") has_own = true;
    }
    // A guest path: crun binds the VM's file, never anything of the host's.
    if (!has_own) {
      mounts.push_back({{"destination", "/etc/resolv.conf"},
                        {"type", "bind"},
                        {"source", "/etc/resolv.conf"},
                        {"options", json::array({"rbind", "ro", "nosuid", "nodev", "noexec"})}});
    }
  }

  adapted.config_json = spec.dump();
  return adapted;
}

}  // namespace

Result<AdaptedSpec> AdaptSpecForGuest(std::string_view host_config_json, bool share_vm_dns,
                                      std::string_view guest_rootfs,
                                      const std::vector<std::string>* guest_volume_paths) {
  // json's typed accessors throw on a field of another type ("readonly": "yes") and
  // dump() throws on a string that is not UTF-8 (a guest rootfs from the storage
  // plugin): bad input, answered as such rather than as an exception.
  try {
    return Adapt(host_config_json, share_vm_dns, guest_rootfs, guest_volume_paths);
  } catch (const json::exception& error) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string("config.json in the bundle cannot be adapted: ") + error.what() +
                         ": fix the field it names");
  }
}

Result<std::string> JoinPodNamespaces(std::string_view guest_config_json, uint32_t sandbox_host_pid,
                                      uint32_t sandbox_guest_pid) {
  BBX_ASSIGN_OR_RETURN(json spec, ParseBoundedJson(guest_config_json, "the guest's config.json"));
  if (!spec.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "the guest's config.json is not a JSON object");
  }
  auto linux_it = spec.find("linux");
  if (linux_it == spec.end() || !linux_it->is_object()) return std::string(guest_config_json);
  auto ns = linux_it->find("namespaces");
  if (ns == linux_it->end() || !ns->is_array()) return std::string(guest_config_json);
  const std::string host_prefix = "/proc/" + std::to_string(sandbox_host_pid) + "/ns/";
  const std::string guest_prefix = "/proc/" + std::to_string(sandbox_guest_pid) + "/ns/";
  for (auto& entry : *ns) {
    if (!entry.is_object()) continue;
    auto path = entry.find("path");
    if (path == entry.end() || !path->is_string() || path->get<std::string>().empty()) continue;
    auto type_it = entry.find("type");
    const std::string type =
        type_it != entry.end() && type_it->is_string() ? type_it->get<std::string>() : "";
    const std::string given = path->get<std::string>();
    // The kernel's names in /proc/<pid>/ns for the OCI types a pod shares.
    std::string proc_name;
    if (type == "ipc" || type == "uts" || type == "pid" || type == "cgroup") proc_name = type;
    if (type == "mount") proc_name = "mnt";
    if (proc_name.empty() || sandbox_guest_pid == 0 || given != host_prefix + proc_name) {
      return MakeError(ErrorCode::kNotImplemented,
                       "the spec joins the " + type.substr(0, 16) + " namespace " +
                           given.substr(0, 80) +
                           ", which is not one of the pod's sandbox container (" + host_prefix +
                           "...): joining a host namespace from a VM is not implemented");
    }
    *path = guest_prefix + proc_name;
  }
  return spec.dump();
}

Result<std::string> AdaptProcessForGuest(std::string_view process_json) {
  BBX_ASSIGN_OR_RETURN(json process, ParseBoundedJson(process_json, "exec process spec"));
  if (!process.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "exec process spec is not a JSON object");
  }
  return process.dump();
}

}  // namespace beaconbox::shim
