// Round-trip latency of an empty unary ttrpc call over a unix socketpair, next to
// the floor for the same transport: a raw 10-byte write/read ping-pong.
// Also runs the Go baseline (Debian's Go ttrpc, Go client to Go server) when the
// interop peer was built.
//   ttrpc_bench [CALLS]
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "common/ttrpc/ttrpc.h"

using namespace beaconbox;
using Clock = std::chrono::steady_clock;

static void Report(const char* label, std::vector<double>& micros) {
  std::sort(micros.begin(), micros.end());
  auto at = [&](double q) { return micros[static_cast<size_t>(q * (micros.size() - 1))]; };
  std::printf("%-34s n=%zu  p50 %7.1f us  p99 %7.1f us\n", label, micros.size(), at(0.5), at(0.99));
}

int main(int argc, char** argv) {
  const int calls = argc > 1 ? std::atoi(argv[1]) : 20000;
  int fds[2];

  // Baseline: raw ping-pong of a ttrpc-header-sized message.
  socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
  std::thread echo([fd = fds[1], calls] {
    char buffer[10];
    for (int i = 0; i < calls; ++i) {
      if (read(fd, buffer, sizeof(buffer)) != sizeof(buffer)) return;
      if (write(fd, buffer, sizeof(buffer)) != sizeof(buffer)) return;
    }
  });
  std::vector<double> raw;
  char message[10] = {};
  for (int i = 0; i < calls; ++i) {
    auto start = Clock::now();
    if (write(fds[0], message, sizeof(message)) != sizeof(message)) return 1;
    if (read(fds[0], message, sizeof(message)) != sizeof(message)) return 1;
    raw.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  echo.join();
  close(fds[0]);
  close(fds[1]);

  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
  ttrpc::Server server;
  server.RegisterUnary(
      "bench.Echo", "Empty",
      [](ttrpc::ServerContext&, std::string_view, std::string*) { return ttrpc::RpcStatus{}; });
  std::thread serving([&] { server.ServeConnection(UniqueFd(fds[1])); });
  ttrpc::Client client{UniqueFd(fds[0])};
  std::vector<double> unary;
  std::string response;
  for (int i = 0; i < calls; ++i) {
    auto start = Clock::now();
    if (!client.Call("bench.Echo", "Empty", "", &response).ok()) return 1;
    unary.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  client.Close();
  serving.join();

  Report("raw socketpair ping-pong (floor)", raw);
  Report("ttrpc empty unary call (C++/C++)", unary);
#ifdef TTRPC_PEER
  // Baseline: Debian's Go ttrpc, Go client to Go server, same transport and count.
  std::fflush(stdout);
  std::string command = std::string(TTRPC_PEER) + " bench " + std::to_string(calls);
  if (std::system(command.c_str()) != 0) {
    std::printf("go ttrpc baseline: %s failed\n", TTRPC_PEER);
  }
#else
  std::printf("go ttrpc baseline: not built (no go at configure time)\n");
#endif
  return 0;
}
