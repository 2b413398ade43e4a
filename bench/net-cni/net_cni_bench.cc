// Network setup per container, CNI mode (net-cni: Debian's bridge + host-local +
// portmap + firewall, then beaconbox's tc-redirect-tap, each a process) next to
// bridge mode (net-bridge: LMDB lease + TAP + nftables, in process), N attaches each,
// p50/p99, in one run, in a private network namespace this program makes, with
// temporary state. Not a test: run by hand as root.
//   net_cni_bench [attaches=50] [output_dir=_output]
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "plugins/net-bridge/bridge_network.h"
#include "plugins/net-cni/cni_network.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(p / 100.0 * (values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

void Print(const char* what, const std::vector<double>& ms) {
  std::printf("%-44s n=%zu  p50=%7.2f ms  p99=%7.2f ms  max=%7.2f ms\n", what, ms.size(),
              Percentile(ms, 50), Percentile(ms, 99), *std::max_element(ms.begin(), ms.end()));
}

beaconbox::plugin::v1::NetworkAttachRequest Request(int i) {
  beaconbox::plugin::v1::NetworkAttachRequest request;
  request.set_namespace_("bench");
  request.set_container_id("c" + std::to_string(i));
  request.set_owner_pid(::getpid());
  return request;
}

}  // namespace

int main(int argc, char** argv) {
  const int count = argc > 1 ? std::max(1, std::atoi(argv[1])) : 50;
  const std::string output = fs::absolute(argc > 2 ? argv[2] : "_output").string();
  if (::unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET) (run as root)");
    return 1;
  }
  const fs::path dir = fs::temp_directory_path() / ("net-cni-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir / "conf");
  std::ofstream(dir / "conf" / "bench.conflist") << R"({"cniVersion": "1.0.0", "name": "bench",
    "plugins": [
      {"type": "bridge", "bridge": "bbxbench0", "isGateway": true, "ipMasq": false,
       "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.66.0.0/16"}]],
                "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ")"
                                                 << (dir / "ipam").string() << R"("}},
      {"type": "portmap", "capabilities": {"portMappings": true}},
      {"type": "firewall", "backend": "iptables"},
      {"type": "tc-redirect-tap"}]})";
  int status = 0;
  {
    beaconbox::cni::CniConfig cni_config;
    cni_config.conf_dir = (dir / "conf").string();
    cni_config.bin_dirs = {output + "/cni", "/usr/lib/cni"};
    cni_config.network_name = "bench";
    cni_config.cache_dir = (dir / "cni-cache").string();
    cni_config.netns_dir = (dir / "netns").string();
    beaconbox::cni::CniNetwork cni(cni_config, nullptr);
    beaconbox::net::BridgeConfig bridge_config;
    bridge_config.db_path = (dir / "network.db").string();
    bridge_config.reconcile_interval_seconds = 0;
    beaconbox::net::BridgeNetwork bridge(bridge_config, nullptr);

    std::vector<double> cni_attach, cni_detach, bridge_attach, bridge_detach;
    // Alternating, so that both see the same machine load; attach 0 of each (its
    // bridge, tables, first process starts) is left out.
    for (int i = 0; i <= count && status == 0; ++i) {
      auto start = Clock::now();
      auto a = cni.Attach(Request(i));
      if (i > 0) cni_attach.push_back(Ms(Clock::now() - start));
      start = Clock::now();
      auto b = bridge.Attach(Request(i));
      if (i > 0) bridge_attach.push_back(Ms(Clock::now() - start));
      if (!a.ok() || !b.ok()) {
        std::fprintf(stderr, "attach %d: %s\n", i,
                     (!a.ok() ? a.error().message : b.error().message).c_str());
        status = 1;
      }
    }
    for (int i = 0; i <= count; ++i) {
      auto start = Clock::now();
      auto a = cni.Detach("bench", "c" + std::to_string(i));
      if (i > 0) cni_detach.push_back(Ms(Clock::now() - start));
      start = Clock::now();
      auto b = bridge.Detach({"bench", "c" + std::to_string(i)});
      if (i > 0) bridge_detach.push_back(Ms(Clock::now() - start));
      if (!a.ok() || !b.ok()) {
        std::fprintf(stderr, "detach %d: %s\n", i,
                     (!a.ok() ? a.error().message : b.error().message).c_str());
        status = 1;
      }
    }
    if (status == 0) {
      Print("cni attach (4 plugins + tc-redirect-tap)", cni_attach);
      Print("bridge attach (lease + TAP + rules)", bridge_attach);
      Print("cni detach (DEL x4 + netns)", cni_detach);
      Print("bridge detach", bridge_detach);
    }
  }
  fs::remove_all(dir);
  return status;
}
