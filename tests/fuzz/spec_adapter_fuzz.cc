// Fuzz target: the OCI spec adapter and the translations around it
// (host/shim/spec_adapter.cc, translate.cc). The bytes are a bundle's config.json
// (or an exec's process JSON), preceded by one byte of options (bit 0: share the
// VM's DNS; bit 1: the storage plugin's guest_rootfs is the text up to the first
// newline after that byte, else "rootfs"). Besides not crashing, an adapted spec
// must be a JSON object whose root.path is the guest rootfs, without hooks and
// without a network namespace, and the bundle request must carry it unchanged. Each
// volume (bind mount) goes to the storage request, and with the plugin's guest paths
// every bind mount's source becomes one of them.
//
// Not here: JSON nested deeply enough to exhaust the stack (issue 10, the
// `netharden` work bounds nesting in the shim's parsers); inputs are at most
// libFuzzer's -max_len (make fuzz: 8192 bytes), far below that.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "host/shim/spec_adapter.h"
#include "host/shim/translate.h"

namespace {

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz: %s: %s\n", what, detail.c_str());
  std::abort();
}

void CheckAdapted(const beaconbox::shim::AdaptedSpec& adapted, const std::string& rootfs) {
  using nlohmann::json;
  json spec = json::parse(adapted.config_json, nullptr, /*allow_exceptions=*/false);
  if (!spec.is_object()) Fail("adapted spec is not a JSON object", adapted.config_json);
  if (spec["root"]["path"] != rootfs) Fail("adapted root.path is not the guest rootfs", rootfs);
  if (spec.contains("hooks")) Fail("adapted spec kept hooks", adapted.config_json);
  const json& linux_part = spec.value("linux", json::object());
  if (linux_part.is_object() && linux_part.contains("namespaces") &&
      linux_part["namespaces"].is_array()) {
    for (const auto& ns : linux_part["namespaces"]) {
      if (ns.is_object() && ns.value("type", json()) == "network") {
        Fail("adapted spec kept the network namespace", adapted.config_json);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace beaconbox;
  using namespace beaconbox::shim;
  if (size == 0) return 0;
  const bool share_vm_dns = data[0] & 1;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  pluginapi::MountPlan plan;
  if (data[0] & 2) {
    size_t newline = rest.find('\n');
    plan.set_guest_rootfs(std::string(rest.substr(0, newline)));
    rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
  }
  auto mount = plan.add_guest_mounts();
  mount->set_type("virtiofs");
  mount->set_source("rootfs");

  (void)AdaptProcessForGuest(rest);
  auto rootfs = GuestRootfsFor(plan);
  if (!rootfs.ok()) return 0;
  auto adapted = AdaptSpecForGuest(rest, share_vm_dns, *rootfs);
  if (!adapted.ok()) return 0;
  CheckAdapted(*adapted, *rootfs);

  ContainerKey key{"default", "c1"};
  ContainerdMounts no_mounts;
  auto storage = StorageRequestFor(key, "/run/containerd/bundle/c1", no_mounts, *adapted);
  if (storage.rootfs_read_only() != adapted->root_read_only) {
    Fail("storage request lost root.readonly", adapted->config_json);
  }
  if (static_cast<size_t>(storage.volumes_size()) != adapted->volumes.size()) {
    Fail("storage request lost volumes", adapted->config_json);
  }
  std::vector<std::string> guest_volumes;
  for (size_t i = 0; i < adapted->volumes.size(); ++i) {
    plan.add_guest_volume_paths("volumes/" + std::to_string(i));
    guest_volumes.push_back("volumes/" + std::to_string(i));
  }
  if (!GuestVolumePathsFor(plan, adapted->volumes.size()).ok()) {
    Fail("guest volume paths refused", adapted->config_json);
  }
  auto placed = AdaptSpecForGuest(rest, share_vm_dns, *rootfs, &guest_volumes);
  if (!placed.ok()) Fail("volumes not placed in the guest", placed.error().message);
  CheckAdapted(*placed, *rootfs);
  if (placed->volumes.size() != adapted->volumes.size()) {
    Fail("a second adaptation found other volumes", adapted->config_json);
  }

  auto bundle = BundleRequestFor(key, plan, adapted->config_json);
  if (bundle.ok() && bundle->config_json() != adapted->config_json) {
    Fail("bundle request changed the spec", adapted->config_json);
  }
  return 0;
}
