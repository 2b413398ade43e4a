// The REST client: error mapping to one line naming the call, and real HTTP/1.1
// exchanges with a canned server on a unix socket (timeouts, bodies, statuses).
#include "plugins/vmm-cloudhypervisor/ch_api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "common/base/unique_fd.h"
#include "tests/plugins/common/temp_dir.h"

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

// Accepts one connection on `path`, reads the request head (and body) and answers
// `answer` verbatim (after `delay`).
class CannedServer {
 public:
  CannedServer(const std::string& path, std::string answer, std::chrono::milliseconds delay = 0ms) {
    listen_.Reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listen_.get(), 1), 0);
    thread_ = std::thread([this, answer, delay] {
      UniqueFd client(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!client) return;
      char buffer[4096];
      while (request_.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(client.get(), buffer, sizeof(buffer));
        if (n <= 0) return;
        request_.append(buffer, static_cast<size_t>(n));
      }
      std::this_thread::sleep_for(delay);
      (void)!::send(client.get(), answer.data(), answer.size(), MSG_NOSIGNAL);
      std::this_thread::sleep_for(100ms);
    });
  }
  ~CannedServer() {
    ::shutdown(listen_.get(), SHUT_RDWR);
    thread_.join();
  }
  std::string request() {
    thread_.join();
    thread_ = std::thread([] {});
    return request_;
  }

 private:
  UniqueFd listen_;
  std::thread thread_;
  std::string request_;
};

TEST(ApiClient, PutsJsonAndReadsTheAnswer) {
  plugins::testing::TempDir dir;
  CannedServer server(dir / "api.sock",
                      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                      "18\r\n\r\n{\"version\":\"v48\"}\n");
  ApiClient client(dir / "api.sock");
  auto body = client.Call("PUT", "vm.create", std::string("{\"a\":1}"), 5s);
  ASSERT_TRUE(body.ok()) << body.error().message;
  EXPECT_EQ(*body, "{\"version\":\"v48\"}\n");
  std::string request = server.request();
  EXPECT_THAT(request, HasSubstr("PUT /api/v1/vm.create HTTP/1.1\r\n"));
  EXPECT_THAT(request, HasSubstr("Content-Type: application/json"));
  EXPECT_EQ(client.timings().at("vm.create").calls, 1u);
}

TEST(ApiClient, ErrorStatusBecomesOneLine) {
  plugins::testing::TempDir dir;
  CannedServer server(
      dir / "api.sock",
      "HTTP/1.1 400 Bad Request\r\nContent-Length: 25\r\n\r\nError from API: bad cpus\n");
  ApiClient client(dir / "api.sock");
  auto body = client.Call("PUT", "vm.create", std::string("{}"), 5s);
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.error().message,
            "cloud-hypervisor API vm.create: HTTP 400 Bad Request: Error from API: bad cpus");
}

TEST(ApiClient, NoServerAndTimeoutNameTheCall) {
  plugins::testing::TempDir dir;
  ApiClient absent(dir / "none.sock");
  auto refused = absent.Call("GET", "vmm.ping", std::nullopt, 1s);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(refused.error().message, HasSubstr("vmm.ping"));

  CannedServer slow(dir / "slow.sock", "HTTP/1.1 204 No Content\r\n\r\n", 2s);
  ApiClient client(dir / "slow.sock");
  auto timed_out = client.Call("PUT", "vm.boot", std::nullopt, 200ms);
  ASSERT_FALSE(timed_out.ok());
  EXPECT_EQ(timed_out.error().code, ErrorCode::kTimeout);
  EXPECT_THAT(timed_out.error().message, HasSubstr("vm.boot"));
}

TEST(ApiClient, RefusesGarbageAndHugeBodies) {
  plugins::testing::TempDir dir;
  CannedServer garbage(dir / "g.sock", "SSH-2.0-nope\r\n\r\n");
  ApiClient client(dir / "g.sock");
  EXPECT_FALSE(client.Call("GET", "vm.info", std::nullopt, 2s).ok());
  CannedServer huge(dir / "h.sock", "HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n");
  ApiClient big(dir / "h.sock");
  auto answer = big.Call("GET", "vm.info", std::nullopt, 2s);
  ASSERT_FALSE(answer.ok());
}

}  // namespace
}  // namespace beaconbox::cloudhv
