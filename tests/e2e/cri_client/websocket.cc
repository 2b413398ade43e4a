#include "websocket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>

#include "common/base/errno_error.h"

namespace beaconbox::cri_client {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(v >> shift) & 63];
  }
  if (i + 1 == bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string RandomBytes(size_t count) {
  static std::random_device device;
  std::string out(count, '\0');
  for (char& c : out) c = static_cast<char>(device() & 0xff);
  return out;
}

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// The value of header NAME (lower case) in an HTTP answer's header block; "" if none.
std::string HeaderValue(const std::string& head, std::string_view name) {
  size_t at = head.find("\r\n");
  while (at != std::string::npos && at + 2 < head.size()) {
    size_t end = head.find("\r\n", at + 2);
    std::string line = head.substr(at + 2, end == std::string::npos ? end : end - at - 2);
    auto colon = line.find(':');
    if (colon != std::string::npos && Lower(line.substr(0, colon)) == name) {
      std::string value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
      return value;
    }
    at = end;
  }
  return "";
}

Error BadUrl(std::string_view url, std::string_view why) {
  return MakeError(ErrorCode::kInvalidArgument,
                   "streaming URL '" + std::string(url) + "': " + std::string(why) +
                       " (containerd's streaming server answers http://ADDRESS:PORT/...)");
}

}  // namespace

Result<StreamUrl> ParseStreamUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return BadUrl(url, "not http:// (a TLS streaming server is not supported by bbx-cri)");
  }
  std::string_view rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  StreamUrl out;
  out.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  size_t colon;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return BadUrl(url, "unclosed '['");
    out.host = std::string(authority.substr(1, close - 1));
    colon = close + 1 < authority.size() && authority[close + 1] == ':' ? close + 1
                                                                        : std::string_view::npos;
  } else {
    colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
  }
  if (colon == std::string_view::npos) return BadUrl(url, "no port");
  std::string port(authority.substr(colon + 1));
  char* end = nullptr;
  long value = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || value < 1 || value > 65535) {
    return BadUrl(url, "port '" + port + "' is not 1 to 65535");
  }
  out.port = static_cast<uint16_t>(value);
  return out;
}

Result<WebSocket> WebSocket::Connect(const StreamUrl& url, std::string_view protocol,
                                     int timeout_ms) {
  int64_t deadline = NowMs() + timeout_ms;
  sockaddr_storage address{};
  socklen_t length = 0;
  int family;
  if (auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
      inet_pton(AF_INET, url.host.c_str(), &v4->sin_addr) == 1) {
    family = v4->sin_family = AF_INET;
    v4->sin_port = htons(url.port);
    length = sizeof(*v4);
  } else if (auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
             inet_pton(AF_INET6, url.host.c_str(), &v6->sin6_addr) == 1) {
    family = v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(url.port);
    length = sizeof(*v6);
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     "streaming server host '" + url.host + "' is not an IP address");
  }
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError("socket", "for the streaming server");
  std::string where = url.host + ":" + std::to_string(url.port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
    return ErrnoError("connect", where + " (run bbx-cri in containerd's network namespace)");
  }
  return Handshake(std::move(fd), where, url.target, protocol,
                   static_cast<int>(std::max<int64_t>(deadline - NowMs(), 1)));
}

Result<WebSocket> WebSocket::Handshake(UniqueFd fd, const std::string& where,
                                       const std::string& target, std::string_view protocol,
                                       int timeout_ms) {
  int64_t deadline = NowMs() + timeout_ms;
  WebSocket socket(std::move(fd));
  std::string key = Base64(RandomBytes(16));
  std::string request = "GET " + target +
                        " HTTP/1.1\r\n"
                        "Host: " +
                        where +
                        "\r\n"
                        "Upgrade: websocket\r\n"
                        "Connection: Upgrade\r\n"
                        "Origin: http://" +
                        where +
                        "\r\n"
                        "Sec-WebSocket-Key: " +
                        key +
                        "\r\n"
                        "Sec-WebSocket-Version: 13\r\n"
                        "Sec-WebSocket-Protocol: " +
                        std::string(protocol) + "\r\n\r\n";
  BBX_RETURN_IF_ERROR(socket.WriteAll(request));
  // The answer's head, bounded; what follows it already belongs to the frames.
  size_t end;
  while ((end = socket.buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (socket.buffer_.size() > 16384) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "the streaming server's handshake answer has no end within 16 KiB");
    }
    BBX_ASSIGN_OR_RETURN(bool more, socket.Fill(socket.buffer_.size() + 1, deadline));
    if (!more) {
      return MakeError(ErrorCode::kUnavailable,
                       "the streaming server at " + where + " closed during the handshake");
    }
  }
  std::string head = socket.buffer_.substr(0, end + 2);
  socket.buffer_.erase(0, end + 4);
  std::string status_line = head.substr(0, head.find("\r\n"));
  if (status_line.rfind("HTTP/1.1 101", 0) != 0) {
    // The body says why (e.g. an unknown or used token); it is not read.
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the streaming server refused the WebSocket upgrade: '" + status_line + "'");
  }
  if (Lower(HeaderValue(head, "upgrade")) != "websocket" ||
      HeaderValue(head, "sec-websocket-accept").empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the streaming server's 101 answer is no WebSocket upgrade");
  }
  std::string chosen = HeaderValue(head, "sec-websocket-protocol");
  if (chosen != protocol) {
    return MakeError(
        ErrorCode::kFailedPrecondition,
        "the streaming server chose subprotocol '" + chosen + "', not " + std::string(protocol));
  }
  return socket;
}

Status WebSocket::WriteAll(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("send", "to the streaming server");
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Result<bool> WebSocket::Fill(size_t count, int64_t deadline_ms) {
  char chunk[16384];
  while (buffer_.size() < count) {
    int64_t left = deadline_ms - NowMs();
    if (left <= 0) {
      return MakeError(ErrorCode::kTimeout, "the streaming server sent nothing in time");
    }
    pollfd p{fd_.get(), POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return ErrnoError("poll", "the streaming connection");
    if (ready == 0) continue;
    ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == ECONNRESET) return false;
    if (n < 0) return ErrnoError("recv", "from the streaming server");
    if (n == 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
  }
  return true;
}

Status WebSocket::SendFrame(uint8_t opcode, std::string_view payload) {
  std::string frame;
  frame += static_cast<char>(0x80 | opcode);
  if (payload.size() < 126) {
    frame += static_cast<char>(0x80 | payload.size());
  } else if (payload.size() <= 0xffff) {
    frame += static_cast<char>(0x80 | 126);
    frame += static_cast<char>(payload.size() >> 8);
    frame += static_cast<char>(payload.size() & 0xff);
  } else {
    frame += static_cast<char>(0x80 | 127);
    for (int shift = 56; shift >= 0; shift -= 8) {
      frame += static_cast<char>((static_cast<uint64_t>(payload.size()) >> shift) & 0xff);
    }
  }
  std::string mask = RandomBytes(4);
  frame += mask;
  for (size_t i = 0; i < payload.size(); ++i) frame += static_cast<char>(payload[i] ^ mask[i % 4]);
  return WriteAll(frame);
}

Status WebSocket::SendBinary(std::string_view payload) { return SendFrame(0x2, payload); }

Result<std::optional<std::string>> WebSocket::Receive(int timeout_ms) {
  if (closed_) return std::optional<std::string>();
  int64_t deadline = NowMs() + timeout_ms;
  std::string message;
  bool in_message = false;
  while (true) {
    BBX_ASSIGN_OR_RETURN(bool more, Fill(2, deadline));
    if (!more) {
      closed_ = true;
      return std::optional<std::string>();
    }
    uint8_t first = static_cast<uint8_t>(buffer_[0]), second = static_cast<uint8_t>(buffer_[1]);
    bool fin = first & 0x80, masked = second & 0x80;
    uint8_t opcode = first & 0x0f;
    size_t header = 2;
    uint64_t length = second & 0x7f;
    if (length >= 126) {
      size_t extra = length == 126 ? 2 : 8;
      BBX_ASSIGN_OR_RETURN(more, Fill(2 + extra, deadline));
      if (!more) {
        closed_ = true;
        return std::optional<std::string>();
      }
      length = 0;
      for (size_t i = 0; i < extra; ++i) length = (length << 8) | uint8_t(buffer_[2 + i]);
      header += extra;
    }
    if (length > kMaxMessage || message.size() + length > kMaxMessage) {
      return MakeError(ErrorCode::kExhausted, "the streaming server sent a message over " +
                                                  std::to_string(kMaxMessage) + " bytes");
    }
    if (masked) header += 4;
    BBX_ASSIGN_OR_RETURN(more, Fill(header + length, deadline));
    if (!more) {
      closed_ = true;
      return std::optional<std::string>();
    }
    std::string payload = buffer_.substr(header, length);
    if (masked) {
      std::string key = buffer_.substr(header - 4, 4);
      for (size_t i = 0; i < payload.size(); ++i) payload[i] ^= key[i % 4];
    }
    buffer_.erase(0, header + length);
    switch (opcode) {
      case 0x0:  // continuation
        if (!in_message) {
          return MakeError(ErrorCode::kInvalidArgument,
                           "the streaming server sent a continuation frame outside a message");
        }
        message += payload;
        break;
      case 0x1:
      case 0x2:
        if (in_message) {
          return MakeError(ErrorCode::kInvalidArgument,
                           "the streaming server began a message inside another");
        }
        in_message = true;
        message = std::move(payload);
        break;
      case 0x8:  // close: answer it, then the connection ends
        (void)SendFrame(0x8, payload.substr(0, 2));
        closed_ = true;
        return std::optional<std::string>();
      case 0x9:
        BBX_RETURN_IF_ERROR(SendFrame(0xa, payload));
        continue;
      case 0xa:
        continue;
      default:
        return MakeError(ErrorCode::kInvalidArgument,
                         "the streaming server sent frame opcode " + std::to_string(opcode));
    }
    if (fin) return std::optional<std::string>(std::move(message));
  }
}

void WebSocket::Close() {
  if (!closed_ && fd_) (void)SendFrame(0x8, std::string("\x03\xe8", 2));
  closed_ = true;
  fd_.Reset();
}

}  // namespace beaconbox::cri_client
