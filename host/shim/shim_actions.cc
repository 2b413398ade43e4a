#include "host/shim/shim_actions.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/null_sink.h>
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
#include "common/base/process_start_time.h"
#include "common/base/unique_fd.h"
#include "host/log/log.h"
#include "host/shim/idle_memory.h"
#include "host/shim/plugin_backends.h"
#include "host/shim/pod_grouping.h"
#include "host/shim/runtime_layout.h"
#include "host/shim/sandbox.h"
#include "host/shim/sandbox_state.h"
#include "host/shim/shim_options.h"
#include "host/shim/shim_record.h"
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

// containerd reads the `start` action's stdout and stderr together as the shim's
// address (CombinedOutput): a line logged on either would corrupt it. What `start`
// logs (its sweep of dead shims) goes to the shim log FIFO in the bundle, which
// containerd already reads into its own log; without one (not run by containerd) it
// is dropped. An error still reaches containerd: main prints it on stderr.
void LogStartToShimLog(const ShimFlags& flags) {
  int log_fd = ::open("log", O_WRONLY | O_CLOEXEC | O_NONBLOCK);
  // A FIFO with a reader opens at once; the logger's own blocking descriptor is
  // opened through this one.
  if (log_fd >= 0 &&
      log::SetUpLogging({"beaconbox-shim " + flags.id, flags.debug ? "debug" : "info",
                         "/proc/self/fd/" + std::to_string(log_fd)})
          .ok()) {
    ::close(log_fd);
    return;
  }
  if (log_fd >= 0) ::close(log_fd);
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "beaconbox-shim " + flags.id, std::make_shared<spdlog::sinks::null_sink_mt>()));
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

// What a dead shim's sandbox may hold when no state file says it: the shim died before
// recording anything, or tore down already. Releasing is idempotent, so everything the
// container could hold is asked for.
SandboxRecord GuessRecord(const ContainerKey& key, const std::string& bundle,
                          const RuntimeLayout& layout) {
  SandboxRecord guess;
  guess.sandbox = key;
  guess.containers.push_back({key, bundle, Step::kStarted});
  guess.network = Step::kStarted;
  if (auto vm_dir = layout.VmDir(key); vm_dir.ok()) {
    guess.vm_dir = *vm_dir;
    guess.vm = Step::kStarted;
  }
  return guess;
}

// Releases what the sandbox `key` of a dead shim holds, from its state file: the one
// under the state dir, else the bundle's (an older shim's), else a guess. The same code
// as the serving shim's teardown, without a live VM handle.
void ReleaseSandboxOf(const ContainerKey& key, const std::string& bundle, PluginBackends& plugins,
                      const RuntimeLayout& layout) {
  std::string state_path = layout.SandboxStatePath(key);
  auto record = state_path.empty()
                    ? Result<SandboxRecord>(MakeError(ErrorCode::kNotFound, "no state dir"))
                    : LoadRecord(state_path);
  if (!record.ok() && record.error().code == ErrorCode::kNotFound && !bundle.empty()) {
    state_path = RuntimeLayout::StateFilePath(bundle);
    record = LoadRecord(state_path);
  }
  if (!record.ok()) {
    if (record.error().code != ErrorCode::kNotFound) {
      spdlog::warn("{}: releasing what {} may hold", record.error().message, key.ToString());
    }
    record = GuessRecord(key, bundle, layout);
  }
  TeardownFromRecord(*record, plugins.backends(), layout, nullptr, state_path);
  // A state file under the state dir goes too when the bundle's was the one read.
  if (std::string own = layout.SandboxStatePath(key); !own.empty()) ::unlink(own.c_str());
}

// The plugins of the config in effect, loaded on first use: a sweep that finds no dead
// shim loads nothing.
class LazyPlugins {
 public:
  Result<PluginBackends*> Get() {
    if (!plugins_ && !error_) {
      auto loaded = LoadPlugins();
      if (loaded.ok()) {
        plugins_ = std::move(loaded).value();
      } else {
        error_ = loaded.error();
      }
    }
    if (error_) return *error_;
    return plugins_.get();
  }

 private:
  std::unique_ptr<PluginBackends> plugins_;
  std::optional<Error> error_;
};

// Releases the leftovers of every dead shim recorded under `layout`'s state dir except
// `exclude`'s (shim_record.h), with the plugins of the config `config_path`; records of
// shims that ran with another config are left for a shim of that config.
void SweepDeadShimsOf(const RuntimeLayout& layout, const std::string& config_path,
                      const ContainerKey& exclude, LazyPlugins& plugins) {
  DeadShimRelease release;
  release.record_dir = layout.ShimRecordDir();
  release.socket_dir = layout.ShimSocketDir();
  release.teardown = [&](const ShimRecord& dead) -> Status {
    if (dead.config_path != config_path) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "its shim ran with config '" + dead.config_path + "', this one with '" +
                           config_path + "': left for a shim of that config");
    }
    BBX_ASSIGN_OR_RETURN(PluginBackends * loaded, plugins.Get());
    spdlog::info("{}: its shim (pid {}) is dead: releasing what it left", dead.key.ToString(),
                 dead.shim_pid);
    ReleaseSandboxOf(dead.key, dead.bundle, *loaded, loaded->layout());
    return Status::Ok();
  };
  (void)SweepDeadShims(release, exclude);
}

}  // namespace

Status RunStart(const ShimFlags& flags, const char* argv0) {
  LogStartToShimLog(flags);
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
  {
    // Leftovers of shims that died without their `delete` (containerd 1.7 may remove
    // the bundle first, and the action never runs): released before this one binds.
    // The plugins loaded for it are unloaded before the fork below. Nothing is
    // excluded: a dead shim of this very id (the container run again after its shim
    // died without `delete`) is released before this start records itself under that
    // name; a live one is left, as every live shim is.
    LazyPlugins plugins;
    SweepDeadShimsOf(layout, cfg.source, ContainerKey{}, plugins);
    spdlog::default_logger()->flush();
  }
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
  // The shim record, for whoever cleans up after this shim (shim_record.h): the pid
  // and start time of our unreaped child name it for sure.
  Status started = ApplyStartOptions(pid, start_options);
  if (const std::string record_path = layout.ShimRecordPath(KeyOf(flags));
      started.ok() && !record_path.empty()) {
    ShimRecord record{KeyOf(flags), pid,         ProcessStartTime(pid),
                      cfg.source,   socket_path, BundleDir(flags)};
    started = record.shim_start_time != 0
                  ? SaveShimRecord(record_path, record)
                  : Status(MakeError(ErrorCode::kInternal,
                                     "cannot read the start time of the shim (pid " +
                                         std::to_string(pid) + ") from /proc: is /proc mounted?"));
  }
  if (!started.ok()) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ::unlink(socket_path.c_str());
    return started;
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
  const RuntimeLayout layout =
      plugins ? plugins->layout() : RuntimeLayout(default_paths.run_dir, default_paths.log_dir);
  SandboxOptions options{KeyOf(flags), bundle, TestCrashHookFromEnvironment(), ""};
  // The state file lives beside the shim record, where `delete` finds it without the
  // bundle; in the bundle only when the state dir cannot be made.
  if (std::string state_path = layout.SandboxStatePath(KeyOf(flags)); !state_path.empty()) {
    std::error_code error;
    fs::create_directories(layout.ShimRecordDir(), error);
    if (!error) options.state_path = std::move(state_path);
  }
  auto sandbox = std::make_unique<Sandbox>(plugins ? plugins->backends() : SandboxBackends{},
                                           loaded.ok() ? Status::Ok() : Status(loaded.error()),
                                           layout, events, options);

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
  // Everything is released: nobody has to clean up after this shim.
  if (const std::string record_path = layout.ShimRecordPath(KeyOf(flags)); !record_path.empty()) {
    if (auto record = LoadShimRecord(record_path); record.ok() && record->shim_pid == ::getpid()) {
      ::unlink(record_path.c_str());
    }
  }
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
  // The shim record under the state dir names the config the shim ran with, its socket
  // and bundle: containerd 1.7 may have removed the bundle already.
  std::string record_path;
  std::optional<ShimRecord> shim_record;
  if (auto cfg = config::LoadConfig(); cfg.ok()) {
    record_path = LayoutFromConfig(*cfg).ShimRecordPath(key);
    if (!record_path.empty()) {
      auto loaded_record = LoadShimRecord(record_path);
      if (loaded_record.ok()) {
        shim_record = std::move(loaded_record).value();
        if (!shim_record->config_path.empty() && shim_record->config_path.front() == '/' &&
            shim_record->config_path != cfg->source) {
          ::setenv(config::kConfigEnv, shim_record->config_path.c_str(), 1);
        }
      } else if (loaded_record.error().code != ErrorCode::kNotFound) {
        spdlog::warn("shim record refused: {}", loaded_record.error().message);
      }
    }
  }
  LazyPlugins plugins;
  auto loaded = plugins.Get();
  if (!loaded.ok()) spdlog::warn("cleanup without plugins: {}", loaded.error().message);
  std::optional<RuntimeLayout> loaded_layout;
  if (loaded.ok()) loaded_layout = (*loaded)->layout();
  if (shim_record) {
    DeadShimRelease release;
    release.record_dir = record_path.substr(0, record_path.rfind('/'));
    release.socket_dir = loaded_layout ? loaded_layout->ShimSocketDir() : "";
    release.teardown = [&](const ShimRecord& dead) -> Status {
      BBX_ASSIGN_OR_RETURN(PluginBackends * backends, plugins.Get());
      ReleaseSandboxOf(dead.key, dead.bundle, *backends, *loaded_layout);
      return Status::Ok();
    };
    // A sweep of another shim's `start` may hold the record: it releases the same.
    release.lock_wait_ms = 30000;
    // containerd saw the shim's connection close; the process may still be exiting.
    release.exit_wait_ms = 2000;
    std::string why;
    switch (ReleaseIfDead(record_path, release, &why)) {
      case RecordOutcome::kLive:
        // containerd runs `delete` after a pod app container's task Delete too; the pod's
        // shim serves on and holds what the container had.
        spdlog::info("{}: the shim serving it is alive and releases what it holds", key.ToString());
        break;
      case RecordOutcome::kSkipped:
        spdlog::warn("shim record skipped: {}", why);
        break;
      case RecordOutcome::kReleased:
      case RecordOutcome::kGone:
        break;
    }
  } else if (loaded.ok()) {
    // No record: a shim of an older beaconbox, a state dir that could not be written,
    // or a pod's app container (its pod's shim has the record). The bundle says the rest.
    const RuntimeLayout& layout = *loaded_layout;
    const std::string socket = ShimSocketOf(flags, &layout);
    std::string own_state = layout.SandboxStatePath(key);
    const bool recorded = (!own_state.empty() && fs::exists(own_state)) ||
                          fs::exists(RuntimeLayout::StateFilePath(bundle));
    if (!recorded && !socket.empty() && ShimSocketAnswers(socket)) {
      // A container of a pod whose shim still serves (containerd runs `delete` after
      // each task's Delete): that shim holds and releases what the container had.
      spdlog::info("{}: the shim serving it is alive and releases what it holds", key.ToString());
    } else {
      ReleaseSandboxOf(key, bundle, **loaded, layout);
    }
    RemoveShimSocketUnlessServing(socket);
  } else {
    RemoveShimSocketUnlessServing(ShimSocketOf(flags, nullptr));
  }
  // Other dead shims' leftovers too (their own `delete` may never have run).
  if (loaded.ok()) {
    SweepDeadShimsOf(*loaded_layout, (*loaded)->config_source(), key, plugins);
  }
  task::DeleteResponse response;
  response.set_exit_status(128 + SIGKILL);
  *response.mutable_exited_at() = Now();
  std::string out = response.SerializeAsString();
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return Status::Ok();
}

}  // namespace beaconbox::shim
