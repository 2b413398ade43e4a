#include "host/shim/port_forward.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/base/errno_error.h"
#include "host/shim/stop_aware_io.h"

namespace beaconbox::shim {
namespace {

using namespace std::chrono_literals;

constexpr char kGuestService[] = "beaconbox.guest.v1.Guest";
constexpr char kTable[] = "beaconbox_portfwd";
// SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and IP6T_SO_ORIGINAL_DST
// (linux/netfilter_ipv6/ip6_tables.h) are both 80; those headers clash with glibc's.
constexpr int kSoOriginalDst = 80;
// One call's bytes each way, and how long the guest waits for some.
constexpr size_t kChunk = 256 * 1024;
constexpr auto kGuestWait = 30s;
constexpr auto kGuestCallTimeout = kGuestWait + 30s;

// Closes `fd` with a reset instead of an orderly FIN: the client learns the
// connection failed rather than that the stream ended.
void Reset(UniqueFd fd) {
  linger hard{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
}

// Waits until `fd` has `events` or `stop_fd` is readable; false for the latter.
bool WaitReady(int fd, short events, int stop_fd) {
  for (;;) {
    pollfd fds[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[1].revents != 0) return false;
    if (fds[0].revents != 0) return true;
  }
}

// Where nft is on Debian (the shim's PATH under containerd may not have sbin).
const char* NftBinary() {
  for (const char* path : {"/usr/sbin/nft", "/sbin/nft", "/usr/local/sbin/nft"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return nullptr;
}

// Runs `nft -f /dev/stdin` with `commands` inside the namespace `netns_fd`.
Status RunNftIn(int netns_fd, const std::string& commands) {
  const char* nft = NftBinary();
  if (nft == nullptr) {
    return MakeError(ErrorCode::kNotFound,
                     "nft not found in /usr/sbin or /sbin: install Debian's nftables package");
  }
  int in[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return ErrnoError("pipe", "");
  UniqueFd in_read(in[0]), in_write(in[1]);
  if (::pipe2(err, O_CLOEXEC) != 0) return ErrnoError("pipe", "");
  UniqueFd err_read(err[0]), err_write(err[1]);
  const char* argv[] = {"nft", "-f", "/dev/stdin", nullptr};
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork", nft);
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    if (::setns(netns_fd, CLONE_NEWNET) != 0) ::_exit(126);
    ::dup2(in_read.get(), 0);
    ::dup2(err_write.get(), 1);
    ::dup2(err_write.get(), 2);
    ::execv(nft, const_cast<char* const*>(argv));
    ::_exit(127);
  }
  in_read.Reset();
  err_write.Reset();
  (void)!::write(in_write.get(), commands.data(), commands.size());
  in_write.Reset();
  std::string said;
  char buffer[1024];
  ssize_t n;
  while (said.size() < 4096 && (n = ::read(err_read.get(), buffer, sizeof(buffer))) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    said.append(buffer, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  for (char& c : said) {
    if (c == '\n') c = ' ';
  }
  return MakeError(ErrorCode::kInternal,
                   std::string(nft) + " in the pod's network namespace failed (" +
                       (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                          : std::string("killed")) +
                       "): " + said.substr(0, 400));
}

// A listening TCP socket on loopback address `address` with a port the kernel picks.
Result<UniqueFd> ListenLoopback(int family) {
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return ErrnoError("socket", "port-forward listener");
  sockaddr_storage storage{};
  socklen_t size;
  if (family == AF_INET) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
    v4->sin_family = AF_INET;
    v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    size = sizeof(*v4);
  } else {
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
    v6->sin6_family = AF_INET6;
    v6->sin6_addr = in6addr_loopback;
    size = sizeof(*v6);
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&storage), size) != 0) {
    return ErrnoError("bind", family == AF_INET ? "127.0.0.1" : "::1");
  }
  if (::listen(fd.get(), 64) != 0) return ErrnoError("listen", "port-forward listener");
  return fd;
}

uint16_t LocalPortOf(int fd) {
  sockaddr_storage storage{};
  socklen_t size = sizeof(storage);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &size) != 0) return 0;
  if (storage.ss_family == AF_INET)
    return ntohs(reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port);
}

}  // namespace

std::string PortForwardRuleset(uint16_t port4, uint16_t port6) {
  // Flushed first so that a shim started again on the same pod (containerd restart)
  // replaces the rules of its predecessor instead of adding to them.
  std::string ruleset = "table inet " + std::string(kTable) + "\n";
  ruleset += "delete table inet " + std::string(kTable) + "\n";
  ruleset += "table inet " + std::string(kTable) + " {\n";
  ruleset += "  chain output {\n    type nat hook output priority -100; policy accept;\n";
  ruleset += "    ip daddr 127.0.0.1 tcp dport != " + std::to_string(port4) +
             " redirect to :" + std::to_string(port4) + "\n";
  if (port6 != 0) {
    ruleset += "    ip6 daddr ::1 tcp dport != " + std::to_string(port6) +
               " redirect to :" + std::to_string(port6) + "\n";
  }
  ruleset += "  }\n}\n";
  return ruleset;
}

uint16_t OriginalPortOf(int fd) {
  sockaddr_storage storage{};
  socklen_t size = sizeof(storage);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &size) != 0) return 0;
  sockaddr_storage original{};
  socklen_t original_size = sizeof(original);
  if (storage.ss_family == AF_INET) {
    if (::getsockopt(fd, SOL_IP, kSoOriginalDst, &original, &original_size) != 0 ||
        original.ss_family != AF_INET) {
      return 0;
    }
    return ntohs(reinterpret_cast<sockaddr_in*>(&original)->sin_port);
  }
  if (::getsockopt(fd, SOL_IPV6, kSoOriginalDst, &original, &original_size) != 0 ||
      original.ss_family != AF_INET6) {
    return 0;
  }
  return ntohs(reinterpret_cast<sockaddr_in6*>(&original)->sin6_port);
}

PortForwardRelay::PortForwardRelay(std::string netns_path, std::shared_ptr<GuestClient> guest,
                                   std::string pod_id)
    : netns_path_(std::move(netns_path)),
      guest_(std::move(guest)),
      pod_id_(std::move(pod_id)),
      canceller_(std::make_shared<ttrpc::Canceller>()),
      stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

Result<std::unique_ptr<PortForwardRelay>> PortForwardRelay::Start(
    const std::string& netns_path, std::shared_ptr<GuestClient> guest, std::string pod_id) {
  UniqueFd netns(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!netns) return ErrnoError("open", netns_path);
  std::unique_ptr<PortForwardRelay> relay(
      new PortForwardRelay(netns_path, std::move(guest), std::move(pod_id)));
  if (!relay->stop_fd_) return ErrnoError("eventfd", "port-forward");
  // Sockets belong to the namespace they are made in: make them on a thread of their
  // own that joins the pod's, so no other thread of the shim ever changes namespace.
  Status made = Status::Ok();
  std::thread([&] {
    if (::setns(netns.get(), CLONE_NEWNET) != 0) {
      made = ErrnoError("setns", netns_path);
      return;
    }
    auto v4 = ListenLoopback(AF_INET);
    if (!v4.ok()) {
      made = v4.error();
      return;
    }
    relay->listener4_ = std::move(*v4);
    // Without IPv6 in the namespace (no ::1) containerd's tcp6 dial fails anyway.
    if (auto v6 = ListenLoopback(AF_INET6); v6.ok()) relay->listener6_ = std::move(*v6);
  }).join();
  BBX_RETURN_IF_ERROR(made);
  const uint16_t port4 = LocalPortOf(relay->listener4_.get());
  const uint16_t port6 = relay->listener6_ ? LocalPortOf(relay->listener6_.get()) : 0;
  BBX_RETURN_IF_ERROR(RunNftIn(netns.get(), PortForwardRuleset(port4, port6)));
  relay->table_installed_ = true;
  relay->acceptor_ = std::thread([r = relay.get()] { r->AcceptLoop(); });
  spdlog::info("{}: port-forward relay in {} on 127.0.0.1:{}{}", relay->pod_id_, netns_path, port4,
               port6 != 0 ? " and [::1]:" + std::to_string(port6) : std::string());
  return relay;
}

PortForwardRelay::~PortForwardRelay() { Stop(); }

ttrpc::RpcStatus PortForwardRelay::CallGuest(std::string_view method,
                                             const google::protobuf::MessageLite& request,
                                             google::protobuf::MessageLite* response) {
  ttrpc::CallOptions options;
  options.timeout = kGuestCallTimeout;
  options.canceller = canceller_;
  return ttrpc::CallProto(guest_->connection(), kGuestService, method, request, response, options);
}

void PortForwardRelay::AcceptLoop() {
  while (!stopping_) {
    pollfd fds[3] = {{stop_fd_.get(), POLLIN, 0},
                     {listener4_.get(), POLLIN, 0},
                     {listener6_ ? listener6_.get() : -1, POLLIN, 0}};
    int n = ::poll(fds, 3, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[0].revents != 0) break;
    for (int i = 1; i < 3; ++i) {
      if (fds[i].revents == 0) continue;
      UniqueFd connection(::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!connection) continue;
      std::lock_guard lock(mutex_);
      if (open_connections_.size() >= kMaxConnections) {
        spdlog::warn("{}: port-forward: {} connections are open, resetting another", pod_id_,
                     kMaxConnections);
        Reset(std::move(connection));
        continue;
      }
      open_connections_.push_back(connection.get());
      // Detached: Stop waits for open_connections_ to empty instead of joining.
      std::thread([this, fd = std::make_shared<UniqueFd>(std::move(connection))] {
        Forward(std::move(*fd));
      }).detach();
    }
  }
}

void PortForwardRelay::Forward(UniqueFd connection) {
  const int fd = connection.get();
  const uint16_t port = OriginalPortOf(fd);
  uint64_t stream_id = 0;
  bool opened = false;
  if (port != 0) {
    guestapi::PortOpenRequest open;
    open.set_port(port);
    guestapi::PortOpenResponse opened_reply;
    ttrpc::RpcStatus status = CallGuest("PortOpen", open, &opened_reply);
    if (status.ok()) {
      stream_id = opened_reply.stream_id();
      opened = true;
    } else {
      spdlog::info("{}: port-forward to {}: {}", pod_id_, port,
                   ErrorFromRpc(status, "guest PortOpen").message);
    }
  }
  if (opened) {
    // Host -> guest on its own thread; guest -> host here.
    std::thread upstream([&] {
      guestapi::PortWriteRequest write;
      write.set_stream_id(stream_id);
      write.set_wait_ms(static_cast<uint32_t>(kGuestWait.count() * 1000));
      guestapi::WriteInputResponse written;
      std::string buffer(64 * 1024, '\0');
      for (;;) {
        ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          if (!WaitReady(fd, POLLIN, stop_fd_.get())) return;
          continue;
        }
        if (n <= 0) break;  // EOF (or a reset): the client sent all it will
        std::string_view left(buffer.data(), static_cast<size_t>(n));
        while (!left.empty()) {
          write.set_data(left.data(), left.size());
          ttrpc::RpcStatus status = CallGuest("PortWrite", write, &written);
          if (status.code == ttrpc::Code::kDeadlineExceeded) continue;
          if (!status.ok()) {
            ::shutdown(fd, SHUT_RDWR);  // the guest's side is gone: end ours
            return;
          }
          left.remove_prefix(std::min<size_t>(written.written(), left.size()));
        }
      }
      guestapi::PortCloseRequest close;
      close.set_stream_id(stream_id);
      close.set_write_only(true);
      google::protobuf::Empty empty;
      (void)CallGuest("PortClose", close, &empty);
    });
    guestapi::PortReadRequest read;
    read.set_stream_id(stream_id);
    read.set_max_bytes(kChunk);
    read.set_wait_ms(static_cast<uint32_t>(kGuestWait.count() * 1000));
    guestapi::ReadOutputResponse chunk;
    bool clean_end = false;
    while (!stopping_) {
      ttrpc::RpcStatus status = CallGuest("PortRead", read, &chunk);
      if (status.code == ttrpc::Code::kDeadlineExceeded) continue;
      if (!status.ok()) break;
      if (chunk.data().size() > kChunk) break;  // more than asked: not a guest we trust
      if (!chunk.data().empty() && !WriteAll(fd, chunk.data(), stop_fd_.get())) break;
      if (chunk.eof()) {
        clean_end = true;
        break;
      }
    }
    if (clean_end) {
      ::shutdown(fd, SHUT_WR);  // the guest's end closed: the client reads EOF
    } else {
      ::shutdown(fd, SHUT_RDWR);
    }
    upstream.join();
    guestapi::PortCloseRequest close;
    close.set_stream_id(stream_id);
    google::protobuf::Empty empty;
    (void)CallGuest("PortClose", close, &empty);
  } else {
    Reset(std::move(connection));
  }
  // Erased before `connection` closes, so Stop never shuts down a reused descriptor.
  // Notified under the lock and nothing of `this` is touched after it: Stop (and
  // the destructor) can go on as soon as the lock is released.
  std::lock_guard lock(mutex_);
  std::erase(open_connections_, fd);
  if (open_connections_.empty()) idle_.notify_all();
}

void PortForwardRelay::Stop() {
  if (stopping_.exchange(true)) return;
  Signal(stop_fd_.get());
  canceller_->Cancel();
  {
    std::lock_guard lock(mutex_);
    for (int fd : open_connections_) ::shutdown(fd, SHUT_RDWR);
  }
  if (acceptor_.joinable()) acceptor_.join();
  {
    // No new connection threads after the acceptor: wait for the running ones.
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return open_connections_.empty(); });
  }
  listener4_.Reset();
  listener6_.Reset();
  if (table_installed_) {
    // The namespace goes with the pod (CRI removes it); while it is there, leave it
    // as CRI made it.
    UniqueFd netns(::open(netns_path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (netns) {
      if (Status removed = RunNftIn(netns.get(), "delete table inet " + std::string(kTable) + "\n");
          !removed.ok()) {
        spdlog::info("{}: port-forward table: {}", pod_id_, removed.error().message);
      }
    }
  }
}

}  // namespace beaconbox::shim
