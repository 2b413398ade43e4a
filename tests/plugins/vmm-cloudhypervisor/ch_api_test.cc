// The REST client: error mapping to one line naming the call, and real HTTP/1.1
// exchanges with a canned server on a unix socket (timeouts, bodies, statuses).
#include "plugins/vmm-cloudhypervisor/ch_api.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/base/fd_passing.h"
#include "common/base/unique_fd.h"
#include "plugins/common/netns.h"
#include "tests/plugins/common/temp_dir.h"
#include "tests/plugins/common/unix_socket.h"

namespace beaconbox::cloudhv {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

TEST(ApiCallError, OneLineNamingTheCallWithChText) {
  ApiResponse response{400, "Bad Request",
                       "Error from API\nThe VM could not be created: Invalid memory size\n"};
  Error error = ApiCallError("vm.create", response);
  EXPECT_EQ(error.code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(error.message, HasSubstr("cloud-hypervisor API vm.create: HTTP 400 Bad Request: "));
  EXPECT_THAT(error.message, HasSubstr("Invalid memory size"));
  EXPECT_THAT(error.message, Not(HasSubstr("\n")));
}

TEST(ApiCallError, StatusesMapToCodes) {
  EXPECT_EQ(ApiCallError("vm.boot", {500, "Internal Server Error", "boom"}).code,
            ErrorCode::kUnavailable);
  EXPECT_EQ(ApiCallError("vm.add-disk", {409, "Conflict", "exists"}).code,
            ErrorCode::kAlreadyExists);
  Error unknown = ApiCallError("vm.resize-zone", {404, "Not Found", ""});
  EXPECT_EQ(unknown.code, ErrorCode::kNotFound);
  EXPECT_THAT(unknown.message, HasSubstr("upgrade it"));
  Error long_body = ApiCallError("vm.info", {500, "x", std::string(5000, 'e')});
  EXPECT_LT(long_body.message.size(), 600u);
}

// Listens on `path` and serves the first connection with `serve` on its own thread;
// Join (or the destructor) stops listening and waits for it.
class OneConnectionServer {
 public:
  OneConnectionServer(const std::string& path, std::function<void(UniqueFd)> serve)
      : listen_(plugins::testing::ListenUnix(path)) {
    EXPECT_TRUE(listen_) << path << ": " << std::strerror(errno);
    thread_ = std::thread([this, serve = std::move(serve)] {
      UniqueFd client(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (client) serve(std::move(client));
    });
  }
  ~OneConnectionServer() { Join(); }
  void Join() {
    if (thread_.joinable()) {
      ::shutdown(listen_.get(), SHUT_RDWR);
      thread_.join();
    }
  }

 private:
  UniqueFd listen_;
  std::thread thread_;
};

// Accepts one connection on `path`, reads the request head (and body) and answers
// `answer` verbatim (after `delay`).
class CannedServer {
 public:
  CannedServer(const std::string& path, std::string answer, std::chrono::milliseconds delay = 0ms)
      : server_(path, [this, answer, delay](UniqueFd client) {
          char buffer[4096];
          while (request_.find("\r\n\r\n") == std::string::npos) {
            ssize_t n = ::read(client.get(), buffer, sizeof(buffer));
            if (n <= 0) return;
            request_.append(buffer, static_cast<size_t>(n));
          }
          std::this_thread::sleep_for(delay);
          (void)!::send(client.get(), answer.data(), answer.size(), MSG_NOSIGNAL);
          std::this_thread::sleep_for(100ms);
        }) {}
  std::string request() {
    server_.Join();
    return request_;
  }

 private:
  std::string request_;  // before server_: its thread writes it
  OneConnectionServer server_;
};

// A temporary directory with the API socket's path in it, for each ApiClient test.
class ApiClientTest : public ::testing::Test {
 protected:
  plugins::testing::TempDir dir_;
  const std::string socket_ = dir_ / "api.sock";
};

TEST_F(ApiClientTest, PutsJsonAndReadsTheAnswer) {
  CannedServer server(socket_,
                      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                      "18\r\n\r\n{\"version\":\"v48\"}\n");
  ApiClient client(socket_);
  auto body = client.Call("PUT", "vm.create", std::string("{\"a\":1}"), 5s);
  ASSERT_TRUE(body.ok()) << body.error().message;
  EXPECT_EQ(*body, "{\"version\":\"v48\"}\n");
  std::string request = server.request();
  EXPECT_THAT(request, HasSubstr("PUT /api/v1/vm.create HTTP/1.1\r\n"));
  EXPECT_THAT(request, HasSubstr("Content-Type: application/json"));
  EXPECT_EQ(client.timings().at("vm.create").calls, 1u);
}

TEST_F(ApiClientTest, ErrorStatusBecomesOneLine) {
  CannedServer server(
      socket_, "HTTP/1.1 400 Bad Request\r\nContent-Length: 25\r\n\r\nError from API: bad cpus\n");
  ApiClient client(socket_);
  auto body = client.Call("PUT", "vm.create", std::string("{}"), 5s);
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.error().message,
            "cloud-hypervisor API vm.create: HTTP 400 Bad Request: Error from API: bad cpus");
}

TEST_F(ApiClientTest, NoServerAndTimeoutNameTheCall) {
  ApiClient absent(dir_ / "none.sock");
  auto refused = absent.Call("GET", "vmm.ping", std::nullopt, 1s);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(refused.error().message, HasSubstr("vmm.ping"));

  CannedServer slow(dir_ / "slow.sock", "HTTP/1.1 204 No Content\r\n\r\n", 2s);
  ApiClient client(dir_ / "slow.sock");
  auto timed_out = client.Call("PUT", "vm.boot", std::nullopt, 200ms);
  ASSERT_FALSE(timed_out.ok());
  EXPECT_EQ(timed_out.error().code, ErrorCode::kTimeout);
  EXPECT_THAT(timed_out.error().message, HasSubstr("vm.boot"));
}

TEST_F(ApiClientTest, RefusesGarbageAndHugeBodies) {
  CannedServer garbage(dir_ / "g.sock", "SSH-2.0-nope\r\n\r\n");
  ApiClient client(dir_ / "g.sock");
  EXPECT_FALSE(client.Call("GET", "vm.info", std::nullopt, 2s).ok());
  CannedServer huge(dir_ / "h.sock", "HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n");
  ApiClient big(dir_ / "h.sock");
  auto answer = big.Call("GET", "vm.info", std::nullopt, 2s);
  ASSERT_FALSE(answer.ok());
}

// Accepts one connection on `path` and reads one request with recvmsg, keeping every
// descriptor that arrives as SCM_RIGHTS and the byte offset it came with; answers
// 204. What CH's HTTP server does with vm.add-net's TAPs.
class FdServer {
 public:
  explicit FdServer(const std::string& path)
      : server_(path, [this](UniqueFd client) { Serve(client.get()); }) {}
  void Join() { server_.Join(); }

  std::string request;
  std::vector<UniqueFd> fds;
  std::vector<size_t> fd_offsets;  // bytes of the request received before each fd's message
  bool truncated = false;

 private:
  void Serve(int client) {
    size_t wanted = std::string::npos;
    while (request.size() < wanted) {
      char buffer[512];
      auto received = ReceiveWithFds(client, buffer, 32);
      if (!received.ok() || received->size == 0) return;
      truncated |= received->fds_dropped;
      for (UniqueFd& fd : received->fds) {
        fds.push_back(std::move(fd));
        fd_offsets.push_back(request.size());
      }
      request.append(buffer, received->size);
      const size_t head_end = request.find("\r\n\r\n");
      if (head_end != std::string::npos && wanted == std::string::npos) {
        const size_t length_at = request.find("Content-Length: ");
        const size_t length = length_at < head_end ? std::stoul(request.substr(length_at + 16)) : 0;
        wanted = head_end + 4 + length;
      }
    }
    const std::string answer = "HTTP/1.1 204 No Content\r\n\r\n";
    (void)!::send(client, answer.data(), answer.size(), MSG_NOSIGNAL);
  }

  OneConnectionServer server_;  // last: its thread uses the members above
};

bool SameFile(int a, int b) {
  struct stat one {};
  struct stat two {};
  return ::fstat(a, &one) == 0 && ::fstat(b, &two) == 0 && one.st_dev == two.st_dev &&
         one.st_ino == two.st_ino;
}

TEST_F(ApiClientTest, SendsDescriptorsWithTheRequestsFirstBytesInOrder) {
  FdServer server(socket_);
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  // A body larger than one read of the server: the descriptors still come first.
  const std::string body = "{\"id\":\"net0\",\"pad\":\"" + std::string(3000, 'x') + "\"}";
  ApiClient client(socket_);
  auto answer = client.Call("PUT", "vm.add-net", body, 5s, {write_end.get(), read_end.get()});
  ASSERT_TRUE(answer.ok()) << answer.error().message;
  server.Join();
  EXPECT_FALSE(server.truncated);
  ASSERT_EQ(server.fds.size(), 2u);
  EXPECT_EQ(server.fd_offsets, (std::vector<size_t>{0, 0}));
  EXPECT_TRUE(SameFile(server.fds[0].get(), write_end.get()));
  EXPECT_TRUE(SameFile(server.fds[1].get(), read_end.get()));
  EXPECT_THAT(server.request, HasSubstr("PUT /api/v1/vm.add-net HTTP/1.1\r\n"));
  EXPECT_THAT(server.request, HasSubstr(body));
  // The caller still owns its descriptors.
  EXPECT_EQ(::fcntl(write_end.get(), F_GETFD), FD_CLOEXEC);
}

TEST_F(ApiClientTest, CallsWithoutDescriptorsSendNone) {
  FdServer server(socket_);
  ApiClient client(socket_);
  ASSERT_TRUE(client.Call("PUT", "vm.boot", std::nullopt, 5s).ok());
  server.Join();
  EXPECT_TRUE(server.fds.empty());
}

TEST_F(ApiClientTest, RefusesTooManyOrClosedDescriptors) {
  ApiClient client(dir_ / "none.sock");
  auto many =
      client.Call("PUT", "vm.add-net", std::string("{}"), 1s, std::vector<int>(kMaxApiFds + 1, 0));
  ASSERT_FALSE(many.ok());
  EXPECT_EQ(many.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(many.error().message, HasSubstr("vm.add-net"));
  EXPECT_FALSE(client.Call("PUT", "vm.add-net", std::string("{}"), 1s, {-1}).ok());
}

// The plugin's path for a CNI sandbox: the TAP opened inside a network namespace of
// the test's own (plugins::OpenTapInNetns, no setns of this thread) and handed over;
// the server's descriptor is that TAP (TUNGETIFF names it) though the server never
// was in that namespace.
TEST_F(ApiClientTest, HandsOverATapOpenedInAnotherNamespace) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (a network namespace and a TAP)";
  const std::string netns = dir_ / "ns";
  ASSERT_TRUE(plugins::CreateNetns(netns).ok());
  Status made = plugins::RunInNetns(netns, []() -> Status {
    UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    ifreq request{};
    std::strncpy(request.ifr_name, "tap0", IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (!tun || ::ioctl(tun.get(), TUNSETIFF, &request) != 0 ||
        ::ioctl(tun.get(), TUNSETPERSIST, 1) != 0) {
      return MakeError(ErrorCode::kInternal, "cannot make tap0");
    }
    return Status::Ok();
  });
  ASSERT_TRUE(made.ok()) << made.error().message;
  {
    auto tap = plugins::OpenTapInNetns(netns, "tap0");
    ASSERT_TRUE(tap.ok()) << tap.error().message;
    FdServer server(socket_);
    ApiClient client(socket_);
    ASSERT_TRUE(client.Call("PUT", "vm.add-net", std::string("{}"), 5s, {tap->get()}).ok());
    server.Join();
    ASSERT_EQ(server.fds.size(), 1u);
    ifreq asked{};
    ASSERT_EQ(::ioctl(server.fds[0].get(), TUNGETIFF, &asked), 0) << std::strerror(errno);
    EXPECT_STREQ(asked.ifr_name, "tap0");
    EXPECT_TRUE(asked.ifr_flags & IFF_TAP);
    EXPECT_TRUE(asked.ifr_flags & IFF_VNET_HDR);
    // This process's namespace has no tap0: the descriptor is the only way to it.
    EXPECT_EQ(::if_nametoindex("tap0"), 0u);
  }
  EXPECT_TRUE(plugins::RemoveNetns(netns).ok());
}

}  // namespace
}  // namespace beaconbox::cloudhv
