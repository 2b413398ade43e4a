// A small RFC 6455 WebSocket client over a plain TCP socket, for bbx-cri's streaming
// commands: containerd's CRI streaming server (the kubelet's streaming protocol) serves
// exec, attach and port-forward on http:// URLs of a loopback address in the test's
// network namespace, so no TLS, no proxies, no extensions. Client frames are masked
// as the RFC requires; the server's are read with a bound on their size.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox::cri_client {

// http://HOST:PORT/PATH?QUERY as containerd's streaming server answers (HOST an IPv4
// address or a bracketed IPv6 one).
struct StreamUrl {
  std::string host;
  uint16_t port = 0;
  std::string target;  // path and query, "/" at least
};
Result<StreamUrl> ParseStreamUrl(std::string_view url);

class WebSocket {
 public:
  // The largest message the client takes from the server.
  static constexpr size_t kMaxMessage = 16 << 20;

  // Connects, sends the opening handshake asking for PROTOCOL and checks the answer:
  // status 101 and PROTOCOL chosen. TIMEOUT_MS bounds the connect and the handshake.
  static Result<WebSocket> Connect(const StreamUrl& url, std::string_view protocol, int timeout_ms);
  // The handshake on a connected stream socket FD: HOST is the Host header's value,
  // TARGET the request's path and query.
  static Result<WebSocket> Handshake(UniqueFd fd, const std::string& host,
                                     const std::string& target, std::string_view protocol,
                                     int timeout_ms);

  // One binary message.
  Status SendBinary(std::string_view payload);
  // The next data message (text or binary, fragments joined; pings answered); nullopt
  // once the server closed the connection; kTimeout after TIMEOUT_MS.
  Result<std::optional<std::string>> Receive(int timeout_ms);
  // Sends a close frame (best effort) and closes the socket.
  void Close();

 private:
  explicit WebSocket(UniqueFd fd) : fd_(std::move(fd)) {}
  Status SendFrame(uint8_t opcode, std::string_view payload);
  Status WriteAll(std::string_view bytes);
  // Reads until buffer_ holds COUNT bytes; false when the peer closed first.
  Result<bool> Fill(size_t count, int64_t deadline_ms);

  UniqueFd fd_;
  std::string buffer_;
  bool closed_ = false;
};

}  // namespace beaconbox::cri_client
