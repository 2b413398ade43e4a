#include "host/shim/translate.h"

namespace beaconbox::shim {

pluginapi::StoragePrepareRequest StorageRequestFor(const ContainerKey& key,
                                                   const std::string& bundle,
                                                   const ContainerdMounts& rootfs,
                                                   const AdaptedSpec& spec) {
  pluginapi::StoragePrepareRequest request;
  request.set_container_id(key.id);
  request.set_namespace_(key.namespace_name);
  request.set_bundle(bundle);
  request.set_rootfs_read_only(spec.root_read_only);
  for (const auto& mount : rootfs) {
    auto* host_mount = request.add_rootfs();
    host_mount->set_type(mount.type());
    host_mount->set_source(mount.source());
    host_mount->set_target(mount.target());
    for (const auto& option : mount.options()) host_mount->add_options(option);
  }
  if (rootfs.empty() && spec.host_root_path.starts_with("/") &&
      spec.host_root_path != bundle + "/rootfs") {
    auto* host_mount = request.add_rootfs();
    host_mount->set_type("bind");
    host_mount->set_source(spec.host_root_path);
    host_mount->add_options("rbind");
  }
  for (const auto& volume : spec.volumes) {
    auto* host_volume = request.add_volumes();
    // The OCI spec resolves a relative source against the bundle.
    host_volume->set_source(volume.source.starts_with("/") ? volume.source
                                                           : bundle + "/" + volume.source);
    host_volume->set_destination(volume.destination);
    host_volume->set_read_only(volume.read_only);
    host_volume->set_recursive(volume.recursive);
  }
  return request;
}

Status CheckGuestRelativePath(std::string_view path, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        std::string(what) + " \"" + std::string(path.substr(0, 64)) + "\" " + std::string(why));
  };
  if (path.empty() || path.size() > 1024) return bad("is empty or too long");
  if (path.front() == '/') return bad("is not relative");
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return bad("has an empty, . or .. component");
    if (part.find('\0') != std::string_view::npos) return bad("holds a NUL byte");
    start = slash + 1;
  }
  return Status::Ok();
}

Result<std::string> GuestRootfsFor(const pluginapi::MountPlan& plan) {
  std::string rootfs = plan.guest_rootfs().empty() ? "rootfs" : plan.guest_rootfs();
  BBX_RETURN_IF_ERROR(
      CheckGuestRelativePath(rootfs, "the storage plugin's guest rootfs path (MountPlan)"));
  return rootfs;
}

Result<std::vector<std::string>> GuestVolumePathsFor(const pluginapi::MountPlan& plan,
                                                     size_t volume_count) {
  if (static_cast<size_t>(plan.guest_volume_paths_size()) != volume_count) {
    return MakeError(ErrorCode::kNotImplemented,
                     "the storage plugin placed " + std::to_string(plan.guest_volume_paths_size()) +
                         " of the container's " + std::to_string(volume_count) +
                         " bind mounts of host paths in the guest: it cannot share volumes; use "
                         "the storage plugin virtiofs or remove the mounts");
  }
  std::vector<std::string> paths;
  for (const auto& path : plan.guest_volume_paths()) {
    BBX_RETURN_IF_ERROR(
        CheckGuestRelativePath(path, "the storage plugin's guest volume path (MountPlan)"));
    paths.push_back(path);
  }
  return paths;
}

Result<guestapi::CreateBundleRequest> BundleRequestFor(const ContainerKey& key,
                                                       const pluginapi::MountPlan& plan,
                                                       const std::string& config_json) {
  BBX_ASSIGN_OR_RETURN(std::string rootfs, GuestRootfsFor(plan));
  guestapi::CreateBundleRequest request;
  request.set_container_id(key.id);
  request.set_config_json(config_json);
  request.set_rootfs(rootfs);
  for (const auto& planned : plan.guest_mounts()) {
    auto* mount = request.add_mounts();
    mount->set_type(planned.type());
    mount->set_source(planned.source());
    mount->set_target(planned.target());
    for (const auto& option : planned.options()) mount->add_options(option);
  }
  return request;
}

guestapi::NetworkConfig GuestNetworkFor(const pluginapi::NetworkAttachment& attachment) {
  guestapi::NetworkConfig config;
  auto* interface = config.add_interfaces();
  interface->set_mac(attachment.mac());
  interface->set_name("eth0");
  interface->set_mtu(attachment.mtu());
  for (const auto& address : attachment.addresses()) {
    interface->add_addresses(address.address() + "/" + std::to_string(address.prefix_length()));
  }
  for (const auto& route : attachment.routes()) {
    auto* guest_route = config.add_routes();
    guest_route->set_destination(route.destination());
    guest_route->set_gateway(route.gateway());
    guest_route->set_device("eth0");
  }
  for (const auto& server : attachment.dns_servers()) config.add_dns_servers(server);
  for (const auto& domain : attachment.dns_search()) config.add_dns_search(domain);
  return config;
}

pluginapi::VmSpec VmSpecFor(const VmSettings& settings, const VmPlacement& placement,
                            const pluginapi::MountPlan& plan,
                            const pluginapi::NetworkAttachment* attachment) {
  pluginapi::VmSpec spec;
  spec.set_id(placement.key.id);
  spec.set_namespace_(placement.key.namespace_name);
  spec.set_kernel_path(settings.kernel_path);
  spec.set_initrd_path(settings.initrd_path);
  spec.set_kernel_cmdline(settings.kernel_cmdline);
  spec.set_vcpus(settings.vcpus);
  spec.set_max_vcpus(settings.max_vcpus);
  spec.set_memory_mib(settings.memory_mib);
  spec.set_max_memory_mib(settings.max_memory_mib);
  spec.set_owner_pid(placement.owner_pid);
  spec.set_run_dir(placement.run_dir);
  spec.set_console_log_path(placement.console_log_path);
  for (const auto& device : plan.devices()) *spec.add_devices() = device;
  if (attachment != nullptr) {
    auto* net = spec.add_devices()->mutable_net();
    net->set_id("eth0");
    net->set_tap_name(attachment->tap_name());
    net->set_mac(attachment->mac());
    net->set_mtu(attachment->mtu());
    net->set_netns_path(attachment->netns_path());
  }
  return spec;
}

bool EndsWithTypeName(const std::string& type_url, std::string_view name) {
  if (type_url == name) return true;
  return type_url.size() > name.size() && type_url.ends_with(name) &&
         type_url[type_url.size() - name.size() - 1] == '/';
}

}  // namespace beaconbox::shim
