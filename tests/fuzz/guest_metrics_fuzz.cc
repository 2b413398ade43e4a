// Fuzz target: the bytes are the guest's Task.Stats answer as the shim checks it
// (host/shim/task_metrics.h). Byte 0 picks the type URL (even: the cgroup v2 one,
// odd: the rest of a NUL-terminated prefix); the rest is the Any's value.
// MetricsFromGuest must answer every input with metrics or one line, and what it
// passes must parse again as the v2 Metrics with its bounds kept and no unknown field
// but the VM cost.
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "github.com/containerd/cgroups/v2/stats/metrics.pb.h"
#include "host/shim/task_metrics.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace beaconbox::shim;
  if (size == 0) return 0;
  std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  google::protobuf::Any any;
  if (data[0] % 2 == 0) {
    any.set_type_url(kCgroupV2MetricsTypeUrl);
    any.set_value(rest);
  } else {
    size_t nul = rest.find('\0');
    any.set_type_url(rest.substr(0, nul));
    any.set_value(nul == std::string::npos ? "" : rest.substr(nul + 1));
  }
  VmCost cost;
  cost.vmm_pid = 1;
  cost.rss_bytes = size;
  auto result = MetricsFromGuest(any, data[0] & 2 ? std::optional<VmCost>(cost) : std::nullopt);
  if (!result.ok()) {
    if (result.error().message.empty() || result.error().message.find('\n') != std::string::npos) {
      std::fprintf(stderr, "fuzz: refusal without one line: '%s'\n",
                   result.error().message.c_str());
      std::abort();
    }
    return 0;
  }
  ::io::containerd::cgroups::v2::Metrics metrics;
  if (result->type_url() != kCgroupV2MetricsTypeUrl || !metrics.ParseFromString(result->value())) {
    std::fprintf(stderr, "fuzz: accepted metrics do not parse again\n");
    std::abort();
  }
  // Top-level unknown fields, counted on the wire (the lite runtime has no
  // UnknownFieldSet): every field number v2 Metrics does not have (1, 2, 4-8).
  int unknown = 0;
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(result->value().data()),
      static_cast<int>(result->value().size()));
  while (uint32_t tag = in.ReadTag()) {
    const uint32_t number = tag >> 3;
    if (number == 3 || number > 8) ++unknown;
    if (!google::protobuf::internal::WireFormatLite::SkipField(&in, tag)) break;
  }
  if (metrics.io().usage_size() > kMaxIoEntries || metrics.pids().current() > kMaxGuestPids ||
      metrics.has_rdma() || metrics.hugetlb_size() != 0 || unknown > (data[0] & 2 ? 1 : 0)) {
    std::fprintf(stderr, "fuzz: accepted metrics break a bound\n");
    std::abort();
  }
  return 0;
}
