// net-bridge benchmark (not a test; run by hand, see README.md next to it).
//
// In a private network namespace it creates itself, with a temporary state dir:
//  1. network setup time per container: BridgeNetwork::Attach (lease + TAP +
//     bridge attach + nftables check), N times; p50/p99 (the seed claims 10-15 ms),
//     IPv4 only and dual stack (issue 18) interleaved in the same run;
//  2. time to allocate every address of 10.88.0.0/16 (65,533) with 8 processes
//     allocating concurrently from one LMDB file; checks there is no duplicate.
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "plugins/net-bridge/bridge_network.h"
#include "plugins/net-bridge/lease_store.h"

namespace {

using beaconbox::net::BridgeConfig;
using beaconbox::net::BridgeNetwork;
using beaconbox::net::LeaseStore;
using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(p / 100.0 * (values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

void PrintStats(const char* what, const std::vector<double>& ms) {
  double sum = 0;
  for (double v : ms) sum += v;
  std::printf("%-34s n=%zu  p50=%.2f ms  p99=%.2f ms  mean=%.2f ms  max=%.2f ms\n", what, ms.size(),
              Percentile(ms, 50), Percentile(ms, 99), sum / ms.size(),
              *std::max_element(ms.begin(), ms.end()));
}

// Two networks in the one netns, IPv4 only (beacon0, 10.88.0.0/16) and dual stack
// (beacon1, 10.89.0.0/16 + the default IPv6 prefix), attached to in turn (one each per
// step), so that drift of the machine's load hits both alike.
int SetupTime(const std::string& state_dir, int count) {
  BridgeConfig v4_only;
  v4_only.ipv6 = false;
  v4_only.db_path = state_dir + "/setup-v4/network.db";
  v4_only.reconcile_interval_seconds = 0;
  BridgeConfig dual;
  dual.bridge = "beacon1";
  dual.subnet = *beaconbox::net::ParseSubnet("10.89.0.0/16");
  dual.gateway = dual.subnet.network + 1;
  dual.db_path = state_dir + "/setup-dual/network.db";
  dual.reconcile_interval_seconds = 0;
  const BridgeConfig* configs[2] = {&v4_only, &dual};
  const char* names[2] = {"IPv4 only", "dual stack"};
  std::unique_ptr<BridgeNetwork> networks[2];
  std::vector<double> attach_ms[2], detach_ms[2];
  double first_ms[2] = {};
  for (int m = 0; m < 2; ++m) networks[m] = std::make_unique<BridgeNetwork>(*configs[m], nullptr);
  for (int i = -1; i < count; ++i) {  // i = -1: the first attach (bridge, tables, reconcile)
    for (int m = 0; m < 2; ++m) {
      beaconbox::plugin::v1::NetworkAttachRequest request;
      request.set_container_id("bench-" + std::to_string(i + 1));
      request.set_namespace_("default");
      auto start = Clock::now();
      auto attachment = networks[m]->Attach(request);
      double elapsed = Ms(Clock::now() - start);
      if (!attachment.ok()) {
        std::fprintf(stderr, "attach (%s) failed: %s\n", names[m],
                     attachment.error().message.c_str());
        return 1;
      }
      if (i < 0) {
        first_ms[m] = elapsed;
      } else {
        attach_ms[m].push_back(elapsed);
      }
    }
  }
  for (int i = 0; i <= count; ++i) {
    for (int m = 0; m < 2; ++m) {
      auto start = Clock::now();
      auto status = networks[m]->Detach({"default", "bench-" + std::to_string(i)});
      detach_ms[m].push_back(Ms(Clock::now() - start));
      if (!status.ok()) {
        std::fprintf(stderr, "detach (%s) failed: %s\n", names[m], status.error().message.c_str());
        return 1;
      }
    }
  }
  for (int m = 0; m < 2; ++m) {
    std::printf("%s: first attach (bridge + nft tables + reconcile): %.2f ms\n", names[m],
                first_ms[m]);
    PrintStats((std::string(names[m]) + " attach").c_str(), attach_ms[m]);
    PrintStats((std::string(names[m]) + " detach").c_str(), detach_ms[m]);
  }
  return 0;
}

int AllocateAll(const std::string& state_dir, int processes) {
  BridgeConfig config;  // 10.88.0.0/16
  std::string path = state_dir + "/alloc/network.db";
  {
    auto store = LeaseStore::Open(path, config.subnet, config.gateway);
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", store.error().message.c_str());
      return 1;
    }
  }
  int go[2];
  if (::pipe(go) != 0) return 1;
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(go[1]);
      auto store = LeaseStore::Open(path, config.subnet, config.gateway);
      if (!store.ok()) ::_exit(2);
      char byte;
      (void)!::read(go[0], &byte, 1);  // returns at EOF: everyone starts together
      std::vector<uint32_t> mine;
      auto owner = beaconbox::net::CurrentOwner(::getpid());
      for (int i = 0;; ++i) {
        auto acquired =
            (*store)->Acquire({"", "p" + std::to_string(p) + "-" + std::to_string(i)}, owner);
        if (!acquired.ok()) {
          if (acquired.error().code == beaconbox::ErrorCode::kExhausted) break;
          std::fprintf(stderr, "child %d: %s\n", p, acquired.error().message.c_str());
          ::_exit(3);
        }
        mine.push_back(acquired->lease.address);
      }
      std::ofstream out(state_dir + "/alloc/child-" + std::to_string(p), std::ios::binary);
      out.write(reinterpret_cast<const char*>(mine.data()), mine.size() * sizeof(uint32_t));
      ::_exit(out ? 0 : 4);
    }
    children.push_back(pid);
  }
  ::close(go[0]);
  ::usleep(200000);  // let every child open the environment
  auto start = Clock::now();
  ::close(go[1]);
  bool ok = true;
  for (pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  double elapsed = Ms(Clock::now() - start);
  std::set<uint32_t> unique;
  size_t total = 0;
  std::vector<size_t> per_process;
  for (int p = 0; p < processes; ++p) {
    std::ifstream in(state_dir + "/alloc/child-" + std::to_string(p), std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
    per_process.push_back(bytes.size() / sizeof(uint32_t));
    for (size_t i = 0; i + sizeof(uint32_t) <= bytes.size(); i += sizeof(uint32_t)) {
      uint32_t address;
      std::memcpy(&address, bytes.data() + i, sizeof(address));
      unique.insert(address);
      ++total;
    }
  }
  std::printf(
      "allocate all of %s with %d processes: %.0f ms (%.1f us/allocation), %zu "
      "allocations, %zu distinct, %zu duplicates, children %s\n",
      config.subnet.ToString().c_str(), processes, elapsed, elapsed * 1000 / total, total,
      unique.size(), total - unique.size(), ok ? "ok" : "FAILED");
  std::printf("  per process:");
  for (size_t n : per_process) std::printf(" %zu", n);
  std::printf("\n");
  return ok && total == unique.size() && unique.size() == config.PoolSize() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int attaches = argc > 1 ? std::atoi(argv[1]) : 200;
  int processes = argc > 2 ? std::atoi(argv[2]) : 8;
  // Everything below happens in a network namespace of our own.
  if (::unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET) (run as root)");
    return 1;
  }
  std::string state_dir = std::filesystem::temp_directory_path() / "bbx-net-bench-XXXXXX";
  if (::mkdtemp(state_dir.data()) == nullptr) return 1;
  std::printf("net-bridge bench: state in %s, private netns\n", state_dir.c_str());
  int rc = SetupTime(state_dir, attaches);
  if (rc == 0) rc = AllocateAll(state_dir, processes);
  std::error_code ec;
  std::filesystem::remove_all(state_dir, ec);
  return rc;
}
