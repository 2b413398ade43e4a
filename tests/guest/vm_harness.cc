#include "tests/guest/vm_harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "common/base/agent_token.h"
#include "common/base/errno_error.h"

namespace beaconbox::guest::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

Result<pid_t> SpawnLogged(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork", argv[0]);
  if (pid == 0) {
    // If the test process dies, what it started dies with it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

bool WaitForPath(const std::string& path, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::access(path.c_str(), F_OK) == 0) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return false;
}

void EndProcess(pid_t& pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) {
      pid = -1;
      return;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  pid = -1;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

Status GuestVm::Start(const std::string& output_dir, bool deliver_token) {
  std::string kernel = output_dir + "/beaconbox-kernel-x86_64";
  std::string initrd = output_dir + "/beaconbox-initrd";
  for (const std::string& file : {kernel, initrd}) {
    if (::access(file.c_str(), R_OK) != 0) {
      return MakeError(ErrorCode::kNotFound, file + " missing: build the guest_image target");
    }
  }
  char tmpl[] = "/tmp/bbx-guest-test.XXXXXX";
  if (!::mkdtemp(tmpl)) return ErrnoError("mkdtemp", tmpl);
  work_dir_ = tmpl;
  std::error_code ec;
  fs::create_directories(work_dir_ + "/rootfs/bin", ec);
  for (const char* dir : {"proc", "dev", "sys", "tmp", "etc"})
    fs::create_directories(work_dir_ + "/rootfs/" + dir, ec);
  fs::copy_file("/bin/busybox", work_dir_ + "/rootfs/bin/busybox", ec);
  if (ec)
    return MakeError(ErrorCode::kNotFound,
                     "copy /bin/busybox: " + ec.message() + ": install busybox-static");
  fs::create_symlink("busybox", work_dir_ + "/rootfs/bin/sh", ec);

  std::string vfs_sock = work_dir_ + "/virtiofs.sock";
  BBX_ASSIGN_OR_RETURN(
      virtiofsd_pid_,
      SpawnLogged({"/usr/lib/qemu/virtiofsd", "--socket-path=" + vfs_sock, "-o",
                   "source=" + work_dir_ + "/rootfs", "-o", "cache=auto", "-o", "sandbox=chroot"},
                  work_dir_ + "/virtiofsd.log"));
  if (!WaitForPath(vfs_sock, milliseconds(10000))) {
    return MakeError(ErrorCode::kTimeout, "virtiofsd did not create its socket: " +
                                              ReadAll(work_dir_ + "/virtiofsd.log"));
  }
  std::vector<std::string> token_args;
  if (deliver_token) {
    BBX_ASSIGN_OR_RETURN(agent_token_, GenerateAgentToken());
    std::string token_file = work_dir_ + "/agent-token";
    UniqueFd token_fd(::open(token_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!token_fd || ::write(token_fd.get(), agent_token_.data(), agent_token_.size()) !=
                         static_cast<ssize_t>(agent_token_.size())) {
      return ErrnoError("writing", token_file);
    }
    token_args = {"-fw_cfg", std::string("name=") + kAgentTokenFwCfgName + ",file=" + token_file};
  }
  started_at_ = std::chrono::steady_clock::now();
  std::string agent_sock = work_dir_ + "/agent.sock";
  std::vector<std::string> argv = {
      "/usr/bin/qemu-system-x86_64",
      "-accel",
      "tcg",
      "-M",
      "q35",
      "-cpu",
      "max",
      "-m",
      "512",
      "-smp",
      "1",
      "-nographic",
      "-nodefaults",
      "-no-reboot",
      "-serial",
      "file:" + work_dir_ + "/console.log",
      "-kernel",
      kernel,
      "-initrd",
      initrd,
      "-append",
      "console=ttyS0 panic=-1 beaconbox.channel=virtio-serial:beaconbox.agent",
      "-object",
      "memory-backend-memfd,id=mem,size=512M,share=on",
      "-numa",
      "node,memdev=mem",
      "-chardev",
      "socket,id=vfs,path=" + vfs_sock,
      "-device",
      "vhost-user-fs-pci,chardev=vfs,tag=rootfs",
      "-device",
      "virtio-serial-pci,id=vser0",
      "-chardev",
      "socket,id=agent,path=" + agent_sock + ",server=on,wait=off",
      "-device",
      "virtserialport,chardev=agent,name=beaconbox.agent"};
  argv.insert(argv.end(), token_args.begin(), token_args.end());
  BBX_ASSIGN_OR_RETURN(qemu_pid_, SpawnLogged(argv, work_dir_ + "/qemu.log"));
  return Status::Ok();
}

Result<UniqueFd> GuestVm::ConnectAgent(milliseconds timeout) {
  std::string path = work_dir_ + "/agent.sock";
  if (!WaitForPath(path, timeout)) {
    return MakeError(ErrorCode::kTimeout,
                     "QEMU did not create " + path + ": " + ReadAll(work_dir_ + "/qemu.log"));
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    return ErrnoError("connect", path);
  return fd;
}

bool GuestVm::WaitForExit(milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (qemu_pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(qemu_pid_, nullptr, WNOHANG) == qemu_pid_) {
      qemu_pid_ = -1;
      return true;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  return qemu_pid_ <= 0;
}

void GuestVm::Stop() {
  EndProcess(qemu_pid_);
  EndProcess(virtiofsd_pid_);
  if (!work_dir_.empty()) {
    std::error_code ec;
    // virtiofsd leaves a lock file named after its socket path in /run/virtiofsd.
    std::string lock = work_dir_ + "/virtiofs.sock";
    std::replace(lock.begin(), lock.end(), '/', '.');
    fs::remove("/run/virtiofsd/" + lock + ".pid", ec);
    fs::remove_all(work_dir_, ec);
    work_dir_.clear();
  }
}

std::string GuestVm::ConsoleLog() const {
  return work_dir_.empty() ? "" : ReadAll(work_dir_ + "/console.log");
}

}  // namespace beaconbox::guest::testing
