#include "host/shim/oci_hooks.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/unique_fd.h"

extern char** environ;

namespace beaconbox::shim {
namespace {

using nlohmann::json;

constexpr size_t kMaxHooksPerKind = 256;
constexpr size_t kOutputTailBytes = 1024;

Result<std::vector<std::string>> Strings(const json& hook, const char* field,
                                         const std::string& who) {
  std::vector<std::string> out;
  auto it = hook.find(field);
  if (it == hook.end() || it->is_null()) return out;
  if (!it->is_array()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     who + ": \"" + field + "\" is not an array of strings: fix the spec's hooks");
  }
  for (const auto& item : *it) {
    if (!item.is_string()) {
      return MakeError(ErrorCode::kInvalidArgument, who + ": \"" + field +
                                                        "\" holds a non-string: fix the spec's "
                                                        "hooks");
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

Result<std::vector<OciHook>> ParseKind(const json& hooks, const char* kind) {
  std::vector<OciHook> out;
  auto it = hooks.find(kind);
  if (it == hooks.end() || it->is_null()) return out;
  if (!it->is_array() || it->size() > kMaxHooksPerKind) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string("hooks.") + kind + " is not an array of at most 256 hooks");
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const json& entry = (*it)[i];
    const std::string who = std::string("hooks.") + kind + "[" + std::to_string(i) + "]";
    if (!entry.is_object()) {
      return MakeError(ErrorCode::kInvalidArgument, who + " is not an object");
    }
    OciHook hook;
    auto path = entry.find("path");
    if (path == entry.end() || !path->is_string() || path->get<std::string>().empty() ||
        path->get<std::string>().front() != '/') {
      return MakeError(ErrorCode::kInvalidArgument,
                       who + ": \"path\" must be an absolute path of the host");
    }
    hook.path = path->get<std::string>();
    BBX_ASSIGN_OR_RETURN(hook.args, Strings(entry, "args", who));
    if (hook.args.empty()) hook.args.push_back(hook.path);
    hook.has_env = entry.contains("env") && !entry["env"].is_null();
    BBX_ASSIGN_OR_RETURN(hook.env, Strings(entry, "env", who));
    if (auto timeout = entry.find("timeout"); timeout != entry.end() && !timeout->is_null()) {
      if (!timeout->is_number_integer() || timeout->get<int64_t>() <= 0 ||
          timeout->get<int64_t>() > 86400) {
        return MakeError(ErrorCode::kInvalidArgument,
                         who + ": \"timeout\" must be a number of seconds from 1 to 86400");
      }
      hook.timeout_seconds = static_cast<int>(timeout->get<int64_t>());
    }
    out.push_back(std::move(hook));
  }
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// The last bytes the hook wrote, on one line.
std::string OutputTail(int fd) {
  const off_t size = ::lseek(fd, 0, SEEK_END);
  if (size <= 0) return "";
  const off_t from = size > off_t(kOutputTailBytes) ? size - off_t(kOutputTailBytes) : 0;
  std::string text(size_t(size - from), '\0');
  const ssize_t got = ::pread(fd, text.data(), text.size(), from);
  text.resize(got > 0 ? size_t(got) : 0);
  return PrintableOneLine(text);
}

}  // namespace

Result<OciHooks> ParseHostHooks(const json& hooks) {
  OciHooks out;
  if (hooks.is_null()) return out;
  if (!hooks.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "\"hooks\" in the spec is not an object");
  }
  BBX_ASSIGN_OR_RETURN(out.prestart, ParseKind(hooks, "prestart"));
  BBX_ASSIGN_OR_RETURN(out.create_runtime, ParseKind(hooks, "createRuntime"));
  BBX_ASSIGN_OR_RETURN(out.poststart, ParseKind(hooks, "poststart"));
  BBX_ASSIGN_OR_RETURN(out.poststop, ParseKind(hooks, "poststop"));
  BBX_ASSIGN_OR_RETURN(auto create_container, ParseKind(hooks, "createContainer"));
  if (!create_container.empty()) {
    return MakeError(ErrorCode::kNotImplemented,
                     "createContainer hook " + create_container.front().path +
                         ": it runs in the container's mount namespace on the host, which a "
                         "VM has not; use a createRuntime or startContainer hook");
  }
  return out;
}

std::string OciStateJson(const std::string& id, const std::string& status, uint32_t pid,
                         const std::string& bundle,
                         const std::map<std::string, std::string>& annotations) {
  json state = {{"ociVersion", "1.0.2"}, {"id", id}, {"status", status}, {"bundle", bundle}};
  if (pid != 0) state["pid"] = pid;
  if (!annotations.empty()) state["annotations"] = annotations;
  return state.dump(-1, ' ', false, json::error_handler_t::replace);
}

Status RunOciHook(const OciHook& hook, const std::string& state_json) {
  UniqueFd state(::memfd_create("oci-hook-state", MFD_CLOEXEC));
  UniqueFd output(::memfd_create("oci-hook-output", MFD_CLOEXEC));
  if (!state || !output) return ErrnoError("memfd_create for hook", hook.path);
  if (::write(state.get(), state_json.data(), state_json.size()) !=
          static_cast<ssize_t>(state_json.size()) ||
      ::lseek(state.get(), 0, SEEK_SET) != 0) {
    return ErrnoError("writing the state for hook", hook.path);
  }
  // Everything the child touches is made before fork: the shim has threads.
  std::vector<std::string> args = hook.args;
  std::vector<std::string> env = hook.env;
  std::vector<char*> argv = CStrings(args);
  std::vector<char*> envp = CStrings(env);
  char* const* child_env = hook.has_env ? envp.data() : environ;
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork for hook", hook.path);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    if (::dup2(state.get(), STDIN_FILENO) < 0 || ::dup2(output.get(), STDOUT_FILENO) < 0 ||
        ::dup2(output.get(), STDERR_FILENO) < 0) {
      _exit(127);
    }
    ::execve(hook.path.c_str(), argv.data(), child_env);
    // strerror is not async-signal-safe: the errno as a number (ENOENT = 2, EACCES = 13).
    char why[] = "execve failed: errno   ";
    const int error = errno;
    why[sizeof(why) - 3] = static_cast<char>('0' + (error / 10) % 10);
    why[sizeof(why) - 2] = static_cast<char>('0' + error % 10);
    (void)!::write(STDERR_FILENO, why, sizeof(why) - 1);
    _exit(127);
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(hook.timeout_seconds);
  int status = 0;
  bool timed_out = false;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, hook.timeout_seconds > 0 ? WNOHANG : 0);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) return ErrnoError("waitpid for hook", hook.path);
    if (hook.timeout_seconds > 0 && std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      timed_out = true;
      break;
    }
    if (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  std::string what =
      timed_out
          ? "did not exit within its timeout of " + std::to_string(hook.timeout_seconds) + " s"
      : WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                          : "was killed by signal " + std::to_string(WTERMSIG(status));
  std::string tail = OutputTail(output.get());
  return MakeError(ErrorCode::kInternal,
                   "hook " + hook.path + " " + what + (tail.empty() ? "" : ": " + tail));
}

ContainerHooks::ContainerHooks(OciHooks hooks, std::string id, std::string bundle,
                               std::map<std::string, std::string> annotations)
    : hooks_(std::move(hooks)),
      id_(std::move(id)),
      bundle_(std::move(bundle)),
      annotations_(std::move(annotations)) {}

Status ContainerHooks::RunCreate(uint32_t pid) const {
  const std::string state = OciStateJson(id_, "creating", pid, bundle_, annotations_);
  for (const auto* hooks : {&hooks_.prestart, &hooks_.create_runtime}) {
    const char* kind = hooks == &hooks_.prestart ? "prestart" : "createRuntime";
    for (const auto& hook : *hooks) {
      if (Status ran = RunOciHook(hook, state); !ran.ok()) {
        return ran.error().Wrap(std::string(kind) + " hook of container " + id_);
      }
    }
  }
  return Status::Ok();
}

void ContainerHooks::RunPoststart(uint32_t pid) const {
  RunLogged(hooks_.poststart, "poststart", "running", pid);
}

void ContainerHooks::RunPoststop(uint32_t pid) const {
  RunLogged(hooks_.poststop, "poststop", "stopped", pid);
}

void ContainerHooks::RunLogged(const std::vector<OciHook>& hooks, const char* kind,
                               const char* status, uint32_t pid) const {
  if (hooks.empty()) return;
  const std::string state = OciStateJson(id_, status, pid, bundle_, annotations_);
  for (const auto& hook : hooks) {
    if (Status ran = RunOciHook(hook, state); !ran.ok()) {
      spdlog::warn("{} hook of container {}: {}", kind, id_, ran.error().message);
    }
  }
}

}  // namespace beaconbox::shim
