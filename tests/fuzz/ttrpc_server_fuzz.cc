// Fuzz target: the bytes are what a client sends to a ttrpc Server over a socket --
// frames (header and body), Request messages, stream data, in any order. The server
// serves a few methods of each kind (unary, failing, throwing, oversize answer,
// bidirectional, client- and server-streaming) with small limits so that the
// oversize, back-pressure and handler-slot paths are reached by small inputs.
// Covers the frame reader (common/ttrpc/connection.cc), the Request decoding and the
// server's dispatch (common/ttrpc/ttrpc.cc).
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "common/ttrpc/ttrpc.h"
#include "tests/fuzz/fuzz_util.h"

namespace beaconbox::fuzz {
namespace {

using ttrpc::Code;
using ttrpc::RpcStatus;
using ttrpc::ServerContext;
using ttrpc::ServerStream;

constexpr char kService[] = "fuzz.Echo";

void Register(ttrpc::Server& server, std::shared_ptr<int> token) {
  server.RegisterUnary(kService, "Unary",
                       [token](ServerContext& context, std::string_view request, std::string* out) {
                         *out = std::string(request) + context.MetadataValue("key");
                         return RpcStatus{};
                       });
  server.RegisterUnary(kService, "Fail",
                       [token](ServerContext&, std::string_view request, std::string*) {
                         return RpcStatus{Code::kFailedPrecondition, std::string(request)};
                       });
  server.RegisterUnary(kService, "Throw",
                       [token](ServerContext&, std::string_view, std::string*) -> RpcStatus {
                         throw std::runtime_error("handler threw");
                       });
  server.RegisterUnary(kService, "Oversize",
                       [token](ServerContext&, std::string_view, std::string* out) {
                         out->assign(4096, 'x');  // larger than max_message_size below
                         return RpcStatus{};
                       });
  server.RegisterStream(kService, "Bidi", [token](ServerContext&, ServerStream& stream) {
    std::string message;
    while (stream.Recv(&message)) {
      if (!stream.Send(message)) break;
    }
    return RpcStatus{};
  });
  server.RegisterStream(
      kService, "ClientStream",
      [token](ServerContext&, ServerStream& stream) {
        std::string message;
        size_t count = 0;
        while (stream.Recv(&message)) ++count;
        stream.SetFinalResponse(std::to_string(count));
        return RpcStatus{};
      },
      ttrpc::StreamDesc{.client_streaming = true, .server_streaming = false});
  server.RegisterStream(
      kService, "ServerStream",
      [token](ServerContext& context, ServerStream& stream) {
        std::string message;
        if (!stream.Recv(&message)) return RpcStatus{Code::kInvalidArgument, "no request"};
        for (int i = 0; i < 3 && !context.cancelled(); ++i) {
          if (!stream.Send(message)) break;
        }
        return RpcStatus{};
      },
      ttrpc::StreamDesc{.client_streaming = false, .server_streaming = true});
}

}  // namespace
}  // namespace beaconbox::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace beaconbox;
  auto token = std::make_shared<int>(0);
  {
    ttrpc::Options options;
    options.max_message_size = 1024;
    options.max_concurrent_handlers = 2;
    options.handler_wait = std::chrono::milliseconds(5);
    ttrpc::Server server(options);
    fuzz::Register(server, token);
    auto [client, served] = fuzz::SocketPair();
    // The client: sends the input, then reads (and drops) answers until the server
    // closes its end. Reading keeps the server's writes from blocking.
    std::thread client_thread([fd = client.get(), data, size] {
      fuzz::WriteAll(fd, std::string_view(reinterpret_cast<const char*>(data), size));
      ::shutdown(fd, SHUT_WR);
      fuzz::Drain(fd);
    });
    server.ServeConnection(std::move(served));
    client_thread.join();
  }
  fuzz::WaitSoleOwner(token);
  return 0;
}
