// Fuzz target: the bytes are what a ttrpc server answers to a Client over a socket.
// The client has three calls in flight with known stream ids -- a server stream (1),
// a bidirectional stream (3) and a unary call (5) -- and the input follows their
// request frames: Response frames, stream data and end-of-stream flags for those ids
// or any other, garbage, oversize headers, a cut-off frame. Covers the frame reader
// (common/ttrpc/connection.cc) and the client's Response decoding and stream
// delivery (common/ttrpc/ttrpc.cc). Every call must end once the peer hangs up.
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "common/ttrpc/ttrpc.h"
#include "tests/fuzz/fuzz_util.h"

namespace beaconbox::fuzz {
namespace {

constexpr char kService[] = "fuzz.Echo";
constexpr size_t kHeaderSize = 10;

// Reads `count` whole frames (the client's requests); false if the client hung up.
bool ReadFrames(int fd, int count) {
  std::string buffer;
  auto fill = [&](size_t want) {
    while (buffer.size() < want) {
      char chunk[1024];
      ssize_t n = ::read(fd, chunk, std::min(sizeof(chunk), want - buffer.size()));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      buffer.append(chunk, static_cast<size_t>(n));
    }
    return true;
  };
  for (int i = 0; i < count; ++i) {
    buffer.clear();
    if (!fill(kHeaderSize)) return false;
    if (!fill(kHeaderSize + LoadBigEndian32(buffer.data()))) return false;
  }
  return true;
}

void DrainStream(ttrpc::ClientStream& stream) {
  std::string message;
  while (stream.Recv(&message)) {
  }
  stream.Finish();
}

}  // namespace
}  // namespace beaconbox::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace beaconbox;
  ttrpc::Options options;
  options.max_message_size = 1024;
  auto [ours, theirs] = fuzz::SocketPair();
  ttrpc::Client client(std::move(ours), options);

  // The server: takes the three requests, answers with the input, hangs up its
  // sending side, then drops whatever the client still sends.
  std::thread server([fd = theirs.get(), data, size] {
    if (fuzz::ReadFrames(fd, 3)) {
      fuzz::WriteAll(fd, std::string_view(reinterpret_cast<const char*>(data), size));
    }
    ::shutdown(fd, SHUT_WR);
    fuzz::Drain(fd);
  });

  auto server_stream = client.OpenStream(fuzz::kService, "ServerStream", "request",
                                         /*client_streaming=*/false);
  auto bidi = client.OpenStream(fuzz::kService, "Bidi");
  std::thread unary([&client] {
    std::string response;
    client.Call(fuzz::kService, "Unary", "request", &response);
  });
  std::thread server_stream_reader([&server_stream] {
    if (server_stream.ok()) fuzz::DrainStream(**server_stream);
  });
  if (bidi.ok()) {
    (*bidi)->Send("message");
    (void)(*bidi)->CloseSend();
    fuzz::DrainStream(**bidi);
  }
  server_stream_reader.join();
  unary.join();
  client.Close();
  server.join();
  return 0;
}
