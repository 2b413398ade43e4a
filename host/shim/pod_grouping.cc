#include "host/shim/pod_grouping.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>

#include "common/base/bounded_json.h"
#include "common/base/file_util.h"
#include "common/base/unique_fd.h"
#include "host/shim/runtime_layout.h"

namespace beaconbox::shim {
namespace {

constexpr size_t kMaxSpecSize = 16 << 20;

// The first of `names` present in `annotations`: its name and value.
std::pair<std::string, std::string> FirstOf(const std::map<std::string, std::string>& annotations,
                                            std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (auto it = annotations.find(name); it != annotations.end()) return {name, it->second};
  }
  return {};
}

}  // namespace

Result<std::string> GroupingIdOf(std::string_view container_id,
                                 const std::map<std::string, std::string>& annotations) {
  const auto [type_key, type] = FirstOf(annotations, {kCriContainerType, kCrioContainerType});
  const auto [sandbox_key, sandbox] = FirstOf(annotations, {kCriSandboxId, kCrioSandboxId});
  if (type == "sandbox") return std::string(container_id);
  if (!type.empty() && type != "container") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "annotation " + type_key + "=" + type.substr(0, 64) +
                         " is neither \"sandbox\" nor \"container\": fix the container's "
                         "annotations");
  }
  if (sandbox.empty()) {
    if (type.empty()) return std::string(container_id);
    return MakeError(ErrorCode::kInvalidArgument,
                     "annotation " + type_key +
                         "=container names no pod: set io.kubernetes.cri.sandbox-id to the id "
                         "of the pod's sandbox container");
  }
  if (!IsContainerdIdentifier(sandbox)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "annotation " + sandbox_key + "=" + sandbox.substr(0, 80) +
                         " is not a container id: set it to the id of the pod's sandbox "
                         "container");
  }
  return sandbox;
}

Result<std::map<std::string, std::string>> ReadBundleAnnotations(const std::string& bundle) {
  const std::string path = bundle + "/config.json";
  BBX_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kMaxSpecSize));
  BBX_ASSIGN_OR_RETURN(nlohmann::json spec, ParseBoundedJson(text, path));
  std::map<std::string, std::string> annotations;
  if (!spec.is_object()) return annotations;
  auto it = spec.find("annotations");
  if (it == spec.end() || !it->is_object()) return annotations;
  for (const auto& [name, value] : it->items()) {
    if (value.is_string()) annotations[name] = value.get<std::string>();
  }
  return annotations;
}

bool ShimSocketAnswers(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return false;
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return false;
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, path.size());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return true;
  // A full backlog: someone listens.
  return errno == EAGAIN;
}

}  // namespace beaconbox::shim
