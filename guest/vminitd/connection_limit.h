// Bounds the agent's vsock connections. Any host process may connect to the guest's
// vsock port (the guest CID and port are predictable); calls without the agent token
// are refused (AgentSession), and the number of connections is bounded: past the
// limit, a new connection evicts the oldest one that has not authenticated within
// the grace period (the shim sends its first call at once), else the new one is
// closed. Authenticated connections are never evicted.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <list>
#include <memory>

namespace beaconbox::guest {

inline constexpr size_t kMaxVsockConnections = 4;
inline constexpr std::chrono::seconds kAuthenticationGrace{5};

// `Session` has bool authenticated() const and void End() (ends its Serve).
template <typename Session>
struct TrackedConnection {
  std::unique_ptr<Session> session;
  std::chrono::steady_clock::time_point accepted;
  std::atomic<bool> ended{false};  // set by its thread once Serve returned
};

// Makes room for one more connection in `connections` (forgetting ended ones, or
// evicting one as above); false when the new one must be closed.
template <typename Session>
bool MakeRoom(std::list<std::shared_ptr<TrackedConnection<Session>>>& connections,
              std::chrono::steady_clock::time_point now, size_t max = kMaxVsockConnections,
              std::chrono::steady_clock::duration grace = kAuthenticationGrace) {
  std::erase_if(connections, [](const auto& c) { return c->ended.load(); });
  if (connections.size() < max) return true;
  for (auto it = connections.begin(); it != connections.end(); ++it) {
    if (!(*it)->session->authenticated() && now - (*it)->accepted >= grace) {
      (*it)->session->End();  // its thread ends and drops it
      connections.erase(it);
      return true;
    }
  }
  return false;
}

}  // namespace beaconbox::guest
