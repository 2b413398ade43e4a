// Runtime's cgroup figures: Task.Stats and Guest.WaitOom (runtime.h). The parsing
// is cgroup_stats.h's; this file only finds the container's cgroup and reads it.
#include <unistd.h>

#include <algorithm>

#include "common/base/file_util.h"
#include "guest/vminitd/cgroup_stats.h"
#include "guest/vminitd/log.h"
#include "guest/vminitd/runtime.h"

namespace beaconbox::guest {
namespace {

constexpr char kMetricsTypeUrl[] = "io.containerd.cgroups.v2.Metrics";
constexpr uint32_t kMaxOomWaitMs = 60 * 1000;
// How often a pending WaitOom reads memory.events (and notices a deleted container).
constexpr useconds_t kOomPollUs = 200 * 1000;

}  // namespace

std::string Runtime::CgroupDirOf(pid_t pid, const std::string& id) {
  auto proc_cgroup = ReadSmallFile("/proc/" + std::to_string(pid) + "/cgroup", 64 * 1024);
  if (!proc_cgroup.ok()) {
    Log("container " + id +
        ": no cgroup (Stats and OOM events unavailable): " + proc_cgroup.error().message);
    return "";
  }
  auto dir = CgroupDirFromProcCgroup(*proc_cgroup);
  if (!dir.ok()) {
    Log("container " + id +
        ": no cgroup (Stats and OOM events unavailable): " + dir.error().message);
    return "";
  }
  return std::move(dir).value();
}

Result<taskapi::StatsResponse> Runtime::Stats(const taskapi::StatsRequest& req) {
  std::string cgroup_dir;
  {
    std::lock_guard lock(mu_);
    BBX_ASSIGN_OR_RETURN(Container * container, FindContainer(req.id()));
    cgroup_dir = container->cgroup_dir;
  }
  if (cgroup_dir.empty()) {
    return MakeError(ErrorCode::kNotFound, "container " + req.id() +
                                               " has no cgroup in the guest (see the guest "
                                               "console log): no metrics");
  }
  if (::access(cgroup_dir.c_str(), F_OK) != 0) {
    return MakeError(ErrorCode::kNotFound, "cgroup of container " + req.id() + " does not exist");
  }
  cgroupsv2::Metrics metrics = MetricsFromCgroupFiles(ReadCgroupFiles(cgroup_dir));
  taskapi::StatsResponse resp;
  resp.mutable_stats()->set_type_url(kMetricsTypeUrl);
  resp.mutable_stats()->set_value(metrics.SerializeAsString());
  return resp;
}

Result<guestapi::WaitOomResponse> Runtime::WaitOom(const guestapi::WaitOomRequest& req) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(std::min(req.wait_ms(), kMaxOomWaitMs));
  guestapi::WaitOomResponse resp;
  while (true) {
    std::string cgroup_dir;
    {
      std::lock_guard lock(mu_);
      BBX_ASSIGN_OR_RETURN(Container * container, FindContainer(req.container_id()));
      cgroup_dir = container->cgroup_dir;
    }
    if (!cgroup_dir.empty()) {
      auto events = ReadSmallFile(cgroup_dir + "/memory.events", kMaxCgroupFileBytes);
      if (events.ok()) resp.set_oom_kills(OomKillCount(*events));
    }
    if (resp.oom_kills() > req.seen() || std::chrono::steady_clock::now() >= deadline) return resp;
    ::usleep(kOomPollUs);
  }
}

}  // namespace beaconbox::guest
