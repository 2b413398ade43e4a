// beaconbox's C++ ttrpc against containerd's Go ttrpc (Debian's package, built
// offline into ttrpc_peer), in both directions.
#include <fcntl.h>
#include <google/protobuf/wrappers.pb.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "common/ttrpc/ttrpc.h"

namespace beaconbox::ttrpc {
namespace {

using namespace std::chrono_literals;
using google::protobuf::StringValue;

// A child process, killed and reaped when the object goes.
struct Child {
  pid_t pid = -1;
  int stdin_fd = -1;
  int stdout_fd = -1;
  ~Child() {
    if (stdin_fd >= 0) ::close(stdin_fd);
    if (stdout_fd >= 0) ::close(stdout_fd);
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  int Wait() {
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
};

void Spawn(Child* child, const std::string& mode, const std::string& socket,
           const char* peer = TTRPC_PEER) {
  int in[2], out[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  child->pid = ::fork();
  ASSERT_GE(child->pid, 0);
  if (child->pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::execl(peer, peer, mode.c_str(), socket.c_str(), nullptr);
    _exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  child->stdin_fd = in[1];
  child->stdout_fd = out[0];
}

UniqueFd Dial(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) fd.Reset();
  return fd;
}

class InteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bbx-ttrpc-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/s.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_, socket_;
};

TEST_F(InteropTest, CppClientToGoServer) {
  Child go;
  Spawn(&go, "serve", socket_);
  char ready[6] = {};
  ASSERT_EQ(::read(go.stdout_fd, ready, 5), 5) << "Go server did not start";
  UniqueFd fd = Dial(socket_);
  ASSERT_TRUE(fd.valid());
  Client client(std::move(fd));

  StringValue request, response;
  request.set_value("hello");
  CallOptions options;
  options.metadata.emplace_back("suffix", "!");
  RpcStatus status = CallProto(client, "test.Echo", "Echo", request, &response, options);
  ASSERT_TRUE(status.ok()) << status.message;
  EXPECT_EQ(response.value(), "hello!");

  status = CallProto(client, "test.Echo", "Fail", request, &response);
  EXPECT_EQ(status.code, Code::kNotFound);
  EXPECT_EQ(status.message, "no such thing");

  // The deadline travels as timeout_nano: the Go server ends the call itself.
  options.timeout = 200ms;
  status = CallProto(client, "test.Echo", "Sleep", request, &response, options);
  EXPECT_EQ(status.code, Code::kDeadlineExceeded);

  std::vector<std::future<bool>> calls;
  for (int i = 0; i < 50; ++i) {
    calls.push_back(std::async(std::launch::async, [&client, i] {
      StringValue req, resp;
      req.set_value(std::to_string(i));
      return CallProto(client, "test.Echo", "Echo", req, &resp).ok() &&
             resp.value() == std::to_string(i);
    }));
  }
  for (auto& call : calls) EXPECT_TRUE(call.get());

  // Go refuses a request over its 4 MiB limit with RESOURCE_EXHAUSTED; the
  // connection stays usable.
  Options big;
  big.max_message_size = 8 << 20;
  UniqueFd fd2 = Dial(socket_);
  Client big_client(std::move(fd2), big);
  request.set_value(std::string(5 << 20, 'x'));
  status = CallProto(big_client, "test.Echo", "Echo", request, &response);
  EXPECT_EQ(status.code, Code::kResourceExhausted) << status.message;

  // A response over our limit (1 MiB here) fails that call with RESOURCE_EXHAUSTED
  // at its header; its body is skipped and the connection stays usable.
  Options small;
  small.max_message_size = 1 << 20;
  Client small_client(Dial(socket_), small);
  request.set_value(std::to_string(2 << 20));
  status = CallProto(small_client, "test.Echo", "Big", request, &response);
  EXPECT_EQ(status.code, Code::kResourceExhausted) << status.message;
  request.set_value("after");
  status = CallProto(small_client, "test.Echo", "Echo", request, &response);
  EXPECT_TRUE(status.ok()) << status.message;
  EXPECT_EQ(response.value(), "after");
}

TEST_F(InteropTest, GoClientToCppServer) {
  Server server;
  RegisterUnaryProto<StringValue, StringValue>(
      server, "test.Echo", "Echo",
      [](ServerContext& context, const StringValue& request, StringValue* response) {
        response->set_value(request.value() + context.MetadataValue("suffix"));
        return RpcStatus{};
      });
  server.RegisterUnary("test.Echo", "Fail", [](ServerContext&, std::string_view, std::string*) {
    return RpcStatus{Code::kNotFound, "no such thing"};
  });
  server.RegisterUnary("test.Echo", "Sleep",
                       [](ServerContext& context, std::string_view, std::string*) {
                         std::this_thread::sleep_until(
                             std::min(context.deadline(), std::chrono::steady_clock::now() + 2s));
                         return RpcStatus{Code::kDeadlineExceeded, "deadline"};
                       });
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  socket_.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  std::thread serving([&] { (void)server.Serve(listener.get()); });

  Child go;
  Spawn(&go, "call", socket_);
  EXPECT_EQ(go.Wait(), 0) << "the Go client's checks failed (its stderr says which)";
  server.Shutdown();
  serving.join();
}

// The Go 1.2 stream peer, or a skip with the reason its build gave.
#define REQUIRE_STREAM_PEER()                                                          \
  do {                                                                                 \
    if (::access(TTRPC_STREAM_PEER, X_OK) != 0) {                                      \
      std::ifstream reason(TTRPC_STREAM_PEER ".skip");                                 \
      std::string line;                                                                \
      std::getline(reason, line);                                                      \
      GTEST_SKIP() << "no Go ttrpc 1.2 peer: " << (line.empty() ? "not built" : line); \
    }                                                                                  \
  } while (0)

std::string Str(const std::string& value) {
  StringValue message;
  message.set_value(value);
  return message.SerializeAsString();
}

std::string Value(const std::string& bytes) {
  StringValue message;
  return message.ParseFromString(bytes) ? message.value() : "<unparsable>";
}

TEST_F(InteropTest, CppStreamsToGo12Server) {
  REQUIRE_STREAM_PEER();
  Child go;
  Spawn(&go, "serve", socket_, TTRPC_STREAM_PEER);
  char ready[6] = {};
  ASSERT_EQ(::read(go.stdout_fd, ready, 5), 5) << "Go server did not start";
  Client client(Dial(socket_));
  std::string message;

  // Server stream: the Go server ends it with an empty remote-closed data frame.
  auto count = client.OpenStream("test.Streams", "Count", Str("3"), /*client_streaming=*/false);
  ASSERT_TRUE(count.ok()) << count.error().message;
  std::vector<std::string> got;
  while ((*count)->Recv(&message)) got.push_back(Value(message));
  EXPECT_EQ(got, (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_TRUE((*count)->Finish().ok()) << (*count)->Finish().message;

  // Client stream: one answer in the final Response.
  auto sum = client.OpenStream("test.Streams", "Sum");
  ASSERT_TRUE(sum.ok());
  for (int i = 1; i <= 10; ++i) EXPECT_TRUE((*sum)->Send(Str(std::to_string(i))));
  ASSERT_TRUE((*sum)->CloseSend().ok());
  ASSERT_TRUE((*sum)->Recv(&message));
  EXPECT_EQ(Value(message), "55");
  EXPECT_FALSE((*sum)->Recv(&message));
  EXPECT_TRUE((*sum)->Finish().ok());

  // Both directions in lock step.
  auto echo = client.OpenStream("test.Streams", "Echo");
  ASSERT_TRUE(echo.ok());
  for (std::string word : {"a", "b", "c"}) {
    ASSERT_TRUE((*echo)->Send(Str(word)));
    ASSERT_TRUE((*echo)->Recv(&message));
    EXPECT_EQ(Value(message), "echo:" + word);
  }
  ASSERT_TRUE((*echo)->CloseSend().ok());
  EXPECT_FALSE((*echo)->Recv(&message));
  EXPECT_TRUE((*echo)->Finish().ok());

  // An error after a message.
  auto fail = client.OpenStream("test.Streams", "Fail", Str(""), /*client_streaming=*/false);
  ASSERT_TRUE(fail.ok());
  ASSERT_TRUE((*fail)->Recv(&message));
  EXPECT_EQ(Value(message), "partial");
  EXPECT_FALSE((*fail)->Recv(&message));
  RpcStatus status = (*fail)->Finish();
  EXPECT_EQ(status.code, Code::kNotFound);
  EXPECT_EQ(status.message, "gone");

  // Unary calls to the 1.2 server: an answer, an error, a deadline it sees.
  std::string response;
  ASSERT_TRUE(client.Call("test.Streams", "Unary", Str("x"), &response).ok());
  EXPECT_EQ(Value(response), "unary:x");
  status = client.Call("test.Streams", "Unary", Str("fail"), &response);
  EXPECT_EQ(status.code, Code::kPermissionDenied);
  EXPECT_EQ(status.message, "denied");
  CallOptions with_deadline;
  with_deadline.timeout = 10s;
  ASSERT_TRUE(client.Call("test.Streams", "Deadline", Str(""), &response, with_deadline).ok());
  EXPECT_EQ(Value(response), "yes") << "the Go server saw no deadline";

  // A stream past its deadline: Recv gives up, Finish says DeadlineExceeded.
  CallOptions short_deadline;
  short_deadline.timeout = 300ms;
  auto hang = client.OpenStream("test.Streams", "Hang", Str(""), false, short_deadline);
  ASSERT_TRUE(hang.ok());
  EXPECT_FALSE((*hang)->Recv(&message));
  EXPECT_EQ((*hang)->Finish().code, Code::kDeadlineExceeded);
  ASSERT_TRUE(client.Call("test.Streams", "Unary", Str("after"), &response).ok());
  EXPECT_EQ(Value(response), "unary:after");

  // Many streams at once on the one connection.
  std::vector<std::future<bool>> streams;
  for (int i = 0; i < 20; ++i) {
    streams.push_back(std::async(std::launch::async, [&client, i] {
      auto s = client.OpenStream("test.Streams", "Count", Str(std::to_string(i)), false);
      if (!s.ok()) return false;
      std::string m;
      int n = 0;
      while ((*s)->Recv(&m)) {
        if (Value(m) != std::to_string(n++)) return false;
      }
      RpcStatus end = (*s)->Finish();
      if (n != i || !end.ok()) {
        ADD_FAILURE() << "stream " << i << ": " << n << " messages, " << end.message;
      }
      return n == i && end.ok();
    }));
  }
  for (auto& s : streams) EXPECT_TRUE(s.get());
}

TEST_F(InteropTest, Go12StreamsToCppServer) {
  REQUIRE_STREAM_PEER();
  Server server;
  server.RegisterStream(
      "test.Streams", "Count",
      [](ServerContext&, ServerStream& stream) {
        std::string request;
        if (!stream.Recv(&request)) return RpcStatus{Code::kInvalidArgument, "no request"};
        int n = std::atoi(Value(request).c_str());
        for (int i = 0; i < n; ++i) stream.Send(Str(std::to_string(i)));
        return RpcStatus{};
      },
      StreamDesc{.client_streaming = false, .server_streaming = true});
  server.RegisterStream(
      "test.Streams", "Sum",
      [](ServerContext&, ServerStream& stream) {
        std::string message;
        int sum = 0;
        while (stream.Recv(&message)) sum += std::atoi(Value(message).c_str());
        stream.SetFinalResponse(Str(std::to_string(sum)));
        return RpcStatus{};
      },
      StreamDesc{.client_streaming = true, .server_streaming = false});
  server.RegisterStream("test.Streams", "Echo", [](ServerContext&, ServerStream& stream) {
    std::string message;
    while (stream.Recv(&message)) stream.Send(Str("echo:" + Value(message)));
    return RpcStatus{};
  });
  server.RegisterStream(
      "test.Streams", "Fail",
      [](ServerContext&, ServerStream& stream) {
        stream.Send(Str("partial"));
        return RpcStatus{Code::kNotFound, "gone"};
      },
      StreamDesc{.client_streaming = false, .server_streaming = true});
  server.RegisterStream(
      "test.Streams", "Hang",
      [](ServerContext& context, ServerStream&) {
        while (!context.cancelled() && std::chrono::steady_clock::now() < context.deadline()) {
          std::this_thread::sleep_for(10ms);
        }
        return RpcStatus{Code::kDeadlineExceeded, "hang: deadline"};
      },
      StreamDesc{.client_streaming = false, .server_streaming = true});
  server.RegisterUnary("test.Streams", "Unary",
                       [](ServerContext&, std::string_view request, std::string* out) {
                         if (Value(std::string(request)) == "fail") {
                           return RpcStatus{Code::kPermissionDenied, "denied"};
                         }
                         *out = Str("unary:" + Value(std::string(request)));
                         return RpcStatus{};
                       });
  server.RegisterUnary(
      "test.Streams", "Deadline", [](ServerContext& context, std::string_view, std::string* out) {
        bool has = context.deadline() != std::chrono::steady_clock::time_point::max();
        *out = Str(has ? "yes" : "no");
        return RpcStatus{};
      });
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  socket_.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  std::thread serving([&] { (void)server.Serve(listener.get()); });

  Child go;
  Spawn(&go, "call", socket_, TTRPC_STREAM_PEER);
  EXPECT_EQ(go.Wait(), 0) << "the Go client's stream checks failed (its stderr says which)";
  server.Shutdown();
  serving.join();
}

}  // namespace
}  // namespace beaconbox::ttrpc
