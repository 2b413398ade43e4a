#include "common/ttrpc/ttrpc.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <future>
#include <thread>

namespace beaconbox::ttrpc {
namespace {

using namespace std::chrono_literals;

std::pair<UniqueFd, UniqueFd> SocketPair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// A server on one end of a socketpair, a client on the other.
class TtrpcTest : public ::testing::Test {
 protected:
  void Start(Options options = {}) {
    auto [client_fd, server_fd] = SocketPair();
    server_ = std::make_unique<Server>(options);
    Register();
    serving_ = std::thread([this, fd = std::move(server_fd)]() mutable {
      server_->ServeConnection(std::move(fd));
    });
    client_ = std::make_unique<Client>(std::move(client_fd), options);
  }
  void Register() {
    server_->RegisterUnary("test.Echo", "Echo",
                           [](ServerContext& context, std::string_view request, std::string* out) {
                             *out = std::string(request) + context.MetadataValue("suffix");
                             return RpcStatus{};
                           });
    server_->RegisterUnary("test.Echo", "Fail", [](ServerContext&, std::string_view, std::string*) {
      return RpcStatus{Code::kNotFound, "no such thing"};
    });
    server_->RegisterUnary("test.Echo", "Throw",
                           [](ServerContext&, std::string_view, std::string*) -> RpcStatus {
                             throw std::runtime_error("boom");
                           });
    server_->RegisterUnary("test.Echo", "Sleep",
                           [](ServerContext& context, std::string_view, std::string*) {
                             std::this_thread::sleep_for(300ms);
                             bool has_deadline =
                                 context.deadline() != std::chrono::steady_clock::time_point::max();
                             return has_deadline ? RpcStatus{} : RpcStatus{Code::kInternal, "no deadline"};
                           });
    server_->RegisterStream("test.Echo", "Count", [](ServerContext&, ServerStream& stream) {
      std::string request;
      if (!stream.Recv(&request)) return RpcStatus{Code::kInvalidArgument, "no request"};
      for (int i = 0; i < std::stoi(request); ++i) {
        if (!stream.Send(std::to_string(i))) break;
      }
      return RpcStatus{};
    });
    server_->RegisterStream("test.Echo", "Sum", [](ServerContext&, ServerStream& stream) {
      std::string message;
      int sum = 0;
      while (stream.Recv(&message)) sum += std::stoi(message);
      stream.SetFinalResponse(std::to_string(sum));
      return RpcStatus{};
    });
  }
  void TearDown() override {
    if (client_) client_->Close();
    client_.reset();
    if (serving_.joinable()) serving_.join();
  }

  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
  std::thread serving_;
};

TEST_F(TtrpcTest, UnaryCallWithMetadata) {
  Start();
  CallOptions options;
  options.metadata.emplace_back("suffix", "!");
  std::string response;
  RpcStatus status = client_->Call("test.Echo", "Echo", "hello", &response, options);
  ASSERT_TRUE(status.ok()) << status.message;
  EXPECT_EQ(response, "hello!");
}

TEST_F(TtrpcTest, StatusCodesAndUnknownMethods) {
  Start();
  std::string response;
  RpcStatus status = client_->Call("test.Echo", "Fail", "", &response);
  EXPECT_EQ(status.code, Code::kNotFound);
  EXPECT_EQ(status.message, "no such thing");
  EXPECT_EQ(client_->Call("test.Echo", "Nope", "", &response).code, Code::kUnimplemented);
  EXPECT_EQ(client_->Call("test.Echo", "Throw", "", &response).code, Code::kInternal);
  // The connection survives all of them.
  EXPECT_TRUE(client_->Call("test.Echo", "Echo", "x", &response).ok());
}

TEST_F(TtrpcTest, DeadlineReachesServerAndClientGivesUp) {
  Start();
  CallOptions options;
  options.timeout = 50ms;
  std::string response;
  EXPECT_EQ(client_->Call("test.Echo", "Sleep", "", &response, options).code,
            Code::kDeadlineExceeded);
  options.timeout = 5s;
  RpcStatus status = client_->Call("test.Echo", "Sleep", "", &response, options);
  EXPECT_TRUE(status.ok()) << status.message;
}

TEST_F(TtrpcTest, ManyConcurrentCallsOnOneConnection) {
  Start();
  std::vector<std::future<bool>> calls;
  for (int i = 0; i < 50; ++i) {
    calls.push_back(std::async(std::launch::async, [this, i] {
      std::string response;
      return client_->Call("test.Echo", "Echo", std::to_string(i), &response).ok() &&
             response == std::to_string(i);
    }));
  }
  for (auto& call : calls) EXPECT_TRUE(call.get());
}

TEST_F(TtrpcTest, ServerStreaming) {
  Start();
  auto stream = client_->OpenStream("test.Echo", "Count", "5", /*client_streaming=*/false);
  ASSERT_TRUE(stream.ok());
  std::string message, all;
  while ((*stream)->Recv(&message)) all += message;
  EXPECT_EQ(all, "01234");
  EXPECT_TRUE((*stream)->Finish().ok());
}

TEST_F(TtrpcTest, ClientStreamingWithFinalResponse) {
  Start();
  auto stream = client_->OpenStream("test.Echo", "Sum", "", /*client_streaming=*/true);
  ASSERT_TRUE(stream.ok());
  for (int i = 1; i <= 4; ++i) EXPECT_TRUE((*stream)->Send(std::to_string(i)));
  ASSERT_TRUE((*stream)->CloseSend().ok());
  std::string message;
  ASSERT_TRUE((*stream)->Recv(&message));
  EXPECT_EQ(message, "10");
  EXPECT_FALSE((*stream)->Recv(&message));
  EXPECT_TRUE((*stream)->Finish().ok());
}

TEST_F(TtrpcTest, OversizeRequestRefusedAndConnectionSurvives) {
  Options options;
  options.max_message_size = 1024;
  Start(options);
  std::string response;
  EXPECT_EQ(client_->Call("test.Echo", "Echo", std::string(4096, 'x'), &response).code,
            Code::kResourceExhausted);
  EXPECT_TRUE(client_->Call("test.Echo", "Echo", "small", &response).ok());
}

TEST(TtrpcHostile, HugeLengthIsNotAllocatedAndGarbageClosesConnection) {
  auto [peer, server_fd] = SocketPair();
  Server server;
  std::atomic<bool> done = false;
  std::thread serving([&, fd = std::move(server_fd)]() mutable {
    server.ServeConnection(std::move(fd));
    done = true;
  });
  // A request header claiming 4 GiB: refused at once (an oversize reply), nothing
  // allocated; the peer then closes.
  const unsigned char header[10] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0};
  ASSERT_EQ(::write(peer.get(), header, sizeof(header)), 10);
  peer.Reset();
  serving.join();
  EXPECT_TRUE(done);

  auto [peer2, server_fd2] = SocketPair();
  std::thread serving2([&, fd = std::move(server_fd2)]() mutable {
    server.ServeConnection(std::move(fd));
  });
  // A well-sized frame whose body is not a Request: the server hangs up.
  const unsigned char garbage[14] = {0, 0, 0, 4, 0, 0, 0, 1, 1, 0, 0xff, 0xff, 0xff, 0xff};
  ASSERT_EQ(::write(peer2.get(), garbage, sizeof(garbage)), 14);
  char byte;
  EXPECT_EQ(::read(peer2.get(), &byte, 1), 0);  // EOF: the server closed
  serving2.join();
}

TEST(TtrpcClient, CloseFailsPendingCalls) {
  auto [client_fd, silent_peer] = SocketPair();
  Client client(std::move(client_fd));
  auto pending = std::async(std::launch::async, [&] {
    std::string response;
    return client.Call("test.Echo", "Echo", "x", &response).code;
  });
  std::this_thread::sleep_for(50ms);
  client.Close();
  EXPECT_EQ(pending.get(), Code::kUnavailable);
  EXPECT_TRUE(client.closed());
}

TEST(TtrpcClient, PeerHangupFailsPendingCalls) {
  auto [client_fd, peer] = SocketPair();
  Client client(std::move(client_fd));
  auto pending = std::async(std::launch::async, [&] {
    std::string response;
    return client.Call("test.Echo", "Echo", "x", &response).code;
  });
  std::this_thread::sleep_for(50ms);
  peer.Reset();
  EXPECT_EQ(pending.get(), Code::kUnavailable);
}

}  // namespace
}  // namespace beaconbox::ttrpc
