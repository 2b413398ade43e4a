// vminitd's bound on vsock connections (guest/vminitd/connection_limit.h): any host
// process can connect to the agent's vsock port, so connections are bounded and
// unauthenticated ones past their grace period make room; the shim's authenticated
// connection is never evicted.
#include "guest/vminitd/connection_limit.h"

#include <gtest/gtest.h>

namespace beaconbox::guest {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct FakeSession {  // FAKE AgentSession
  bool authenticated_flag = false;
  bool ended = false;
  bool authenticated() const { return authenticated_flag; }
  void End() { ended = true; }
};

using Connections = std::list<std::shared_ptr<TrackedConnection<FakeSession>>>;

std::shared_ptr<TrackedConnection<FakeSession>> Add(Connections& connections, Clock::time_point at,
                                                    bool authenticated) {
  auto connection = std::make_shared<TrackedConnection<FakeSession>>();
  connection->session = std::make_unique<FakeSession>();
  connection->session->authenticated_flag = authenticated;
  connection->accepted = at;
  connections.push_back(connection);
  return connection;
}

TEST(VsockConnectionLimit, StrangersPastTheirGraceMakeRoomTheShimNever) {
  const Clock::time_point start = Clock::now();
  Connections connections;
  auto shim = Add(connections, start, /*authenticated=*/true);
  std::vector<std::shared_ptr<TrackedConnection<FakeSession>>> strangers;
  for (size_t i = 1; i < kMaxVsockConnections; ++i) {
    ASSERT_TRUE(MakeRoom(connections, start));
    strangers.push_back(Add(connections, start, false));
  }
  // Full, and every stranger is within its grace: the newcomer is refused.
  EXPECT_FALSE(MakeRoom(connections, start + 1s));
  EXPECT_EQ(connections.size(), kMaxVsockConnections);

  // Past the grace: the oldest stranger is ended to make room, never the shim.
  EXPECT_TRUE(MakeRoom(connections, start + kAuthenticationGrace));
  EXPECT_TRUE(strangers[0]->session->ended);
  EXPECT_FALSE(shim->session->ended);
  EXPECT_EQ(connections.size(), kMaxVsockConnections - 1);

  // A connection whose thread ended frees its slot.
  Add(connections, start + kAuthenticationGrace, false);
  strangers[1]->ended = true;
  EXPECT_TRUE(MakeRoom(connections, start + kAuthenticationGrace));
  EXPECT_EQ(connections.size(), kMaxVsockConnections - 1);
}

TEST(VsockConnectionLimit, AllAuthenticatedMeansNewOnesAreClosed) {
  const Clock::time_point start = Clock::now();
  Connections connections;
  for (size_t i = 0; i < kMaxVsockConnections; ++i) Add(connections, start, true);
  EXPECT_FALSE(MakeRoom(connections, start + 1h));
  for (const auto& connection : connections) EXPECT_FALSE(connection->session->ended);
}

}  // namespace
}  // namespace beaconbox::guest
