// vminitd: PID 1 of the beaconbox guest. Sets up the system, then serves the shim
// over the channel the kernel command line names, for as long as the VM lives.
#include <dirent.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <list>
#include <map>
#include <memory>
#include <string_view>
#include <thread>

#include "common/base/errno_error.h"
#include "guest/vminitd/boot_timeline.h"
#include "guest/vminitd/connection_limit.h"
#include "guest/vminitd/kernel_cmdline.h"
#include "guest/vminitd/kernel_modules.h"
#include "guest/vminitd/log.h"
#include "guest/vminitd/reaper.h"
#include "guest/vminitd/services.h"
#include "guest/vminitd/system.h"

namespace beaconbox::guest {
namespace {

// /dev/vportNpM of the virtio-serial port called `name`, once the driver has it.
Result<std::string> FindVirtioPort(const std::string& name) {
  constexpr char kPorts[] = "/sys/class/virtio-ports";
  for (int attempt = 0; attempt < 300; ++attempt) {  // up to 30 s: modules may still probe
    if (DIR* dir = ::opendir(kPorts)) {
      std::string found;
      while (struct dirent* entry = ::readdir(dir)) {
        std::string port = entry->d_name;
        if (port == "." || port == "..") continue;
        auto port_name = ReadSmallFile(std::string(kPorts) + "/" + port + "/name", 256);
        if (port_name.ok() && *port_name == name + "\n") found = port;
        if (port_name.ok() && *port_name == name) found = port;
      }
      ::closedir(dir);
      if (!found.empty()) return "/dev/" + found;
    }
    ::usleep(100 * 1000);
  }
  return MakeError(ErrorCode::kNotFound,
                   "virtio-serial port " + name +
                       " not found under /sys/class/virtio-ports: does the VM have it?");
}

[[noreturn]] void ServeVirtioSerial(Runtime& runtime, KeptAgentToken& agent_token,
                                    const std::string& port_name) {
  for (;;) {
    auto path = FindVirtioPort(port_name);
    if (!path.ok()) {
      Log(path.error().message);
      continue;
    }
    UniqueFd fd(::open(path->c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) {
      Log(ErrnoError("open", *path).message);
      ::sleep(1);
      continue;
    }
    SetReadyTime();
    Log("serving on virtio-serial " + *path + " (" + port_name + ")");
    AgentSession(runtime, agent_token).Serve(std::move(fd));
    // The host end went away (shim restart); reopen and serve the next one.
    Log("virtio-serial connection ended; reopening");
    ::usleep(100 * 1000);
  }
}

[[noreturn]] void ServeVsock(Runtime& runtime, KeptAgentToken& agent_token, unsigned port) {
  for (;;) {
    UniqueFd listener(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_vm addr {};
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_ANY;
    addr.svm_port = port;
    if (!listener ||
        ::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(listener.get(), 8) != 0) {
      Log(ErrnoError("listen on vsock port", std::to_string(port)).message);
      ::sleep(1);
      continue;
    }
    SetReadyTime();
    Log("serving on vsock port " + std::to_string(port));
    std::list<std::shared_ptr<TrackedConnection<AgentSession>>> sessions;  // this thread's only
    bool refusal_logged = false;
    for (;;) {
      UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) {
        if (errno == EINTR) continue;
        Log(ErrnoError("accept on vsock port", std::to_string(port)).message);
        break;
      }
      if (!MakeRoom(sessions, std::chrono::steady_clock::now())) {
        if (!refusal_logged) Log("vsock: too many agent connections; closing new ones");
        refusal_logged = true;
        continue;  // `conn` closes
      }
      refusal_logged = false;
      auto entry = std::make_shared<TrackedConnection<AgentSession>>();
      entry->session = std::make_unique<AgentSession>(runtime, agent_token);
      entry->accepted = std::chrono::steady_clock::now();
      sessions.push_back(entry);
      std::thread([entry, fd = conn.Release()] {
        entry->session->Serve(UniqueFd(fd));
        entry->ended = true;
      }).detach();
    }
  }
}

}  // namespace
}  // namespace beaconbox::guest

int main(int argc, char** argv) {
  using namespace beaconbox::guest;
  using beaconbox::ReadSmallFile;
  // Run by the kernel as its module loader (request_module), not as PID 1.
  if (argc > 0 && std::string_view(argv[0]).ends_with("/bbx-modprobe"))
    return ModprobeMain(argc, argv);
  MarkBootStep("vminitd-start");
  Reaper::BlockSigchld();  // before any thread exists
  ::signal(SIGPIPE,
           SIG_IGN);  // a closed pipe is an error return, not death (children get defaults back)
  if (::getpid() == 1) {
    MountBaseFilesystems();
    OpenConsole();
  }
  ::setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  Log("starting (beaconbox " BEACONBOX_VERSION ")");
  Reaper::Instance().Start();

  std::map<std::string, std::string> params;
  if (auto cmdline = ReadSmallFile("/proc/cmdline", 64 * 1024); cmdline.ok())
    params = ParseCmdline(*cmdline);
  if (::getpid() == 1) {
    LoadModules("/etc/beaconbox/modules.order");
    // The initramfs is guest RAM for good: the loaded modules' files go (2.1 MiB).
    Log("removed " + std::to_string(RemoveListedModuleFiles("/etc/beaconbox/modules.order")) +
        " kernel module files");
    SetModprobeHelper();
    if (int order = PageReportingOrder(params); order >= 0) SetPageReportingOrder(order);
    MarkBootStep("modules-loaded");
    SetHostname(params.count("beaconbox.hostname") ? params["beaconbox.hostname"] : "beaconbox");
    BringUpLoopback();
    (void)MakeDirs(kBundleRoot, 0711);
    (void)MakeDirs(kStateRoot, 0700);
  }

  ChannelSpec channel;
  channel.port_name = "beaconbox.agent";
  if (auto it = params.find(std::string(kChannelParam)); it != params.end()) {
    auto parsed = ParseChannelSpec(it->second);
    if (parsed.ok()) {
      channel = *parsed;
    } else {
      Log(parsed.error().message + "; using virtio-serial:beaconbox.agent");
    }
  }
  // The token sealing the agent channel (common/base/agent_token.h): without it every
  // call is refused. Waits here for fw_cfg (and logs what is wrong); the calls read it
  // when they need it (KeptAgentToken): a VM restored from a template has its own.
  (void)ReadAgentToken(std::chrono::seconds(5));
  MarkBootStep("agent-token-read");
  static Runtime runtime;
  static KeptAgentToken agent_token(ReadAgentTokenNow);
  if (channel.kind == ChannelSpec::Kind::kVsock) {
    ServeVsock(runtime, agent_token, channel.vsock_port);
  }
  ServeVirtioSerial(runtime, agent_token, channel.port_name);
}
