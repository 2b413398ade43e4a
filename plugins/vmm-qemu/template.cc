#include "plugins/vmm-qemu/template.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/base/agent_token.h"
#include "common/base/bounded_json.h"
#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "plugins/common/vm_files.h"
#include "plugins/vmm-qemu/qmp.h"

namespace beaconbox::qemu {
namespace {

namespace fs = std::filesystem;
namespace pluginapi = ::beaconbox::plugin::v1;
using namespace std::chrono_literals;

constexpr char kManifestVersion[] = "beaconbox-qemu-template 1";
constexpr char kAgentServingMarker[] = "vminitd: serving on";

std::string Hex64(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(value));
  return text;
}

// A path QEMU's `exec:` migration URI hands to /bin/sh: only characters the shell
// takes literally.
bool IsShellSafePath(const std::string& path) {
  return !path.empty() && path[0] == '/' && std::all_of(path.begin(), path.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '_' ||
           c == '-';
  });
}

// The spec of the template VM: `spec` without devices, with its own names.
pluginapi::VmSpec TemplateSpec(const pluginapi::VmSpec& spec, const std::string& dir,
                               const std::string& token) {
  pluginapi::VmSpec template_spec = spec;
  template_spec.clear_devices();
  template_spec.set_id("template");
  template_spec.set_run_dir(dir);
  template_spec.set_console_log_path(dir + "/console.log");
  template_spec.set_agent_token(token);
  if (template_spec.agent_channel().kind() == pluginapi::AGENT_CHANNEL_VIRTIO_SERIAL) {
    template_spec.mutable_agent_channel()->set_unix_socket_path(dir + "/agent.sock");
  }
  return template_spec;
}

Result<std::string> ReadWhole(const std::string& path, uint64_t limit) {
  return ReadSmallFile(path, static_cast<size_t>(limit));
}

Result<uint64_t> ChecksumFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError("open", path);
  uint64_t hash = 0xcbf29ce484222325ull;
  std::vector<char> buffer(1 << 16);
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read", path);
    if (n == 0) break;
    hash = Checksum64(std::string_view(buffer.data(), static_cast<size_t>(n)), hash);
  }
  return hash;
}

Status WaitForConsoleMarker(const std::string& console, pid_t qemu,
                            std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!plugins::ChildRunning(qemu)) {
      return MakeError(ErrorCode::kUnavailable, "the template VM's QEMU exited while booting");
    }
    std::ifstream in(console, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.find(kAgentServingMarker) != std::string::npos) return Status::Ok();
    std::this_thread::sleep_for(50ms);
  }
  return MakeError(ErrorCode::kTimeout, "the template VM's agent did not serve within " +
                                            std::to_string(timeout.count()) + " ms");
}

// Boots the template in `dir` and saves it there; QEMU is gone when this returns.
Status BuildTemplate(const pluginapi::VmSpec& spec, const QemuConfig& config,
                     const std::string& accelerator, const std::string& key_text,
                     const std::string& dir, plugins::Spawner& spawner,
                     std::chrono::milliseconds boot_timeout) {
  BBX_ASSIGN_OR_RETURN(std::string token, GenerateAgentToken());
  const pluginapi::VmSpec template_spec = TemplateSpec(spec, dir, token);
  BBX_ASSIGN_OR_RETURN(LaunchPlan plan, PlanLaunch(template_spec));
  plan.accelerator = accelerator;
  const std::string memory = dir + "/memory";
  const std::string state = dir + "/state";
  BBX_ASSIGN_OR_RETURN(auto argv,
                       TemplateMachineCommand(template_spec, config, plan, memory, true));
  // The template's console goes to a plain file (no pump): it prints little.
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == "-serial") argv[i + 1] = "file:" + template_spec.console_log_path();
  }
  BBX_RETURN_IF_ERROR(plugins::WriteAgentTokenFile(plan.agent_token_file, token));
  plugins::SpawnOptions output;
  output.log_path = plan.qemu_log;
  BBX_ASSIGN_OR_RETURN(pid_t pid, spawner.Spawn(argv, output));
  struct Reap {
    pid_t pid;
    ~Reap() {
      if (pid > 0) plugins::EndChild(pid, 0ms);
    }
  } reap{pid};
  auto died = [&](const std::string& what) {
    return MakeError(ErrorCode::kUnavailable,
                     "building the VM template in " + dir + ": " + what +
                         "; qemu said: " + ReadFileTail(plan.qemu_log, 512) + " -- console tail: " +
                         ReadFileTail(template_spec.console_log_path(), 512));
  };
  if (!plugins::WaitForPath(plan.qmp_socket, pid, 30s)) return died("QEMU did not start");
  auto qmp = QmpClient::Connect(plan.qmp_socket, 10s);
  if (!qmp.ok()) return died("QMP: " + qmp.error().message);
  ::unlink(plan.agent_token_file.c_str());
  Status booted = WaitForConsoleMarker(template_spec.console_log_path(), pid, boot_timeout);
  if (!booted.ok()) return died(booted.error().message);
  // Let the agent settle into waiting for its host before the vCPUs stop.
  std::this_thread::sleep_for(200ms);
  BBX_RETURN_IF_ERROR(qmp->Execute("stop", 10s));
  BBX_RETURN_IF_ERROR(
      qmp->Call("migrate-set-capabilities",
                R"({"capabilities":[{"capability":"x-ignore-shared","state":true}]})", 5s));
  if (Status saved = MigrateAndWait(*qmp, "exec:cat > " + state, 60s); !saved.ok()) {
    return died("saving the device state: " + saved.error().message);
  }
  (void)qmp->Execute("quit", 5s);
  if (!plugins::WaitChildExit(pid, 10s)) plugins::EndChild(pid, 0ms);
  reap.pid = -1;

  TemplateManifest manifest;
  manifest.key = key_text;
  struct stat st {};
  if (::stat(memory.c_str(), &st) != 0) return ErrnoError("stat", memory);
  manifest.memory_size = static_cast<uint64_t>(st.st_size);
  manifest.memory_mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  if (::stat(state.c_str(), &st) != 0) return ErrnoError("stat", state);
  manifest.state_size = static_cast<uint64_t>(st.st_size);
  BBX_ASSIGN_OR_RETURN(manifest.state_checksum, ChecksumFile(state));
  if (manifest.state_size == 0) return died("QEMU saved an empty device state");
  std::error_code ignored;
  for (const auto& path : {plan.qmp_socket, plan.agent_socket, plan.qemu_log}) {
    if (!path.empty()) fs::remove(path, ignored);
  }
  ::chmod(memory.c_str(), 0600);
  ::chmod(state.c_str(), 0600);
  return WriteFileAtomic(dir + "/manifest", FormatManifest(manifest), 0600);
}

}  // namespace

uint64_t Checksum64(std::string_view data, uint64_t seed) {
  uint64_t hash = seed;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

Result<std::vector<std::string>> TemplateMachineCommand(const pluginapi::VmSpec& spec,
                                                        const QemuConfig& config,
                                                        const LaunchPlan& plan,
                                                        const std::string& memory_path,
                                                        bool shared) {
  if (config.machine != "q35") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "template = true needs machine = \"q35\" (its pcie-root-ports take the "
                     "hot-added devices), not \"" +
                         config.machine + "\"");
  }
  if (memory_path.empty() || memory_path[0] != '/' || memory_path.find(',') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "template memory path '" + memory_path + "' must be absolute, without ','");
  }
  pluginapi::VmSpec machine = spec;
  machine.clear_devices();
  LaunchPlan machine_plan = plan;
  machine_plan.virtiofsd_sockets.clear();
  machine_plan.tap_fds.clear();
  // No free page reporting in a template or its clones: QEMU 7.2 punches holes
  // (fallocate) into a RAM block's file also when it is mapped privately, so a
  // copy-on-write clone would zero the shared template file under the other clones
  // (fixed in QEMU 8.1). Template and clones need the same devices, so off for both.
  QemuConfig machine_config = config;
  machine_config.free_page_reporting = false;
  BBX_ASSIGN_OR_RETURN(auto argv, BuildQemuCommand(machine, machine_config, machine_plan));
  const uint64_t memory = spec.memory_mib() == 0 ? 512 : spec.memory_mib();
  bool replaced = false;
  for (auto& arg : argv) {
    if (arg.rfind("memory-backend-memfd,id=mem,", 0) == 0) {
      arg = "memory-backend-file,id=mem,size=" + std::to_string(memory) +
            "M,mem-path=" + memory_path + (shared ? ",share=on" : ",share=off");
      replaced = true;
    }
  }
  if (!replaced) {
    return MakeError(ErrorCode::kInternal,
                     "the QEMU command line has no memory-backend-memfd id=mem to back by the "
                     "template's file");
  }
  for (int port = 0; port < kTemplateHotplugPorts; ++port) {
    argv.insert(argv.end(), {"-device", "pcie-root-port,id=bbx-hp" + std::to_string(port) +
                                            ",bus=pcie.0,chassis=" + std::to_string(port + 1)});
  }
  return argv;
}

Result<std::string> TemplateKeyText(const pluginapi::VmSpec& spec, const QemuConfig& config,
                                    const std::string& accelerator) {
  // The per-VM names are replaced by fixed ones: only what the guest sees counts.
  pluginapi::VmSpec canonical = TemplateSpec(spec, "/T", std::string(64, '0'));
  if (canonical.agent_channel().kind() == pluginapi::AGENT_CHANNEL_VSOCK) {
    canonical.mutable_agent_channel()->set_guest_cid(3);
  }
  BBX_ASSIGN_OR_RETURN(LaunchPlan plan, PlanLaunch(canonical));
  plan.accelerator = accelerator;
  BBX_ASSIGN_OR_RETURN(auto argv,
                       TemplateMachineCommand(canonical, config, plan, "/T/memory", true));
  std::string key = std::string(kManifestVersion) + "\n";
  for (const auto& arg : argv) key += arg + "\n";
  key += "kernel " + FileIdentity(spec.kernel_path()) + "\n";
  key += "initrd " + FileIdentity(spec.initrd_path()) + "\n";
  key += "qemu " + FileIdentity(config.binary) + "\n";
  return key;
}

TemplateFiles TemplateFilesFor(const std::string& template_dir, const std::string& key_text) {
  TemplateFiles files;
  const std::string name = Hex64(Checksum64(key_text));
  files.dir = template_dir + "/" + name;
  files.memory = files.dir + "/memory";
  files.state = files.dir + "/state";
  files.manifest = files.dir + "/manifest";
  files.lock = template_dir + "/" + name + ".lock";
  return files;
}

std::string FormatManifest(const TemplateManifest& manifest) {
  nlohmann::json json = {
      {"version", kManifestVersion},         {"key", manifest.key},
      {"memory_size", manifest.memory_size}, {"memory_mtime_ns", manifest.memory_mtime_ns},
      {"state_size", manifest.state_size},   {"state_checksum", Hex64(manifest.state_checksum)}};
  return json.dump(2) + "\n";
}

Result<TemplateManifest> ParseManifest(std::string_view text) {
  BBX_ASSIGN_OR_RETURN(nlohmann::json json, ParseBoundedJson(text, "template manifest"));
  TemplateManifest manifest;
  try {
    if (json.at("version").get<std::string>() != kManifestVersion) {
      return MakeError(ErrorCode::kInvalidArgument, "template manifest of another version");
    }
    manifest.key = json.at("key").get<std::string>();
    manifest.memory_size = json.at("memory_size").get<uint64_t>();
    manifest.memory_mtime_ns = json.at("memory_mtime_ns").get<int64_t>();
    manifest.state_size = json.at("state_size").get<uint64_t>();
    manifest.state_checksum =
        std::stoull(json.at("state_checksum").get<std::string>(), nullptr, 16);
  } catch (const std::exception& error) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string("template manifest is malformed: ") + error.what());
  }
  return manifest;
}

Status ValidateTemplate(const TemplateFiles& files, const std::string& key_text) {
  auto text = ReadWhole(files.manifest, 1 << 20);
  if (!text.ok()) return MakeError(ErrorCode::kNotFound, "no template manifest " + files.manifest);
  BBX_ASSIGN_OR_RETURN(TemplateManifest manifest, ParseManifest(*text));
  if (manifest.key != key_text) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "template " + files.dir + " was built from other inputs");
  }
  struct stat st {};
  if (::stat(files.memory.c_str(), &st) != 0) return ErrnoError("stat", files.memory);
  const int64_t mtime = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  if (static_cast<uint64_t>(st.st_size) != manifest.memory_size ||
      mtime != manifest.memory_mtime_ns) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "template memory " + files.memory + " has size " + std::to_string(st.st_size) +
                         " and mtime " + std::to_string(mtime) + ", the manifest says " +
                         std::to_string(manifest.memory_size) + " and " +
                         std::to_string(manifest.memory_mtime_ns) + ": changed since it was saved");
  }
  if (::stat(files.state.c_str(), &st) != 0) return ErrnoError("stat", files.state);
  if (static_cast<uint64_t>(st.st_size) != manifest.state_size) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "template state " + files.state + " has " + std::to_string(st.st_size) +
                         " bytes, the manifest says " + std::to_string(manifest.state_size) +
                         ": truncated or replaced");
  }
  BBX_ASSIGN_OR_RETURN(uint64_t checksum, ChecksumFile(files.state));
  if (checksum != manifest.state_checksum) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "template state " + files.state + " does not match its checksum: corrupt");
  }
  return Status::Ok();
}

Result<std::vector<HotplugCommand>> HotplugCommands(const pluginapi::VmSpec& spec,
                                                    const LaunchPlan& plan) {
  std::vector<HotplugCommand> commands;
  int port = 0;
  size_t fs_index = 0;
  size_t net_index = 0;
  for (const auto& device : spec.devices()) {
    if (!device.has_share() && !device.has_block() && !device.has_net()) continue;
    if (port >= kTemplateHotplugPorts) {
      return MakeError(ErrorCode::kExhausted,
                       "a VM from a template takes at most " +
                           std::to_string(kTemplateHotplugPorts) +
                           " devices (its pcie-root-ports); set template = false for this one");
    }
    const std::string bus = "bbx-hp" + std::to_string(port++);
    if (device.has_share()) {
      if (fs_index >= plan.virtiofsd_sockets.size()) {
        return MakeError(ErrorCode::kInternal, "share without a vhost-user socket");
      }
      const std::string id = "fs" + std::to_string(fs_index);
      nlohmann::json chardev = {
          {"id", id},
          {"backend",
           {{"type", "socket"},
            {"data",
             {{"addr", {{"type", "unix"}, {"data", {{"path", plan.virtiofsd_sockets[fs_index]}}}}},
              {"server", false}}}}}};
      commands.push_back({"chardev-add", chardev.dump()});
      nlohmann::json fs_device = {
          {"driver", "vhost-user-fs-pci"}, {"id", "dev-" + id}, {"bus", bus}, {"chardev", id},
          {"tag", device.share().tag()},   {"queue-size", 1024}};
      commands.push_back({"device_add", fs_device.dump()});
      ++fs_index;
    } else if (device.has_block()) {
      const auto& block = device.block();
      const std::string node = "blk-" + block.id();
      nlohmann::json backend = {{"driver", "raw"},
                                {"node-name", node},
                                {"read-only", block.read_only()},
                                {"file",
                                 {{"driver", "file"},
                                  {"filename", block.host_path()},
                                  {"read-only", block.read_only()}}}};
      commands.push_back({"blockdev-add", backend.dump()});
      nlohmann::json disk = {{"driver", "virtio-blk-pci"},
                             {"id", "dev-" + node},
                             {"bus", bus},
                             {"drive", node},
                             {"serial", block.id()}};
      commands.push_back({"device_add", disk.dump()});
    } else {
      const auto& net = device.net();
      const size_t index = net_index++;
      const std::string id = "net" + std::to_string(index);
      const int tap_fd = index < plan.tap_fds.size() ? plan.tap_fds[index] : -1;
      nlohmann::json netdev = {{"type", "tap"}, {"id", id}};
      if (!net.netns_path().empty()) {
        // QEMU would open an ifname in its own namespace: it gets the descriptor.
        if (tap_fd < 0) {
          return MakeError(ErrorCode::kInternal,
                           "TAP " + net.tap_name() + " in " + net.netns_path() + " was not opened");
        }
        const std::string fd_name = "tap-" + id;
        commands.push_back({"getfd", nlohmann::json{{"fdname", fd_name}}.dump(), tap_fd});
        netdev["fd"] = fd_name;
      } else {
        netdev["ifname"] = net.tap_name();
        netdev["script"] = "no";
        netdev["downscript"] = "no";
      }
      commands.push_back({"netdev_add", netdev.dump()});
      nlohmann::json nic = {{"driver", "virtio-net-pci"},
                            {"id", "dev-" + id},
                            {"bus", bus},
                            {"netdev", id},
                            {"mac", net.mac()}};
      if (net.mtu() != 0) nic["host_mtu"] = net.mtu();
      commands.push_back({"device_add", nic.dump()});
    }
  }
  return commands;
}

Status CopySparse(const std::string& from, const std::string& to) {
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return ErrnoError("open", from);
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) return ErrnoError("stat", from);
  UniqueFd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out) return ErrnoError("create", to);
  if (::ftruncate(out.get(), st.st_size) != 0) return ErrnoError("truncate", to);
  std::vector<char> buffer(1 << 20);
  off_t offset = 0;
  while (offset < st.st_size) {
    off_t data = ::lseek(in.get(), offset, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      return ErrnoError("seek data in", from);
    }
    off_t hole = ::lseek(in.get(), data, SEEK_HOLE);
    if (hole < 0) return ErrnoError("seek hole in", from);
    for (off_t at = data; at < hole;) {
      const size_t want = static_cast<size_t>(std::min<off_t>(hole - at, buffer.size()));
      ssize_t n = ::pread(in.get(), buffer.data(), want, at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ErrnoError("read", from);
      for (ssize_t written = 0; written < n;) {
        ssize_t w = ::pwrite(out.get(), buffer.data() + written, static_cast<size_t>(n - written),
                             at + written);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return ErrnoError("write", to);
        written += w;
      }
      at += n;
    }
    offset = hole;
  }
  return Status::Ok();
}

void InvalidateTemplate(const TemplateFiles& files) { ::unlink(files.manifest.c_str()); }

namespace {

// A template directory's name: 16 hex digits (TemplateFilesFor).
bool IsTemplateName(const std::string& name) {
  return name.size() == 16 && std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool FlockNow(int fd, int operation) {
  for (;;) {
    if (::flock(fd, operation | LOCK_NB) == 0) return true;
    if (errno != EINTR) return false;
  }
}

// Opens and flocks `path` (created if missing) with `operation`, blocking; retries
// when the file was unlinked (RemoveUnusedTemplates) between the open and the lock,
// so that every holder locks the file the path names.
Result<UniqueFd> LockFile(const std::string& path, int operation) {
  for (;;) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) return ErrnoError("open", path);
    while (::flock(fd.get(), operation) != 0) {
      if (errno != EINTR) return ErrnoError("flock", path);
    }
    struct stat held {};
    struct stat named {};
    if (::fstat(fd.get(), &held) != 0) return ErrnoError("stat", path);
    if (::stat(path.c_str(), &named) == 0 && named.st_ino == held.st_ino &&
        named.st_dev == held.st_dev) {
      return fd;
    }
  }
}

}  // namespace

Result<UniqueFd> LockTemplateInUse(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return ErrnoError("open", dir);
  if (!FlockNow(fd.get(), LOCK_SH)) return ErrnoError("flock", dir);
  return fd;
}

std::vector<std::string> RemoveUnusedTemplates(const std::string& template_dir,
                                               const std::string& keep,
                                               const std::function<void(const std::string&)>& log) {
  std::vector<std::string> removed;
  std::error_code error;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(template_dir, error)) {
    std::string name = entry.path().filename().string();
    if (name.size() == 20 && name.compare(16, 4, ".new") == 0) name.resize(16);
    if (!IsTemplateName(name) || name == keep) continue;
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const std::string dir = template_dir + "/" + name;
    const std::string lock_path = dir + ".lock";
    // No shim builds or loads it (they hold its lock file)...
    UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CLOEXEC));
    if (lock && !FlockNow(lock.get(), LOCK_EX)) continue;
    // ...and no clone runs from it (each holds its directory shared).
    UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir_fd && !FlockNow(dir_fd.get(), LOCK_EX)) continue;
    fs::remove_all(dir, error);
    if (error) {
      if (log) log("removing unused VM template " + dir + ": " + error.message());
      continue;
    }
    fs::remove_all(dir + ".new", error);
    // Unlinked while locked: a shim waiting on it locks it again by its path (LockFile).
    if (lock) ::unlink(lock_path.c_str());
    removed.push_back(dir);
    if (log) log("removed unused VM template " + dir);
  }
  return removed;
}

Result<TemplateLease> EnsureTemplate(const pluginapi::VmSpec& spec, const QemuConfig& config,
                                     const std::string& accelerator, plugins::Spawner& spawner,
                                     std::chrono::milliseconds boot_timeout,
                                     const std::function<void(const std::string&)>& log) {
  if (!IsShellSafePath(config.template_dir)) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "template_dir '" + config.template_dir +
            "' must be an absolute path of [A-Za-z0-9/._-] (QEMU hands it to a shell)");
  }
  BBX_ASSIGN_OR_RETURN(std::string key, TemplateKeyText(spec, config, accelerator));
  std::error_code error;
  fs::create_directories(config.template_dir, error);
  if (error) {
    return MakeError(ErrorCode::kInternal,
                     "creating template_dir " + config.template_dir + ": " + error.message());
  }
  TemplateLease lease;
  lease.files = TemplateFilesFor(config.template_dir, key);
  BBX_ASSIGN_OR_RETURN(lease.lock, LockFile(lease.files.lock, LOCK_EX));
  Status valid = ValidateTemplate(lease.files, key);
  if (!valid.ok()) {
    if (valid.error().code != ErrorCode::kNotFound) {
      log("VM template refused, rebuilding it: " + valid.error().message);
    } else {
      log("building the VM template " + lease.files.dir);
    }
    if (config.free_page_reporting) {
      log("free_page_reporting is off in template VMs and their clones: QEMU 7.2 would punch "
          "holes into the shared template memory file");
    }
    const std::string building = lease.files.dir + ".new";
    fs::remove_all(building, error);
    fs::create_directories(building, error);
    if (error)
      return MakeError(ErrorCode::kInternal, "creating " + building + ": " + error.message());
    ::chmod(building.c_str(), 0700);
    Status built = BuildTemplate(spec, config, accelerator, key, building, spawner, boot_timeout);
    if (!built.ok()) {
      fs::remove_all(building, error);
      return built.error();
    }
    // The old files go away only now; clones running from them keep their mappings.
    fs::remove_all(lease.files.dir, error);
    fs::rename(building, lease.files.dir, error);
    if (error) {
      return MakeError(ErrorCode::kInternal,
                       "renaming " + building + " to " + lease.files.dir + ": " + error.message());
    }
    // Its memory file moved with it, mtime kept: the manifest stays true.
    BBX_RETURN_IF_ERROR(ValidateTemplate(lease.files, key));
    lease.built = true;
  }
  // Taken under the exclusive lock, so RemoveUnusedTemplates (which needs both) never
  // sees this template unused between the check above and the clone's start.
  BBX_ASSIGN_OR_RETURN(lease.in_use, LockTemplateInUse(lease.files.dir));
  if (lease.built) {
    // Inputs changed (or a first build): templates of other keys no clone runs from
    // would stay on disk for ever.
    RemoveUnusedTemplates(config.template_dir, fs::path(lease.files.dir).filename().string(), log);
  }
  // Shared from here: other clones load at the same time; a rebuild waits.
  while (::flock(lease.lock.get(), LOCK_SH) != 0) {
    if (errno != EINTR) return ErrnoError("flock", lease.files.lock);
  }
  return lease;
}

}  // namespace beaconbox::qemu
