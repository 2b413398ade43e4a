// A minimal QMP client: the capabilities handshake and one command at a time.
// QEMU's replies are bounded: a line longer than kMaxLine ends the session, and
// every wait has a deadline.
#pragma once

#include <chrono>
#include <string>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox::qemu {

class QmpClient {
 public:
  static constexpr size_t kMaxLine = 1 << 20;

  // Connects to QEMU's QMP socket and negotiates capabilities.
  static Result<QmpClient> Connect(const std::string& socket_path,
                                   std::chrono::milliseconds timeout);

  // Runs `command` (e.g. "quit", "stop", "cont") with `arguments` (a JSON object as
  // text, empty for none) and returns the reply's "return" value as JSON text;
  // asynchronous events in between are skipped.
  Result<std::string> Call(const std::string& command, const std::string& arguments,
                           std::chrono::milliseconds timeout);
  // As Call, with `fd` sent along as SCM_RIGHTS (e.g. "getfd", which names it for
  // later commands: netdev_add's "fd"). The caller keeps and closes its `fd`.
  Result<std::string> CallWithFd(const std::string& command, const std::string& arguments, int fd,
                                 std::chrono::milliseconds timeout);
  Status Execute(const std::string& command, std::chrono::milliseconds timeout);

 private:
  explicit QmpClient(UniqueFd fd) : fd_(std::move(fd)) {}
  Result<std::string> ReadLine(std::chrono::steady_clock::time_point deadline);
  Status Send(const std::string& line, int fd = -1);

  UniqueFd fd_;
  std::string buffer_;
};

// QMP query-migrate: its status ("active", "completed", "failed", ...; empty when QEMU
// answered none) and its error-desc, bounded to one line of 200 bytes (empty if none).
struct MigrationState {
  std::string status;
  std::string error;
};
Result<MigrationState> QueryMigration(QmpClient& qmp);

// Runs QMP `migrate` to `uri` (e.g. "exec:cat > <file>" or "fd:<name>" from getfd) on a
// stopped VM and polls query-migrate until QEMU reports "completed". A failed or
// cancelled migration, or none completed within `timeout`, is an error naming it.
// The vCPUs stay stopped either way.
Status MigrateAndWait(QmpClient& qmp, const std::string& uri, std::chrono::milliseconds timeout);

}  // namespace beaconbox::qemu
