// Which shim serves a container. containerd runs the `start` action for every
// container; as runc's shim does (runtime/v2/runc/manager: the `io.kubernetes.cri.sandbox-id`
// grouping), the containers of one CRI pod share one shim -- and so one VM: the
// sandbox ("pause") container's shim boots the VM, each app container's `start` finds
// that shim's socket answering and hands containerd its address instead of starting
// a second shim.
//
// The grouping id of a container, from its bundle's config.json annotations:
//   container type "sandbox"                  its own id (it starts the pod's shim)
//   container type "container", sandbox S     S
//   no container type, sandbox S              S (runc's shim groups by S alone too)
//   neither                                   its own id (one shim, one VM each)
// with containerd's CRI names (io.kubernetes.cri.container-type, .sandbox-id) or
// CRI-O's (io.kubernetes.cri-o.ContainerType, .SandboxID). The shim's socket is
// derived from (containerd address, namespace, grouping id) (RuntimeLayout).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace beaconbox::shim {

inline constexpr char kCriContainerType[] = "io.kubernetes.cri.container-type";
inline constexpr char kCriSandboxId[] = "io.kubernetes.cri.sandbox-id";
inline constexpr char kCrioContainerType[] = "io.kubernetes.cri-o.ContainerType";
inline constexpr char kCrioSandboxId[] = "io.kubernetes.cri-o.SandboxID";

// The grouping id of container `container_id` from its OCI annotations (see above).
// Errors (one line, naming the annotation): a container type other than "sandbox"
// or "container", an app container naming no sandbox, a sandbox id that is not a
// containerd identifier.
Result<std::string> GroupingIdOf(std::string_view container_id,
                                 const std::map<std::string, std::string>& annotations);

// The string annotations of `bundle`/config.json (bounded parse; a missing
// "annotations" is an empty map). Errors name the file.
Result<std::map<std::string, std::string>> ReadBundleAnnotations(const std::string& bundle);

// True when something accepts connections on the unix socket `path` now (a serving
// shim); false when nothing listens (no file, or a dead shim's leftover). Never blocks.
bool ShimSocketAnswers(const std::string& path);

}  // namespace beaconbox::shim
