#include "host/shim/shim_options.h"

#include <google/protobuf/any.pb.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/base/file_util.h"
#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"
#include "host/shim/translate.h"

namespace beaconbox::shim {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxOptionsSize = 1 << 20;
constexpr int kOomScoreAdjMax = 1000;
constexpr int kOomScoreAdjMin = -1000;

// One write(2) of `text` to an existing kernel file (cgroup.procs, oom_score_adj).
Status WriteKernelFile(const std::string& path, const std::string& text, const std::string& what) {
  std::ofstream out(path);
  if (!out) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "cannot open " + path + " for " + what + ": " + std::strerror(errno));
  }
  out << text;
  out.flush();
  if (!out) {
    return MakeError(ErrorCode::kInvalidArgument, "writing " + text + " to " + path + " for " +
                                                      what + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

bool FileExists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// containerd's pkg/runtimeoptions/v1 message: type_url = 1, config_path = 2 (strings).
constexpr char kRuntimeOptionsType[] = "runtimeoptions.v1.Options";
constexpr uint32_t kConfigPathField = 2;

Result<ShimStartOptions> ParseRuntimeOptions(const std::string& value) {
  ShimStartOptions options;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(value.data()),
                                            static_cast<int>(value.size()));
  bool parsed = true;
  while (uint32_t tag = in.ReadTag()) {
    const uint32_t field = google::protobuf::internal::WireFormatLite::GetTagFieldNumber(tag);
    const auto wire = google::protobuf::internal::WireFormatLite::GetTagWireType(tag);
    if (field == kConfigPathField &&
        wire == google::protobuf::internal::WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      parsed = google::protobuf::internal::WireFormatLite::ReadString(&in, &options.config_path);
    } else {
      parsed = google::protobuf::internal::WireFormatLite::SkipField(&in, tag);
    }
    if (!parsed) break;
  }
  if (!parsed || in.CurrentPosition() != static_cast<int>(value.size())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "runtime options of type runtimeoptions.v1.Options do not parse: fix the "
                     "runtime's options in containerd's config");
  }
  const std::string& path = options.config_path;
  if (!path.empty() &&
      (path.front() != '/' || path.size() > 4096 || path.find('\0') != std::string::npos)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "runtime option ConfigPath '" + PrintableOneLine(path.substr(0, 256)) +
                         "' is not an absolute path: name the beaconbox config file, e.g. "
                         "/etc/beaconbox/config.toml");
  }
  return options;
}

}  // namespace

Result<ShimStartOptions> ParseShimStartOptions(std::string_view any_bytes) {
  ShimStartOptions options;
  if (any_bytes.empty()) return options;
  if (any_bytes.size() > kMaxOptionsSize) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "runtime options on stdin larger than 1 MiB: containerd sends a few bytes");
  }
  google::protobuf::Any any;
  if (!any.ParseFromArray(any_bytes.data(), static_cast<int>(any_bytes.size()))) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "runtime options on stdin are not a protobuf Any: start the shim through "
                     "containerd");
  }
  const std::string& type = any.type_url();
  if (EndsWithTypeName(type, kRuntimeOptionsType)) return ParseRuntimeOptions(any.value());
  const std::string runc_type = containerd::runc::v1::Options().GetTypeName();
  if (type.size() < runc_type.size() ||
      type.compare(type.size() - runc_type.size(), runc_type.size(), runc_type) != 0) {
    return options;
  }
  containerd::runc::v1::Options runc;
  if (!runc.ParseFromString(any.value())) {
    return MakeError(ErrorCode::kInvalidArgument, "runtime options of type " + runc_type +
                                                      " do not parse: fix the runtime's "
                                                      "options in containerd's config");
  }
  options.shim_cgroup = runc.shim_cgroup();
  return options;
}

Status JoinShimCgroup(pid_t pid, const std::string& cgroup, const std::string& cgroup_root) {
  if (cgroup.empty() || cgroup.front() != '/' || cgroup.size() > 4096 ||
      cgroup.find("/..") != std::string::npos || cgroup.find('\0') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "shim cgroup '" + cgroup.substr(0, 256) +
                         "' is not an absolute cgroup path without '..': fix ShimCgroup in the "
                         "runtime's options");
  }
  // cgroup v2 (unified): one group.
  std::vector<std::string> dirs;
  if (FileExists(cgroup_root + "/cgroup.controllers")) {
    dirs.push_back(cgroup_root + cgroup);
  } else {
    // cgroup v1 or hybrid, as runc's shim: the group in every v1 hierarchy mounted
    // below the root (symlinked aliases like cpu,cpuacct once; not the hybrid's
    // unified mount).
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(cgroup_root, error)) {
      if (entry.is_symlink(error) || !entry.is_directory(error)) continue;
      if (entry.path().filename() == "unified") continue;
      if (!FileExists(entry.path().string() + "/cgroup.procs")) continue;
      dirs.push_back(entry.path().string() + cgroup);
    }
    if (dirs.empty()) {
      return MakeError(ErrorCode::kNotFound, "shim cgroup " + cgroup +
                                                 ": no cgroup hierarchy below " + cgroup_root +
                                                 ": mount cgroup2 or cgroup v1 there");
    }
  }
  for (const auto& dir : dirs) {
    if (!FileExists(dir + "/cgroup.procs")) {
      return MakeError(ErrorCode::kNotFound, "shim cgroup " + cgroup + " does not exist (" + dir +
                                                 "): create it or fix ShimCgroup in the "
                                                 "runtime's options");
    }
  }
  for (const auto& dir : dirs) {
    BBX_RETURN_IF_ERROR(
        WriteKernelFile(dir + "/cgroup.procs", std::to_string(pid), "shim cgroup " + cgroup));
  }
  return Status::Ok();
}

Status AdjustShimOomScore(pid_t pid, pid_t parent, const std::string& proc_root) {
  const std::string parent_path = proc_root + "/" + std::to_string(parent) + "/oom_score_adj";
  BBX_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(parent_path, 64));
  char* end = nullptr;
  errno = 0;
  const long score = std::strtol(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || score < kOomScoreAdjMin || score > kOomScoreAdjMax) {
    return MakeError(ErrorCode::kInternal, parent_path + " holds '" + text.substr(0, 32) +
                                               "', not an OOM score adjustment");
  }
  const long shim_score = std::min<long>(score + 1, kOomScoreAdjMax);
  return WriteKernelFile(proc_root + "/" + std::to_string(pid) + "/oom_score_adj",
                         std::to_string(shim_score), "the shim's OOM score");
}

}  // namespace beaconbox::shim
