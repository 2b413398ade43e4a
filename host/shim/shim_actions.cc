#include "host/shim/shim_actions.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <thread>

#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/unique_fd.h"
#include "host/log/log.h"
#include "host/shim/idle_memory.h"
#include "host/shim/plugin_backends.h"
#include "host/shim/pod_grouping.h"
#include "host/shim/runtime_layout.h"
#include "host/shim/sandbox.h"
#include "host/shim/sandbox_state.h"
#include "host/shim/shim_options.h"
#include "host/shim/task_service.h"
#include "host/shim/test_hooks.h"

namespace beaconbox::shim {
namespace {

namespace fs = std::filesystem;

// fd on which `start` hands the listening socket to the serving shim (as runc's
// shim does), so the address is bound before containerd reads it.
constexpr int kListenerFd = 3;

std::string BundleDir(const ShimFlags& flags) {
  if (!flags.bundle.empty()) return flags.bundle;
  std::error_code error;
  return fs::current_path(error).string();
}

ContainerKey KeyOf(const ShimFlags& flags) { return {flags.namespace_name, flags.id}; }

// The socket path in the bundle's address file ("" when none).
std::string ShimSocketOfBundle(const std::string& bundle) {
  auto address = ReadSmallFile(RuntimeLayout::AddressFilePath(bundle), 4096);
  if (address.ok() && address->starts_with("unix://")) return address->substr(7);
  return "";
}

// Removes the socket `path` unless a shim still serves on it: a pod's containers
// share their sandbox's shim, and the `delete` action of one of them must leave the
// pod's socket alone.
void RemoveShimSocketUnlessServing(const std::string& path) {
  if (!path.empty() && !ShimSocketAnswers(path)) ::unlink(path.c_str());
}

// The socket `start` bound for the container of `flags`: the bundle's address file
// names it; when that is gone, it is derived as `start` derived it. containerd 1.7
// removes the bundle in its own task Delete while its dead-shim cleanup may be running
// this `delete` action, so the address file can vanish under us. Without the bundle's
// annotations the container is taken for its own group: a pod app container's
// socket is its sandbox's, which the sandbox's own `delete` removes. `loaded_layout`
// is the layout of the plugins `delete` loaded; without it the config is read here.
std::string ShimSocketOf(const ShimFlags& flags, const RuntimeLayout* loaded_layout) {
  const std::string bundle = BundleDir(flags);
  if (std::string named = ShimSocketOfBundle(bundle); !named.empty()) return named;
  std::optional<RuntimeLayout> config_layout;
  if (loaded_layout == nullptr) {
    auto cfg = config::LoadConfig();
    if (!cfg.ok()) return "";
    config_layout = LayoutFromConfig(*cfg);
  }
  const RuntimeLayout& layout = loaded_layout != nullptr ? *loaded_layout : *config_layout;
  std::string grouping_id = flags.id;
  if (auto annotations = ReadBundleAnnotations(bundle); annotations.ok()) {
    if (auto id = GroupingIdOf(flags.id, *annotations); id.ok()) grouping_id = *id;
  }
  auto derived =
      layout.ShimSocketPath(flags.containerd_address, {flags.namespace_name, grouping_id});
  return derived.ok() ? *derived : "";
}

// The path the unix socket `fd` is bound to ("" when none): the serving shim removes
// the socket it serves on by this, whatever became of the bundle by then.
std::string BoundPathOf(int fd) {
  sockaddr_un addr{};
  socklen_t size = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size) != 0 ||
      addr.sun_family != AF_UNIX || size <= offsetof(sockaddr_un, sun_path) ||
      addr.sun_path[0] == '\0') {
    return "";
  }
  return std::string(addr.sun_path, strnlen(addr.sun_path, size - offsetof(sockaddr_un, sun_path)));
}

Result<UniqueFd> Listen(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "shim socket path " + path + " is too long: set a shorter paths.run_dir");
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError("socket", path);
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, path.size());
  ::unlink(path.c_str());  // a leftover of a shim that died; the name is ours
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError("bind", path);
  }
  ::chmod(path.c_str(), 0600);
  if (::listen(fd.get(), 16) != 0) return ErrnoError("listen", path);
  return fd;
}

void SetUpLogging(const ShimFlags& flags) {
  // containerd reads the shim's log from the FIFO "log" in the bundle; it already
  // holds the read side open, so opening for writing does not block.
  int log_fd = ::open("log", O_WRONLY | O_CLOEXEC | O_NONBLOCK);
  if (log_fd >= 0) {
    int blocking = ::fcntl(log_fd, F_GETFL) & ~O_NONBLOCK;
    ::fcntl(log_fd, F_SETFL, blocking);
    ::dup2(log_fd, STDERR_FILENO);
    ::close(log_fd);
  }
  // spdlog's default logger writes to stdout; the shim's log goes to stderr (the FIFO).
  (void)log::SetUpLogging({"beaconbox-shim " + flags.id, flags.debug ? "debug" : "info", ""});
}

// The config a runtime entry names (options ConfigPath, ctr --runtime-config-path)
// wins over BEACONBOX_CONFIG and the default for this container: `start` exports it to
// the serving shim it forks and records it in the bundle, where `delete` (run by
// containerd without options) finds it.
constexpr char kBundleConfigFile[] = "beaconbox-config-path";

Status UseConfigFromOptions(const ShimStartOptions& options, const std::string& bundle) {
  if (options.config_path.empty()) return Status::Ok();
  ::setenv(config::kConfigEnv, options.config_path.c_str(), 1);
  return WriteFileAtomic(bundle + "/" + kBundleConfigFile, options.config_path);
}

void UseConfigOfBundle(const std::string& bundle) {
  auto recorded = ReadSmallFile(bundle + "/" + kBundleConfigFile, 4096);
  if (recorded.ok() && !recorded->empty() && recorded->front() == '/') {
    ::setenv(config::kConfigEnv, recorded->c_str(), 1);
  }
}

Status ApplyStartOptions(pid_t shim_pid, const ShimStartOptions& options) {
  if (!options.shim_cgroup.empty()) {
    BBX_RETURN_IF_ERROR(JoinShimCgroup(shim_pid, options.shim_cgroup));
  }
  // Our parent is containerd, which runs the `start` action.
  return AdjustShimOomScore(shim_pid, ::getppid());
}

}  // namespace

Status RunStart(const ShimFlags& flags, const char* argv0) {
  // containerd writes the runtime options to stdin: runc's shim options are honoured
  // as runc's shim does (the shim cgroup), runtimeoptions' ConfigPath names the config.
  std::string options_bytes((std::istreambuf_iterator<char>(std::cin)),
                            std::istreambuf_iterator<char>());
  BBX_ASSIGN_OR_RETURN(ShimStartOptions start_options, ParseShimStartOptions(options_bytes));
  BBX_RETURN_IF_ERROR(UseConfigFromOptions(start_options, BundleDir(flags)));
  BBX_ASSIGN_OR_RETURN(config::Config cfg, config::LoadConfig());
  const RuntimeLayout layout = LayoutFromConfig(cfg);
  // The containers of a pod share the shim (and the VM) of its sandbox container,
  // as runc's shim groups them (pod_grouping.h).
  BBX_ASSIGN_OR_RETURN(auto annotations, ReadBundleAnnotations(BundleDir(flags)));
  BBX_ASSIGN_OR_RETURN(std::string grouping_id, GroupingIdOf(flags.id, annotations));
  BBX_ASSIGN_OR_RETURN(
      std::string socket_path,
      layout.ShimSocketPath(flags.containerd_address, {flags.namespace_name, grouping_id}));
  if (ShimSocketAnswers(socket_path)) {
    // The pod's shim serves already: containerd talks to it for this container too.
    std::string existing = "unix://" + socket_path;
    BBX_RETURN_IF_ERROR(
        WriteFileAtomic(RuntimeLayout::AddressFilePath(BundleDir(flags)), existing));
    std::fputs(existing.c_str(), stdout);
    std::fflush(stdout);
    return Status::Ok();
  }
  std::string socket_dir = fs::path(socket_path).parent_path().string();
  std::error_code error;
  fs::create_directories(socket_dir, error);
  if (error) {
    return MakeError(ErrorCode::kPermission, "creating " + socket_dir + ": " + error.message() +
                                                 " (config key paths.run_dir)");
  }
  BBX_ASSIGN_OR_RETURN(UniqueFd listener, Listen(socket_path));
  std::string address = "unix://" + socket_path;
  BBX_RETURN_IF_ERROR(WriteFileAtomic(RuntimeLayout::AddressFilePath(BundleDir(flags)), address));

  char self[4096];
  ssize_t self_len = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (self_len <= 0) return ErrnoError("readlink", "/proc/self/exe");
  self[self_len] = '\0';
  std::vector<std::string> args = {argv0,    "-namespace", flags.namespace_name,    "-id",
                                   flags.id, "-address",   flags.containerd_address};
  if (!flags.publish_binary.empty()) {
    args.insert(args.end(), {"-publish-binary", flags.publish_binary});
  }
  if (flags.debug) args.push_back("-debug");
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork", "shim");
  if (pid == 0) {
    // The serving shim: its own session, so containerd's signals to the `start`
    // process group do not reach it; the listener on fd 3; no stdio of containerd's.
    ::setsid();
    // dup2 onto itself keeps FD_CLOEXEC, so clear it explicitly either way.
    if (listener.get() != kListenerFd && ::dup2(listener.get(), kListenerFd) < 0) _exit(126);
    if (::fcntl(kListenerFd, F_SETFD, 0) != 0) _exit(126);
    int null_fd = ::open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
      ::dup2(null_fd, STDIN_FILENO);
      ::dup2(null_fd, STDOUT_FILENO);
      ::dup2(null_fd, STDERR_FILENO);
    }
    ::execv(self, argv.data());
    _exit(127);
  }
  // The shim cgroup, then the OOM score; a failure ends the serving shim, and
  // containerd gets the error.
  if (Status applied = ApplyStartOptions(pid, start_options); !applied.ok()) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ::unlink(socket_path.c_str());
    return applied;
  }
  std::fputs(address.c_str(), stdout);
  std::fflush(stdout);
  return Status::Ok();
}

Status RunServe(const ShimFlags& flags) {
  // SIGTERM from containerd or an operator ends the shim cleanly: the VM goes too.
  // Blocked before any thread exists (plugins start threads when they load, the
  // event publisher and ttrpc too): a thread started earlier would keep SIGTERM
  // unblocked, take it, and the default action would end the shim without teardown.
  // Children get an empty mask from the Spawner (plugins/common/child_process.cc).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  SetUpLogging(flags);
  ::signal(SIGPIPE, SIG_IGN);
  UniqueFd listener(kListenerFd);
  if (::fcntl(kListenerFd, F_SETFD, FD_CLOEXEC) != 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "no listening socket on fd 3: the shim is started by containerd through "
                     "its `start` action");
  }
  const std::string bundle = BundleDir(flags);
  // Operators and tests find the serving shim by this pid, never by name.
  (void)WriteFileAtomic(RuntimeLayout::ShimPidFilePath(bundle), std::to_string(::getpid()));
  const char* ttrpc_address = std::getenv("TTRPC_ADDRESS");
  EventPublisher events(ttrpc_address ? ttrpc_address : "", flags.namespace_name);

  auto loaded = LoadPlugins();
  if (!loaded.ok()) {
    // The shim still serves, so that containerd gets this error from Create, with
    // the config file and plugin named, instead of a dead socket.
    spdlog::error("{}", loaded.error().message);
  }
  std::unique_ptr<PluginBackends> plugins = loaded.ok() ? std::move(loaded).value() : nullptr;
  const config::Paths default_paths;
  SandboxOptions options{KeyOf(flags), bundle, TestCrashHookFromEnvironment()};
  auto sandbox = std::make_unique<Sandbox>(
      plugins ? plugins->backends() : SandboxBackends{},
      loaded.ok() ? Status::Ok() : Status(loaded.error()),
      plugins ? plugins->layout() : RuntimeLayout(default_paths.run_dir, default_paths.log_dir),
      events, options);

  ttrpc::Server server;
  // Once a container or exec has started the shim waits: what it touched setting up
  // leaves its RSS, 2 s after the last Start (README "Memory per container").
  IdleTrimmer trimmer(std::chrono::seconds(2), [] {
    const IdleTrim trim = TrimIdleMemory();
    spdlog::debug("idle: {} KiB of read-only file pages unmapped, heap {}",
                  trim.file_pages_bytes / 1024, trim.heap_trimmed ? "trimmed" : "unchanged");
  });
  TaskService service(
      *sandbox, flags.namespace_name, [&server] { server.Shutdown(); },
      [&trimmer] { trimmer.Schedule(); });
  service.Register(server);

  std::thread signal_thread([&server, signals] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    spdlog::info("signal {}: shutting down", signal_number);
    server.Shutdown();
  });
  signal_thread.detach();

  spdlog::info("serving container {} in namespace {}", flags.id, flags.namespace_name);
  const std::string socket_path = BoundPathOf(listener.get());
  Status served = server.Serve(listener.get());
  sandbox->Teardown();
  // Closed first: a listening socket still accepts connections into its backlog, so
  // it would pass for a live shim and the socket file would stay behind.
  listener.Reset();
  RemoveShimSocketUnlessServing(socket_path);
  spdlog::info("shim exiting");
  // Detached ttrpc threads may still hold references; leave without running
  // static destructors under them.
  std::fflush(nullptr);
  _exit(served.ok() ? 0 : 1);
}

Status RunDelete(const ShimFlags& flags) {
  const std::string bundle = BundleDir(flags);
  UseConfigOfBundle(bundle);
  const ContainerKey key = KeyOf(flags);
  const std::string state_path = RuntimeLayout::StateFilePath(bundle);
  auto loaded = LoadPlugins();
  std::optional<RuntimeLayout> loaded_layout;
  if (loaded.ok()) loaded_layout = (*loaded)->layout();
  const std::string socket = ShimSocketOf(flags, loaded_layout ? &*loaded_layout : nullptr);
  if (loaded.ok()) {
    const RuntimeLayout& layout = *loaded_layout;
    auto record = LoadRecord(state_path);
    if (!record.ok() && record.error().code == ErrorCode::kNotFound && !socket.empty() &&
        ShimSocketAnswers(socket)) {
      // A container of a pod whose shim still serves (containerd runs `delete` after
      // each task's Delete): that shim holds and releases what the container had.
      spdlog::info("{}: the shim serving it is alive and releases what it holds", key.ToString());
    } else if (!record.ok()) {
      if (record.error().code != ErrorCode::kNotFound) {
        spdlog::warn("{}: releasing what {} may hold", record.error().message, key.ToString());
      }
      // No state file: the shim died before recording anything, or tore down already.
      // Releasing is idempotent, so ask for everything the container could hold.
      SandboxRecord guess;
      guess.sandbox = key;
      guess.containers.push_back({key, bundle, Step::kStarted});
      guess.network = Step::kStarted;
      if (auto vm_dir = layout.VmDir(key); vm_dir.ok()) {
        guess.vm_dir = *vm_dir;
        guess.vm = Step::kStarted;
      }
      record = std::move(guess);
    }
    // The same code as the serving shim's teardown, without a live VM handle.
    if (record.ok()) {
      TeardownFromRecord(*record, (*loaded)->backends(), layout, nullptr, state_path);
    }
  } else {
    spdlog::warn("cleanup without plugins: {}", loaded.error().message);
  }
  RemoveShimSocketUnlessServing(socket);
  task::DeleteResponse response;
  response.set_exit_status(128 + SIGKILL);
  *response.mutable_exited_at() = Now();
  std::string out = response.SerializeAsString();
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return Status::Ok();
}

}  // namespace beaconbox::shim
