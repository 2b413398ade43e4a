#include "common/ttrpc/ttrpc.h"

#include <gtest/gtest.h>
#include <pty.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <fstream>
#include <future>
#include <random>
#include <thread>
#include <tuple>

#include "common/ttrpc/worker_pool.h"
#include "tests/proc_status.h"

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
    serving_ = std::thread(
        [this, fd = std::move(server_fd)]() mutable { server_->ServeConnection(std::move(fd)); });
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
    server_->RegisterUnary(
        "test.Echo", "Sleep", [](ServerContext& context, std::string_view, std::string*) {
          std::this_thread::sleep_for(300ms);
          bool has_deadline = context.deadline() != std::chrono::steady_clock::time_point::max();
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
    server_->RegisterStream(
        "test.Echo", "Sum",
        [](ServerContext&, ServerStream& stream) {
          std::string message;
          int sum = 0;
          while (stream.Recv(&message)) sum += std::stoi(message);
          stream.SetFinalResponse(std::to_string(sum));
          return RpcStatus{};
        },
        StreamDesc{.client_streaming = true, .server_streaming = false});
    server_->RegisterStream("test.Echo", "Bidi", [](ServerContext&, ServerStream& stream) {
      std::string message;
      while (stream.Recv(&message)) {
        if (!stream.Send("echo:" + message)) break;
      }
      return RpcStatus{};
    });
    server_->RegisterStream("test.Echo", "Silent", [](ServerContext& context, ServerStream&) {
      while (!context.cancelled() && std::chrono::steady_clock::now() < context.deadline()) {
        std::this_thread::sleep_for(5ms);
      }
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

// Options::first_stream_id: a client continuing a session the server has kept (a
// restored VM's agent) starts above the ids that session saw; an even value is taken
// as the next odd one.
TEST_F(TtrpcTest, FirstStreamIdSetsWhereTheIdsStart) {
  Options options;
  options.first_stream_id = 40;
  Start(options);
  EXPECT_EQ(client_->next_stream_id(), 41u);
  std::string response;
  ASSERT_TRUE(client_->Call("test.Echo", "Echo", "a", &response).ok());
  EXPECT_EQ(client_->next_stream_id(), 43u);
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
  std::thread serving2(
      [&, fd = std::move(server_fd2)]() mutable { server.ServeConnection(std::move(fd)); });
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

TEST_F(TtrpcTest, BidirectionalStream) {
  Start();
  auto stream = client_->OpenStream("test.Echo", "Bidi");
  ASSERT_TRUE(stream.ok());
  std::string message;
  for (std::string word : {"a", "b", "c"}) {
    ASSERT_TRUE((*stream)->Send(word));
    ASSERT_TRUE((*stream)->Recv(&message));
    EXPECT_EQ(message, "echo:" + word);
  }
  ASSERT_TRUE((*stream)->CloseSend().ok());
  EXPECT_FALSE((*stream)->Send("late"));  // nothing after CloseSend
  EXPECT_FALSE((*stream)->Recv(&message));
  EXPECT_TRUE((*stream)->Finish().ok());
}

TEST_F(TtrpcTest, ServerStreamIsNotDroppedWhenTheConsumerIsSlow) {
  // Far more messages than a stream queues: the server's writes wait (back-pressure)
  // instead of anything being lost.
  Start();
  auto stream = client_->OpenStream("test.Echo", "Count", "3000", /*client_streaming=*/false);
  ASSERT_TRUE(stream.ok());
  std::this_thread::sleep_for(200ms);  // let the queue fill up
  std::string message;
  int expected = 0;
  while ((*stream)->Recv(&message)) {
    ASSERT_EQ(message, std::to_string(expected));
    ++expected;
  }
  EXPECT_EQ(expected, 3000);
  EXPECT_TRUE((*stream)->Finish().ok());
  // The connection is still fine for other calls.
  std::string response;
  EXPECT_TRUE(client_->Call("test.Echo", "Echo", "x", &response).ok());
}

TEST_F(TtrpcTest, StreamDeadline) {
  Start();
  CallOptions options;
  options.timeout = 100ms;
  auto stream = client_->OpenStream("test.Echo", "Silent", "", false, options);
  ASSERT_TRUE(stream.ok());
  std::string message;
  auto started = std::chrono::steady_clock::now();
  EXPECT_FALSE((*stream)->Recv(&message));
  EXPECT_EQ((*stream)->Finish().code, Code::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

TEST_F(TtrpcTest, CloseFailsOpenStreams) {
  Start();
  auto stream = client_->OpenStream("test.Echo", "Bidi");
  ASSERT_TRUE(stream.ok());
  auto receiving = std::async(std::launch::async, [&] {
    std::string message;
    return (*stream)->Recv(&message);
  });
  std::this_thread::sleep_for(50ms);
  client_->Close();
  EXPECT_FALSE(receiving.get());
  EXPECT_EQ((*stream)->Finish().code, Code::kUnavailable);
  EXPECT_FALSE((*stream)->Send("x"));
  std::string response;
  EXPECT_EQ(client_->Call("test.Echo", "Echo", "x", &response).code, Code::kUnavailable);
}

TEST_F(TtrpcTest, OversizeResponseFailsThatCallOnly) {
  Options options;
  options.max_message_size = 1024;
  Start(options);
  server_->RegisterUnary("test.Echo", "Big",
                         [](ServerContext&, std::string_view, std::string* out) {
                           *out = std::string(4096, 'x');
                           return RpcStatus{};
                         });
  std::string response;
  RpcStatus status = client_->Call("test.Echo", "Big", "", &response);
  EXPECT_EQ(status.code, Code::kResourceExhausted) << status.message;
  EXPECT_TRUE(client_->Call("test.Echo", "Echo", "small", &response).ok());
}

// The sealed guest channel: with an authorizer, a request without the right token is
// answered kUnauthenticated whatever its method (unknown ones too), no handler runs
// and no stream data is delivered; a client whose default metadata carries the
// token is served on the same server.
TEST(TtrpcAuthorizer, RefusesEveryCallWithoutTheTokenAndServesTheClientWithIt) {
  Options server_options;
  server_options.authorizer = [](std::string_view, std::string_view, const Metadata& metadata) {
    for (const auto& [key, value] : metadata) {
      if (key == "token" && value == "secret") return RpcStatus{};
    }
    return RpcStatus{Code::kUnauthenticated, "no valid token"};
  };
  Server server(server_options);
  std::atomic<int> handled{0};
  server.RegisterUnary("test.Echo", "Echo",
                       [&](ServerContext&, std::string_view request, std::string* out) {
                         ++handled;
                         *out = std::string(request);
                         return RpcStatus{};
                       });
  server.RegisterStream(
      "test.Echo", "Sum",
      [&](ServerContext&, ServerStream& stream) {
        ++handled;
        std::string message;
        int sum = 0;
        while (stream.Recv(&message)) sum += std::stoi(message);
        stream.SetFinalResponse(std::to_string(sum));
        return RpcStatus{};
      },
      StreamDesc{.client_streaming = true, .server_streaming = false});
  auto serve = [&server](UniqueFd fd) {
    return std::thread(
        [&server, fd = std::move(fd)]() mutable { server.ServeConnection(std::move(fd)); });
  };

  auto [intruder_fd, intruder_server_fd] = SocketPair();
  std::thread intruder_serving = serve(std::move(intruder_server_fd));
  auto intruder = std::make_unique<Client>(std::move(intruder_fd));
  std::string response;
  EXPECT_EQ(intruder->Call("test.Echo", "Echo", "x", &response).code, Code::kUnauthenticated);
  CallOptions wrong_token;
  wrong_token.metadata = {{"token", "secreT"}};
  EXPECT_EQ(intruder->Call("test.Echo", "Echo", "x", &response, wrong_token).code,
            Code::kUnauthenticated);
  EXPECT_EQ(intruder->Call("test.Echo", "NoSuchMethod", "x", &response).code,
            Code::kUnauthenticated);
  auto refused = intruder->OpenStream("test.Echo", "Sum");
  ASSERT_TRUE(refused.ok());
  (void)(*refused)->Send("1");
  (void)(*refused)->CloseSend();
  EXPECT_EQ((*refused)->Finish().code, Code::kUnauthenticated);
  EXPECT_EQ(handled.load(), 0);

  auto [owner_fd, owner_server_fd] = SocketPair();
  std::thread owner_serving = serve(std::move(owner_server_fd));
  Options client_options;
  client_options.default_metadata = {{"token", "secret"}};
  auto owner = std::make_unique<Client>(std::move(owner_fd), client_options);
  RpcStatus status = owner->Call("test.Echo", "Echo", "hello", &response);
  ASSERT_TRUE(status.ok()) << status.message;
  EXPECT_EQ(response, "hello");
  auto sum = owner->OpenStream("test.Echo", "Sum");
  ASSERT_TRUE(sum.ok());
  EXPECT_TRUE((*sum)->Send("2"));
  EXPECT_TRUE((*sum)->Send("3"));
  EXPECT_TRUE((*sum)->CloseSend().ok());
  std::string total;
  EXPECT_TRUE((*sum)->Recv(&total));
  EXPECT_EQ(total, "5");
  EXPECT_TRUE((*sum)->Finish().ok());
  EXPECT_EQ(handled.load(), 2);

  refused->reset();
  sum->reset();
  intruder.reset();
  owner.reset();
  intruder_serving.join();
  owner_serving.join();
}

TEST(TtrpcServer, HandlerCapWaitsThenRefuses) {
  auto [client_fd, server_fd] = SocketPair();
  Options options;
  options.max_concurrent_handlers = 2;
  options.handler_wait = 100ms;
  Server server(options);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> running = 0;
  server.RegisterUnary("test.Echo", "Block", [&](ServerContext&, std::string_view, std::string*) {
    ++running;
    released.wait();
    return RpcStatus{};
  });
  std::thread serving(
      [&, fd = std::move(server_fd)]() mutable { server.ServeConnection(std::move(fd)); });
  Client client(std::move(client_fd));
  std::vector<std::future<Code>> calls;
  for (int i = 0; i < 3; ++i) {
    calls.push_back(std::async(std::launch::async, [&] {
      std::string response;
      return client.Call("test.Echo", "Block", "", &response).code;
    }));
    std::this_thread::sleep_for(30ms);
  }
  // The third waits for a slot, then is refused; the two running are untouched.
  EXPECT_EQ(calls[2].get(), Code::kResourceExhausted);
  EXPECT_EQ(running.load(), 2);
  release.set_value();
  EXPECT_EQ(calls[0].get(), Code::kOk);
  EXPECT_EQ(calls[1].get(), Code::kOk);
  client.Close();
  serving.join();
}

// Resident set size of this process, in KiB.
long RssKib() { return beaconbox::testing::ProcSelfStatusKib("VmRSS"); }

// Reads one frame's header from a raw peer: {length, stream id, type}.
std::tuple<uint32_t, uint32_t, uint8_t> ReadHeader(int fd) {
  unsigned char h[10];
  size_t got = 0;
  while (got < sizeof(h)) {
    ssize_t n = ::read(fd, h + got, sizeof(h) - got);
    if (n <= 0) return {0, 0, 0};
    got += static_cast<size_t>(n);
  }
  auto be = [](const unsigned char* p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
  };
  return {be(h), be(h + 4), h[8]};
}

TEST(TtrpcHostile, FourGibRequestIsRefusedAtOnceWithoutAllocating) {
  auto [peer, server_fd] = SocketPair();
  Server server;
  std::thread serving(
      [&, fd = std::move(server_fd)]() mutable { server.ServeConnection(std::move(fd)); });
  long rss_before = RssKib();
  auto started = std::chrono::steady_clock::now();
  // Header only, body never sent: the answer must not wait for it.
  const unsigned char header[10] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0};
  ASSERT_EQ(::write(peer.get(), header, sizeof(header)), 10);
  auto [length, stream_id, type] = ReadHeader(peer.get());
  EXPECT_EQ(stream_id, 1u);
  EXPECT_EQ(type, 2);  // a Response (RESOURCE_EXHAUSTED)
  EXPECT_GT(length, 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  EXPECT_LT(RssKib() - rss_before, 16 * 1024) << "RSS grew after a 4 GiB header";
  peer.Reset();
  serving.join();
}

TEST(TtrpcHostile, FourGibResponseFailsTheCallAtOnce) {
  auto [client_fd, peer] = SocketPair();
  Client client(std::move(client_fd));
  long rss_before = RssKib();
  auto pending = std::async(std::launch::async, [&] {
    std::string response;
    return client.Call("test.Echo", "Echo", "x", &response).code;
  });
  auto [length, stream_id, type] = ReadHeader(peer.get());
  ASSERT_EQ(type, 1);  // the request
  std::string body(length, '\0');
  ASSERT_EQ(::read(peer.get(), body.data(), length), static_cast<ssize_t>(length));
  const unsigned char header[10] = {
      0xff, 0xff, 0xff, 0xff, 0, 0, 0, static_cast<unsigned char>(stream_id), 2, 0};
  ASSERT_EQ(::write(peer.get(), header, sizeof(header)), 10);
  ASSERT_EQ(pending.wait_for(2s), std::future_status::ready);
  EXPECT_EQ(pending.get(), Code::kResourceExhausted);
  EXPECT_LT(RssKib() - rss_before, 16 * 1024);
  EXPECT_FALSE(client.closed());  // still skipping the body; nothing failed yet
}

TEST(TtrpcHostile, RandomGarbageNeverCrashes) {
  std::mt19937 random(42);
  for (int round = 0; round < 200; ++round) {
    auto [peer, server_fd] = SocketPair();
    Server server;
    server.RegisterUnary(
        "s", "m", [](ServerContext&, std::string_view, std::string*) { return RpcStatus{}; });
    std::thread serving(
        [&, fd = std::move(server_fd)]() mutable { server.ServeConnection(std::move(fd)); });
    std::string junk(1 + random() % 200, '\0');
    for (auto& c : junk) c = static_cast<char>(random());
    if (round % 2 == 0) {
      junk[0] = junk[1] = junk[2] = 0;  // a plausible small length
      junk[3] = static_cast<char>(random() % 64);
    }
    (void)!::write(peer.get(), junk.data(), junk.size());
    peer.Reset();  // EOF ends the connection if the garbage did not already
    serving.join();
  }
}

TEST(TtrpcTransport, WorksOverACharacterDevice) {
  // A pty pair in raw mode: character devices, not sockets (like virtio-serial).
  int master = -1, slave = -1;
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  for (int fd : {master, slave}) {
    termios raw{};
    ASSERT_EQ(::tcgetattr(fd, &raw), 0);
    ::cfmakeraw(&raw);
    ASSERT_EQ(::tcsetattr(fd, TCSANOW, &raw), 0);
  }
  Server server;
  server.RegisterUnary("test.Echo", "Echo",
                       [](ServerContext&, std::string_view req, std::string* out) {
                         *out = std::string(req);
                         return RpcStatus{};
                       });
  std::thread serving([&] { server.ServeConnection(UniqueFd(master)); });
  {
    Client client{UniqueFd(slave)};
    std::string response;
    std::string big(100000, 'y');  // larger than the pty's buffer
    RpcStatus status = client.Call("test.Echo", "Echo", big, &response);
    ASSERT_TRUE(status.ok()) << status.message;
    EXPECT_EQ(response, big);
  }
  // The slave closed: the master reads EIO (or hangs up) and the server returns.
  serving.join();
}

TEST(TtrpcServer, ServeAndDestroyWithConnectionsOpen) {
  char dir[] = "/tmp/bbx-ttrpc-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/s.sock";
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  auto server = std::make_unique<Server>();
  server->RegisterUnary("test.Echo", "Echo",
                        [](ServerContext&, std::string_view, std::string*) { return RpcStatus{}; });
  std::thread serving([&] { EXPECT_TRUE(server->Serve(listener.get()).ok()); });
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 5; ++i) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    clients.push_back(std::make_unique<Client>(std::move(fd)));
    std::string response;
    EXPECT_TRUE(clients.back()->Call("test.Echo", "Echo", "", &response).ok());
  }
  server->Shutdown();
  serving.join();
  server.reset();  // waits for the connection threads
  for (auto& client : clients) {
    std::string response;
    EXPECT_EQ(client->Call("test.Echo", "Echo", "", &response).code, Code::kUnavailable);
  }
  ::unlink(path.c_str());
  ::rmdir(dir);
}

// --- Raw frames, for the checks a well-behaved peer cannot make ---

void PutBigEndian(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

std::string RawFrame(uint32_t stream_id, uint8_t type, uint8_t flags, std::string_view payload) {
  std::string frame;
  PutBigEndian(&frame, static_cast<uint32_t>(payload.size()));
  PutBigEndian(&frame, stream_id);
  frame.push_back(static_cast<char>(type));
  frame.push_back(static_cast<char>(flags));
  frame.append(payload);
  return frame;
}

// A ttrpc Request message (service = 1, method = 2, payload = 3), encoded by hand.
std::string RawRequest(std::string_view service, std::string_view method,
                       std::string_view payload) {
  std::string out;
  auto field = [&out](char tag, std::string_view value) {
    out.push_back(tag);
    size_t n = value.size();
    while (n >= 0x80) {
      out.push_back(static_cast<char>((n & 0x7f) | 0x80));
      n >>= 7;
    }
    out.push_back(static_cast<char>(n));
    out.append(value);
  };
  field(0x0a, service);
  field(0x12, method);
  if (!payload.empty()) field(0x1a, payload);
  return out;
}

bool WriteAllTo(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

struct RawFrameRead {
  uint32_t stream_id = 0;
  uint8_t type = 0;
  uint8_t flags = 0;
  std::string payload;
  bool ok = false;
};

RawFrameRead ReadRawFrame(int fd) {
  RawFrameRead frame;
  unsigned char h[10];
  auto read_exact = [fd](void* out, size_t n) {
    auto* p = static_cast<char*>(out);
    while (n > 0) {
      ssize_t got = ::read(fd, p, n);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      p += got;
      n -= static_cast<size_t>(got);
    }
    return true;
  };
  if (!read_exact(h, sizeof(h))) return frame;
  auto be = [](const unsigned char* p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
  };
  frame.stream_id = be(h + 4);
  frame.type = h[8];
  frame.flags = h[9];
  frame.payload.resize(be(h));
  frame.ok = read_exact(frame.payload.data(), frame.payload.size());
  return frame;
}

TEST(TtrpcHostile, DataFramesForAPendingUnaryCallAreNeverQueued) {
  auto [client_fd, peer] = SocketPair();
  Client client(std::move(client_fd));
  long rss_before = RssKib();
  auto pending = std::async(std::launch::async, [&] {
    std::string response;
    return client.Call("test.Echo", "Wait", "x", &response).code;
  });
  RawFrameRead request = ReadRawFrame(peer.get());
  ASSERT_TRUE(request.ok);
  // 64 MiB of stream data for a unary call: the first fails the call, the rest are
  // dropped as they arrive; none is kept.
  std::string data = RawFrame(request.stream_id, 3, 0, std::string(1 << 20, 'd'));
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(WriteAllTo(peer.get(), data));
  ASSERT_EQ(pending.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(pending.get(), Code::kInternal);
  EXPECT_LT(RssKib() - rss_before, 16 * 1024) << "data frames of a unary call were kept";
  EXPECT_FALSE(client.closed());
}

TEST(TtrpcHostile, ServerDropsDataFramesForAUnaryRequest) {
  auto [peer, server_fd] = SocketPair();
  Server server;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  server.RegisterUnary("test.Echo", "Block",
                       [&](ServerContext&, std::string_view, std::string* out) {
                         released.wait();
                         *out = "done";
                         return RpcStatus{};
                       });
  std::thread serving(
      [&, fd = std::move(server_fd)]() mutable { server.ServeConnection(std::move(fd)); });
  long rss_before = RssKib();
  ASSERT_TRUE(WriteAllTo(peer.get(), RawFrame(1, 1, 0, RawRequest("test.Echo", "Block", ""))));
  std::string data = RawFrame(1, 3, 0, std::string(1 << 20, 'd'));
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(WriteAllTo(peer.get(), data));
  // All 64 MiB were read (the socket took them), none kept.
  ASSERT_TRUE(WriteAllTo(peer.get(), RawFrame(3, 1, 0, RawRequest("test.Echo", "Nope", ""))));
  RawFrameRead answer = ReadRawFrame(peer.get());
  EXPECT_EQ(answer.stream_id, 3u);  // unimplemented, answered after the data was read
  EXPECT_LT(RssKib() - rss_before, 16 * 1024) << "data frames of a unary request were kept";
  release.set_value();
  answer = ReadRawFrame(peer.get());
  EXPECT_EQ(answer.stream_id, 1u);
  EXPECT_EQ(answer.type, 2);
  peer.Reset();
  serving.join();
}

TEST(TtrpcClient, StreamIdsReachTheWireInOrder) {
  auto [client_fd, peer] = SocketPair();
  Client client(std::move(client_fd));
  constexpr int kThreads = 8, kCallsEach = 100;
  // The peer checks every request id is larger than the last (Go's ttrpc 1.2 server
  // refuses anything else) and answers each.
  std::thread peer_thread([&, fd = peer.get()] {
    uint32_t last = 0;
    for (int i = 0; i < kThreads * kCallsEach; ++i) {
      RawFrameRead request = ReadRawFrame(fd);
      ASSERT_TRUE(request.ok);
      EXPECT_GT(request.stream_id, last) << "request " << i;
      last = request.stream_id;
      ASSERT_TRUE(WriteAllTo(fd, RawFrame(request.stream_id, 2, 0, "")));
    }
  });
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < kCallsEach; ++i) {
        std::string response;
        EXPECT_TRUE(client.Call("test.Echo", "Echo", "x", &response).ok());
      }
    });
  }
  for (auto& caller : callers) caller.join();
  peer_thread.join();
}

// A peer that no longer reads: writes fail with EPIPE instead of raising SIGPIPE
// (default action: kill the process), on both sides.
TEST(TtrpcTransport, PeerThatStoppedReadingIsAnErrorNotSigpipe) {
  auto previous = std::signal(SIGPIPE, SIG_DFL);
  {
    auto [client_fd, peer] = SocketPair();
    Client client(std::move(client_fd));
    ASSERT_EQ(::shutdown(peer.get(), SHUT_RD), 0);
    std::string response;
    EXPECT_EQ(client.Call("test.Echo", "Echo", "x", &response).code, Code::kUnavailable);
  }
  {
    auto [peer, server_fd] = SocketPair();
    Server server;
    std::promise<void> answered;
    server.RegisterUnary("test.Echo", "Echo", [&](ServerContext&, std::string_view, std::string*) {
      return RpcStatus{};
    });
    std::thread serving(
        [&, fd = std::move(server_fd)]() mutable { server.ServeConnection(std::move(fd)); });
    ASSERT_TRUE(WriteAllTo(peer.get(), RawFrame(1, 1, 0, RawRequest("test.Echo", "Echo", "x"))));
    ASSERT_EQ(::shutdown(peer.get(), SHUT_RD), 0);  // the answer now hits EPIPE
    std::this_thread::sleep_for(200ms);
    peer.Reset();
    serving.join();
  }
  std::signal(SIGPIPE, previous);
  SUCCEED() << "still alive";
}

TEST(TtrpcServer, ServerStreamEndsWithAnEmptyRemoteClosedDataFrame) {
  auto [peer, server_fd] = SocketPair();
  Server server;
  server.RegisterStream(
      "test.Echo", "Two",
      [](ServerContext&, ServerStream& stream) {
        std::string request;
        stream.Recv(&request);
        stream.Send("a");
        stream.Send("b");
        return RpcStatus{};
      },
      StreamDesc{.client_streaming = false, .server_streaming = true});
  std::thread serving(
      [&, fd = std::move(server_fd)]() mutable { server.ServeConnection(std::move(fd)); });
  // ttrpc 1.2: a stream request the client does not stream to carries remote-closed.
  ASSERT_TRUE(WriteAllTo(peer.get(), RawFrame(1, 1, 0x1, RawRequest("test.Echo", "Two", "r"))));
  RawFrameRead a = ReadRawFrame(peer.get()), b = ReadRawFrame(peer.get()),
               end = ReadRawFrame(peer.get());
  EXPECT_EQ(std::tuple(a.type, a.payload), std::tuple(uint8_t{3}, std::string("a")));
  EXPECT_EQ(std::tuple(b.type, b.payload), std::tuple(uint8_t{3}, std::string("b")));
  EXPECT_EQ(end.stream_id, 1u);
  EXPECT_EQ(end.type, 3) << "a server stream ends with a data frame, not a Response";
  EXPECT_EQ(end.flags, 0x1 | 0x4) << "remote-closed + no-data";
  EXPECT_TRUE(end.payload.empty());
  peer.Reset();
  serving.join();
}

TEST_F(TtrpcTest, OversizeStreamMessageEndsTheStreamWithAnError) {
  Options options;
  options.max_message_size = 1024;
  Start(options);
  server_->RegisterStream(
      "test.Echo", "TooBig",
      [](ServerContext&, ServerStream& stream) {
        stream.Send("small");
        EXPECT_FALSE(stream.Send(std::string(4096, 'x')));
        return RpcStatus{};  // the handler ignores the failure: the client still learns
      },
      StreamDesc{.client_streaming = false, .server_streaming = true});
  auto stream = client_->OpenStream("test.Echo", "TooBig", "", /*client_streaming=*/false);
  ASSERT_TRUE(stream.ok());
  std::string message;
  EXPECT_TRUE((*stream)->Recv(&message));
  EXPECT_EQ(message, "small");
  EXPECT_FALSE((*stream)->Recv(&message));
  EXPECT_EQ((*stream)->Finish().code, Code::kResourceExhausted);
  std::string response;
  EXPECT_TRUE(client_->Call("test.Echo", "Echo", "ok", &response).ok());
}

TEST(TtrpcClient, CancellerEndsPendingAndLaterCallsAndStreams) {
  auto [client_fd, silent_peer] = SocketPair();
  Client client(std::move(client_fd));
  auto canceller = std::make_shared<Canceller>();
  CallOptions options;
  options.canceller = canceller;
  auto pending = std::async(std::launch::async, [&] {
    std::string response;
    return client.Call("test.Echo", "Echo", "x", &response, options).code;
  });
  auto stream = client.OpenStream("test.Echo", "Count", "5", false, options);
  ASSERT_TRUE(stream.ok());
  auto receiving = std::async(std::launch::async, [&] {
    std::string message;
    return (*stream)->Recv(&message);
  });
  std::this_thread::sleep_for(50ms);
  canceller->Cancel();
  ASSERT_EQ(pending.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(pending.get(), Code::kCancelled);
  EXPECT_FALSE(receiving.get());
  EXPECT_EQ((*stream)->Finish().code, Code::kCancelled);
  std::string response;
  EXPECT_EQ(client.Call("test.Echo", "Echo", "x", &response, options).code, Code::kCancelled);
  EXPECT_FALSE(client.closed());  // the connection itself is untouched
}

// A peer that opens many streams and never has its messages taken makes one
// connection hold at most Options::max_buffered_bytes plus one message (before, each
// stream could queue 4 x max_message_size: here 16 x 256 KiB).
TEST(TtrpcServer, OneConnectionBuffersAtMostItsBudgetWhateverTheNumberOfStreams) {
  auto [client_fd, server_fd] = SocketPair();
  Options options;
  options.max_message_size = 64 << 10;
  options.max_buffered_bytes = 128 << 10;
  Server server(options);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  server.RegisterStream(
      "test.Echo", "Hold",
      [&](ServerContext&, ServerStream& stream) {
        released.wait();
        std::string message;
        int count = 0;
        while (stream.Recv(&message)) ++count;
        stream.SetFinalResponse(std::to_string(count));
        return RpcStatus{};
      },
      StreamDesc{.client_streaming = true, .server_streaming = false});
  std::thread serving(
      [&, fd = std::move(server_fd)]() mutable { server.ServeConnection(std::move(fd)); });
  Client client(std::move(client_fd), options);

  constexpr int kStreams = 16, kMessagesPerStream = 8;
  const std::string message(32 << 10, 'x');
  std::vector<std::unique_ptr<ClientStream>> streams;
  for (int i = 0; i < kStreams; ++i) {
    auto stream = client.OpenStream("test.Echo", "Hold");
    ASSERT_TRUE(stream.ok()) << stream.error().message;
    streams.push_back(std::move(*stream));
  }
  std::atomic<size_t> sent = 0;
  std::thread sender([&] {
    for (int round = 0; round < kMessagesPerStream; ++round) {
      for (auto& stream : streams) {
        if (!stream->Send(message)) return;
        sent += message.size();
      }
    }
    for (auto& stream : streams) (void)stream->CloseSend();
  });
  // Until the sender is held back: its count stops growing.
  size_t last = 0;
  for (int still = 0; still < 5;) {
    std::this_thread::sleep_for(100ms);
    size_t now = sent.load();
    still = now == last ? still + 1 : 0;
    last = now;
  }
  const size_t total = size_t{kStreams} * kMessagesPerStream * message.size();
  EXPECT_LT(sent.load(), total) << "nothing held the sender back";
  EXPECT_LE(server.buffered_bytes(), options.max_buffered_bytes + options.max_message_size);
  EXPECT_GT(server.buffered_bytes(), 0u);

  // Once the handlers take their messages, every one arrives.
  release.set_value();
  sender.join();
  EXPECT_EQ(sent.load(), total);
  for (auto& stream : streams) {
    std::string count;
    ASSERT_TRUE(stream->Recv(&count));
    EXPECT_EQ(count, std::to_string(kMessagesPerStream));
    EXPECT_TRUE(stream->Finish().ok());
  }
  EXPECT_EQ(server.buffered_bytes(), 0u);
  client.Close();
  serving.join();
}

// Many connections each within their handler cap still cannot make the process run
// more pool threads than its limit: the tasks beyond it wait, then all run.
TEST(TtrpcServer, PoolThreadsStayWithinTheProcessLimitAcrossConnections) {
  // Threads left idle by earlier tests count against the limit too, and take calls.
  const size_t limit = internal::CountPool().threads + 8;
  internal::SetPoolThreadLimit(limit);
  constexpr size_t kWaiting = 12;
  constexpr size_t kConnections = 4;
  const size_t calls_each = (limit + kWaiting) / kConnections;  // under each connection's cap
  const size_t total = calls_each * kConnections;
  Server server;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> started = 0;
  server.RegisterUnary("test.Echo", "Block", [&](ServerContext&, std::string_view, std::string*) {
    ++started;
    released.wait();
    return RpcStatus{};
  });
  std::vector<std::thread> serving;
  std::vector<std::unique_ptr<Client>> clients;
  for (size_t i = 0; i < kConnections; ++i) {
    auto [client_fd, server_fd] = SocketPair();
    serving.emplace_back(
        [&, fd = std::move(server_fd)]() mutable { server.ServeConnection(std::move(fd)); });
    clients.push_back(std::make_unique<Client>(std::move(client_fd)));
  }
  std::vector<std::future<Code>> calls;
  for (auto& client : clients) {
    for (size_t i = 0; i < calls_each; ++i) {
      calls.push_back(std::async(std::launch::async, [&client] {
        std::string response;
        return client->Call("test.Echo", "Block", "", &response).code;
      }));
    }
  }
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (internal::CountPool().queued < total - limit &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(100ms);  // time for a thread beyond the limit, were there one
  internal::PoolCounts counts = internal::CountPool();
  EXPECT_LE(counts.threads, limit);
  EXPECT_EQ(counts.queued, total - limit);
  EXPECT_EQ(started.load(), static_cast<int>(limit));
  release.set_value();
  for (auto& call : calls) EXPECT_EQ(call.get(), Code::kOk);
  EXPECT_EQ(started.load(), static_cast<int>(total));
  internal::SetPoolThreadLimit(internal::kDefaultPoolThreadLimit);
  for (auto& client : clients) client->Close();
  for (auto& thread : serving) thread.join();
}

}  // namespace
}  // namespace beaconbox::ttrpc
