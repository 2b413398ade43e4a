#include "plugins/vmm-qemu/qmp.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "common/base/bounded_json.h"
#include "common/base/errno_error.h"
#include "common/base/fd_passing.h"

namespace beaconbox::qemu {

using namespace std::chrono_literals;

Result<QmpClient> QmpClient::Connect(const std::string& socket_path,
                                     std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return MakeError(ErrorCode::kInvalidArgument, "QMP socket path too long: " + socket_path);
  }
  addr.sun_family = AF_UNIX;
  socket_path.copy(addr.sun_path, socket_path.size());
  UniqueFd fd;
  while (true) {
    fd.Reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) break;
    if (std::chrono::steady_clock::now() >= deadline) return ErrnoError("connect", socket_path);
    std::this_thread::sleep_for(10ms);
  }
  QmpClient client(std::move(fd));
  BBX_ASSIGN_OR_RETURN(std::string greeting, client.ReadLine(deadline));
  if (greeting.find("\"QMP\"") == std::string::npos) {
    return MakeError(ErrorCode::kInternal, "no QMP greeting on " + socket_path);
  }
  BBX_RETURN_IF_ERROR(
      client.Execute("qmp_capabilities", std::chrono::duration_cast<std::chrono::milliseconds>(
                                             deadline - std::chrono::steady_clock::now())));
  return client;
}

Status QmpClient::Send(const std::string& line, int fd) {
  std::string_view rest = line;
  if (fd >= 0 && !rest.empty()) {
    // The descriptor goes with the first byte of the command (QEMU takes it with the
    // bytes it reads and keeps it for the command they belong to).
    const int fds[] = {fd};
    Status sent = SendWithFds(fd_.get(), rest.substr(0, 1), fds);
    if (!sent.ok()) return sent.error().Wrap("sending a descriptor to QMP");
    rest.remove_prefix(1);
  }
  while (!rest.empty()) {
    ssize_t n = ::send(fd_.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("writing to QMP", "");
    rest.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Result<std::string> QmpClient::ReadLine(std::chrono::steady_clock::time_point deadline) {
  while (true) {
    if (auto newline = buffer_.find('\n'); newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    if (buffer_.size() > kMaxLine) {
      return MakeError(ErrorCode::kInternal, "QMP reply longer than 1 MiB");
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return MakeError(ErrorCode::kTimeout, "QMP did not answer in time");
    pollfd pfd{fd_.get(), POLLIN, 0};
    int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char chunk[4096];
    ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return MakeError(ErrorCode::kUnavailable, "QMP connection closed");
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

Result<std::string> QmpClient::Call(const std::string& command, const std::string& arguments,
                                    std::chrono::milliseconds timeout) {
  return CallWithFd(command, arguments, -1, timeout);
}

Result<std::string> QmpClient::CallWithFd(const std::string& command, const std::string& arguments,
                                          int fd, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  nlohmann::json request{{"execute", command}};
  if (!arguments.empty()) {
    BBX_ASSIGN_OR_RETURN(nlohmann::json parsed,
                         ParseBoundedJson(arguments, "QMP " + command + " arguments"));
    if (!parsed.is_object()) {
      return MakeError(ErrorCode::kInvalidArgument, "QMP " + command + ": arguments not an object");
    }
    request["arguments"] = std::move(parsed);
  }
  BBX_RETURN_IF_ERROR(Send(request.dump() + "\n", fd));
  while (true) {
    BBX_ASSIGN_OR_RETURN(std::string line, ReadLine(deadline));
    // QEMU's answers are bounded like anything else read from a socket.
    auto parsed = ParseBoundedJson(line, "QMP reply");
    if (!parsed.ok()) return parsed.error().Wrap("QMP " + command);
    nlohmann::json reply = std::move(*parsed);
    if (!reply.is_object()) continue;
    if (reply.contains("return")) return reply["return"].dump();
    if (reply.contains("error")) {
      std::string text = "unknown error";
      if (reply["error"].is_object() && reply["error"].contains("desc") &&
          reply["error"]["desc"].is_string()) {
        text = reply["error"]["desc"].get<std::string>();
      }
      return MakeError(ErrorCode::kInternal, "QMP " + command + ": " + text.substr(0, 200));
    }
    // {"event": ...}: not ours
  }
}

Status QmpClient::Execute(const std::string& command, std::chrono::milliseconds timeout) {
  auto reply = Call(command, "", timeout);
  if (!reply.ok()) return reply.error();
  return Status::Ok();
}

Result<MigrationState> QueryMigration(QmpClient& qmp) {
  BBX_ASSIGN_OR_RETURN(std::string reply, qmp.Call("query-migrate", "", 5s));
  BBX_ASSIGN_OR_RETURN(nlohmann::json info, ParseBoundedJson(reply, "QMP query-migrate"));
  MigrationState state;
  if (!info.is_object()) return state;
  if (info.contains("status") && info["status"].is_string()) {
    state.status = info["status"].get<std::string>();
  }
  if (info.contains("error-desc") && info["error-desc"].is_string()) {
    // QEMU's words: one line, bounded.
    for (char c : info["error-desc"].get<std::string>().substr(0, 200)) {
      state.error += (c == '\n' || c == '\r') ? ' ' : c;
    }
  }
  return state;
}

Status MigrateAndWait(QmpClient& qmp, const std::string& uri, std::chrono::milliseconds timeout) {
  using namespace std::chrono_literals;
  BBX_RETURN_IF_ERROR(qmp.Call("migrate", nlohmann::json{{"uri", uri}}.dump(), 10s));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    BBX_ASSIGN_OR_RETURN(MigrationState state, QueryMigration(qmp));
    if (state.status == "completed") return Status::Ok();
    if (state.status == "failed" || state.status == "cancelled") {
      return MakeError(ErrorCode::kInternal, "QEMU's migration " + state.status +
                                                 (state.error.empty() ? "" : ": " + state.error));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      (void)qmp.Call("migrate_cancel", "", 5s);
      return MakeError(ErrorCode::kTimeout, "QEMU's migration did not complete in " +
                                                std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(20ms);
  }
}

}  // namespace beaconbox::qemu
