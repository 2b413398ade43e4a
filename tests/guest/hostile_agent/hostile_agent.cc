// TEST ONLY, never installed: a hostile guest agent. It boots as /init of a test
// initrd (vminitd's image with this program as /init), answers the shim like vminitd
// well enough for a container to be created and started, then misbehaves on purpose.
// The container id picks the misbehaviour, so one image serves every scenario of
// tests/e2e/hostile_guest_e2e.sh:
//   flood-*    answers every ReadOutput at once with almost 4 MiB (the shim asks for
//              1 MiB), then endless 4 MiB data frames on the ReadOutput calls' stream
//              ids and on the pending Wait's, frames announcing more than the 4 MiB
//              maximum (4 MiB + 1 and 64 MiB, their bodies sent too);
//   garbage-*  a valid prefix (a ReadOutput answer, then a Response whose payload turns
//              into garbage), then random bytes without end;
//   nowait-*   acknowledges Kill, never answers Wait, acknowledges PowerOff and stays up;
//   bogus-*    answers on stream ids never asked for, pid 0 (id contains "pid0"), 1
//              ("pid1") or 4294967295 (otherwise), exit status 4294967295, and
//              Exec/Pids/ResizePty with error messages of almost 4 MiB full of newlines;
//   console-*  writes to the serial console without end;
//   anything else behaves (Kill ends the "process" with 128 + signal).
// No process runs: the container is make-believe; only the ttrpc traffic matters.
// Frames are written by hand here (not with common/ttrpc) because most of what this
// agent sends is what a correct ttrpc implementation refuses to produce.
#include <dirent.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "beaconbox/guest/v1/guest.pb.h"
#include "common/base/unique_fd.h"
#include "common/ttrpc/wire.pb.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "guest/vminitd/kernel_cmdline.h"
#include "guest/vminitd/log.h"
#include "guest/vminitd/system.h"

namespace beaconbox::guest::hostile {
namespace {

namespace task = ::containerd::task::v2;
namespace guestapi = ::beaconbox::guest::v1;
namespace wire = ::beaconbox::ttrpc::wire;

constexpr uint8_t kRequest = 1;
constexpr uint8_t kResponse = 2;
constexpr uint8_t kData = 3;
constexpr uint8_t kRemoteClosed = 0x1;
constexpr uint8_t kNoData = 0x4;
constexpr uint32_t kMaxMessage = 4 << 20;  // ttrpc's (and the shim's) frame limit
constexpr char kGuestService[] = "beaconbox.guest.v1.Guest";
constexpr char kTaskService[] = "containerd.task.v2.Task";

enum class Scenario { kBehave, kFlood, kGarbage, kNoWait, kBogus, kConsole };

Scenario ScenarioFor(const std::string& id) {
  auto starts = [&id](const char* prefix) { return id.rfind(prefix, 0) == 0; };
  if (starts("flood-")) return Scenario::kFlood;
  if (starts("garbage-")) return Scenario::kGarbage;
  if (starts("nowait-")) return Scenario::kNoWait;
  if (starts("bogus-")) return Scenario::kBogus;
  if (starts("console-")) return Scenario::kConsole;
  return Scenario::kBehave;
}

uint32_t BogusPid(const std::string& id) {
  if (id.find("pid0") != std::string::npos) return 0;
  if (id.find("pid1") != std::string::npos) return 1;
  return 4294967295u;
}

// xorshift64: the garbage is the same in every run.
class Noise {
 public:
  void Fill(std::string& buffer) {
    for (size_t i = 0; i + 8 <= buffer.size(); i += 8) {
      state_ ^= state_ << 13;
      state_ ^= state_ >> 7;
      state_ ^= state_ << 17;
      std::memcpy(buffer.data() + i, &state_, 8);
    }
  }

 private:
  uint64_t state_ = 0x9e3779b97f4a7c15ull;
};

class Session {
 public:
  explicit Session(UniqueFd fd) : fd_(std::move(fd)) {}

  // Serves requests until the host end goes away. The misbehaving thread, if any,
  // is left to run into the closed descriptor and end.
  void Run() {
    for (;;) {
      uint8_t header[10];
      if (!ReadExact(header, sizeof(header))) break;
      uint32_t length = Be32(header);
      uint32_t stream_id = Be32(header + 4);
      uint8_t type = header[8];
      if (length > kMaxMessage) break;  // the shim never sends that
      std::string payload(length, '\0');
      if (!ReadExact(payload.data(), length)) break;
      if (type == kRequest) {
        wire::Request request;
        if (!request.ParseFromString(payload)) break;
        Handle(stream_id, request);
      }
    }
    Log("hostile agent: connection ended");
    stop_ = true;
    // The descriptor stays open (leaked on purpose) while a misbehaving thread may
    // still write to it; the next connection gets a new one.
    if (misbehaving_) {
      (void)fd_.Release();
    }
  }

 private:
  static uint32_t Be32(const uint8_t* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
  }

  bool ReadExact(void* out, size_t n) {
    char* p = static_cast<char*>(out);
    while (n > 0) {
      ssize_t got = ::read(fd_.get(), p, n);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      p += got;
      n -= size_t(got);
    }
    return true;
  }

  bool WriteAllLocked(const char* p, size_t n) {
    while (n > 0) {
      ssize_t put = ::write(fd_.get(), p, n);
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) return false;
      p += put;
      n -= size_t(put);
    }
    return true;
  }

  // A frame whose header announces `length` while `payload` is what follows (they
  // differ only when lying on purpose).
  bool WriteFrame(uint32_t stream_id, uint8_t type, uint8_t flags, std::string_view payload,
                  uint32_t length) {
    char header[10];
    for (int i = 0; i < 4; ++i) header[i] = char(length >> (24 - 8 * i));
    for (int i = 0; i < 4; ++i) header[4 + i] = char(stream_id >> (24 - 8 * i));
    header[8] = char(type);
    header[9] = char(flags);
    std::lock_guard lock(write_mutex_);
    return WriteAllLocked(header, sizeof(header)) && WriteAllLocked(payload.data(), payload.size());
  }
  bool WriteFrame(uint32_t stream_id, uint8_t type, uint8_t flags, std::string_view payload) {
    return WriteFrame(stream_id, type, flags, payload, uint32_t(payload.size()));
  }

  bool Respond(uint32_t stream_id, const std::string& payload, int32_t code = 0,
               const std::string& message = "") {
    wire::Response response;
    response.mutable_status()->set_code(code);
    response.mutable_status()->set_message(message);
    if (code == 0) response.set_payload(payload);
    return WriteFrame(stream_id, kResponse, 0, response.SerializeAsString());
  }

  bool RespondError(uint32_t stream_id, int32_t code, const std::string& message) {
    return Respond(stream_id, "", code, message);
  }

  // Answers on stream ids the shim never used: even ids (servers' own), and odd ids
  // far beyond any the shim reaches in a test.
  void AnswerUnaskedIds() {
    static constexpr uint32_t kIds[] = {0, 2, 4, 0x7fffffff, 0xfffffffd, 0xfffffffe, 0xffffffff};
    task::WaitResponse fake_exit;
    fake_exit.set_exit_status(4294967295u);
    for (uint32_t id : kIds) {
      Respond(id, fake_exit.SerializeAsString());
      RespondError(id, 13, "a response nobody asked for");
      WriteFrame(id, kData, 0, "data nobody asked for");
      WriteFrame(id, kData, kRemoteClosed | kNoData, "");
    }
  }

  std::string OversizedErrorMessage() {
    // Just under what one frame may carry, with newlines and escape sequences: it must
    // reach neither containerd nor the shim's log whole. (Bytes that are not UTF-8 would
    // make the whole Response unparsable: a proto3 string; the shim then reports that.)
    std::string line = "\x1b[31mhostile guest error\r\n";
    std::string message;
    while (message.size() + line.size() < kMaxMessage - 4096) message += line;
    return message;
  }

  void Handle(uint32_t stream_id, const wire::Request& request) {
    const std::string& service = request.service();
    const std::string& method = request.method();
    const std::string& body = request.payload();
    Scenario scenario;
    {
      std::lock_guard lock(state_mutex_);
      scenario = scenario_;
    }
    if (scenario == Scenario::kBogus) AnswerUnaskedIds();

    if (service == kGuestService) {
      if (method == "Hello") {
        guestapi::HelloResponse hello;
        struct utsname uts {};
        ::uname(&uts);
        hello.set_protocol_version(1);
        hello.set_kernel_release(uts.release);
        hello.set_agent_version("hostile-test-agent");
        Respond(stream_id, hello.SerializeAsString());
      } else if (method == "Refresh") {  // answered as vminitd does: not this test's subject
        guestapi::RefreshRequest refresh;
        refresh.ParseFromString(body);
        guestapi::RefreshResponse refreshed;
        refreshed.set_entropy_bytes_added(static_cast<uint32_t>(refresh.entropy().size()));
        refreshed.set_unix_time_ns(refresh.unix_time_ns());
        Respond(stream_id, refreshed.SerializeAsString());
      } else if (method == "CreateBundle") {
        guestapi::CreateBundleRequest create;
        create.ParseFromString(body);
        {
          std::lock_guard lock(state_mutex_);
          container_id_ = create.container_id();
          scenario_ = ScenarioFor(container_id_);
        }
        Log("hostile agent: container " + container_id_.substr(0, 64));
        guestapi::CreateBundleResponse bundle;
        bundle.set_bundle("/run/beaconbox/bundles/" + create.container_id());
        Respond(stream_id, bundle.SerializeAsString());
      } else if (method == "ReadOutput") {
        ReadOutput(stream_id, scenario);
      } else if (method == "WriteInput") {
        guestapi::WriteInputRequest write;
        write.ParseFromString(body);
        guestapi::WriteInputResponse written;
        written.set_written(uint32_t(write.data().size()));
        Respond(stream_id, written.SerializeAsString());
      } else if (method == "PowerOff") {
        Respond(stream_id, guestapi::Empty().SerializeAsString());
        if (scenario != Scenario::kNoWait) PowerOffSoon();
      } else {  // ConfigureNetwork, RemoveBundle, CloseInput
        Respond(stream_id, guestapi::Empty().SerializeAsString());
      }
      return;
    }
    if (service != kTaskService) {
      RespondError(stream_id, 12, "hostile agent: no service " + service.substr(0, 64));
      return;
    }
    const uint32_t pid = scenario == Scenario::kBogus ? BogusPid(container_id_) : 42;
    if (method == "Create") {
      task::CreateTaskResponse create;
      create.set_pid(pid);
      Respond(stream_id, create.SerializeAsString());
    } else if (method == "Start") {
      task::StartResponse start;
      start.set_pid(pid);
      Respond(stream_id, start.SerializeAsString());
      StartMisbehaving(scenario);
    } else if (method == "Wait") {
      std::lock_guard lock(state_mutex_);
      pending_waits_.push_back(stream_id);
      if (exited_ && scenario != Scenario::kNoWait) AnswerWaitsLocked();
    } else if (method == "Kill") {
      task::KillRequest kill;
      kill.ParseFromString(body);
      Respond(stream_id, google::protobuf::Empty().SerializeAsString());
      if (scenario == Scenario::kNoWait) return;  // acknowledged, and nothing happens
      std::lock_guard lock(state_mutex_);
      exited_ = true;
      exit_status_ = scenario == Scenario::kBogus ? 4294967295u : 128 + kill.signal();
      AnswerWaitsLocked();
      guestapi::ReadOutputResponse eof;
      eof.set_eof(true);
      for (uint32_t id : pending_reads_) Respond(id, eof.SerializeAsString());
      pending_reads_.clear();
    } else if (method == "Delete") {
      std::lock_guard lock(state_mutex_);
      if (!exited_) {
        RespondError(stream_id, 9, "hostile agent: the process still runs");
        return;
      }
      task::DeleteResponse deleted;
      deleted.set_pid(pid);
      deleted.set_exit_status(exit_status_);
      Respond(stream_id, deleted.SerializeAsString());
    } else if (scenario == Scenario::kBogus &&
               (method == "Exec" || method == "Pids" || method == "ResizePty")) {
      RespondError(stream_id, 2, OversizedErrorMessage());
    } else if (method == "Pids") {
      task::PidsResponse pids;
      pids.add_processes()->set_pid(pid);
      Respond(stream_id, pids.SerializeAsString());
    } else {
      Respond(stream_id, google::protobuf::Empty().SerializeAsString());
    }
  }

  // Output is pulled, one call per stream in flight. A well-behaved process has none
  // until it exits (the call stays pending, answered with eof then); the flood answers
  // at once with almost 4 MiB, four times what the shim asks for.
  void ReadOutput(uint32_t stream_id, Scenario scenario) {
    std::lock_guard lock(state_mutex_);
    if (exited_ && scenario != Scenario::kNoWait) {
      guestapi::ReadOutputResponse eof;
      eof.set_eof(true);
      Respond(stream_id, eof.SerializeAsString());
      return;
    }
    if (scenario == Scenario::kFlood && misbehaving_) {
      if (flood_answer_.empty()) {
        guestapi::ReadOutputResponse chunk;
        chunk.set_data(std::string(kMaxMessage - 64, 'F'));
        flood_answer_ = chunk.SerializeAsString();
      }
      Respond(stream_id, flood_answer_);
      answered_reads_.push_back(stream_id);
      if (answered_reads_.size() > 2) answered_reads_.erase(answered_reads_.begin());
      return;
    }
    pending_reads_.push_back(stream_id);
  }

  void AnswerWaitsLocked() {
    task::WaitResponse wait;
    wait.set_exit_status(exit_status_);
    wait.mutable_exited_at()->set_seconds(::time(nullptr));
    for (uint32_t id : pending_waits_) Respond(id, wait.SerializeAsString());
    pending_waits_.clear();
  }

  void PowerOffSoon() {
    std::thread([] {
      ::usleep(100 * 1000);
      ::sync();
      ::reboot(RB_POWER_OFF);
    }).detach();
  }

  void StartMisbehaving(Scenario scenario) {
    if (scenario == Scenario::kBehave || scenario == Scenario::kNoWait ||
        scenario == Scenario::kBogus || misbehaving_.exchange(true)) {
      return;
    }
    Log("hostile agent: misbehaving now");
    std::thread([this, scenario] {
      // Let the shim open its output streams and its Wait first.
      ::sleep(2);
      if (scenario == Scenario::kFlood) Flood();
      if (scenario == Scenario::kGarbage) Garbage();
      if (scenario == Scenario::kConsole) ConsoleFlood();
    }).detach();
  }

  std::vector<uint32_t> Snapshot(const std::vector<uint32_t>& ids) {
    std::lock_guard lock(state_mutex_);
    return ids;
  }

  void Flood() {
    // The ReadOutput calls pending since Start get their almost 4 MiB now, later ones
    // at once (ReadOutput).
    {
      std::lock_guard lock(state_mutex_);
      std::vector<uint32_t> pending;
      pending.swap(pending_reads_);
      for (uint32_t id : pending) {
        guestapi::ReadOutputResponse chunk;
        chunk.set_data(std::string(kMaxMessage - 64, 'F'));
        Respond(id, chunk.SerializeAsString());
        answered_reads_.push_back(id);
      }
    }
    const std::string full(kMaxMessage, 'D');  // a data frame of the maximum size
    const std::string over(kMaxMessage + 1, 'O');
    const std::string big_body(1 << 20, 'B');
    uint64_t rounds = 0;
    while (!stop_) {
      auto outputs = Snapshot(answered_reads_);
      auto waits = Snapshot(pending_waits_);
      if (outputs.empty()) outputs.push_back(1);
      // Data frames without end on the output calls' stream ids.
      for (int i = 0; i < 4; ++i) {
        for (uint32_t id : outputs) {
          if (!WriteFrame(id, kData, 0, full)) return;
        }
      }
      // Data frames on the unary Wait's stream id, while it is pending and after.
      for (uint32_t id : waits.empty() ? std::vector<uint32_t>{last_wait_} : waits) {
        last_wait_ = id;
        if (id != 0 && !WriteFrame(id, kData, 0, full)) return;
      }
      // Announcing more than the maximum: 4 MiB + 1, then 64 MiB, bodies sent.
      if (!WriteFrame(outputs[0], kData, 0, over)) return;
      if (rounds % 4 == 3) {
        const uint32_t target = last_wait_ != 0 ? last_wait_ : outputs[0];
        if (!WriteFrame(target, kResponse, 0, "", 64u << 20)) return;
        for (int i = 0; i < 64; ++i) {
          std::lock_guard lock(write_mutex_);
          if (!WriteAllLocked(big_body.data(), big_body.size())) return;
        }
      }
      if (++rounds % 16 == 0) Log("hostile agent: flood round " + std::to_string(rounds));
    }
  }

  void Garbage() {
    std::vector<uint32_t> reads;
    {
      std::lock_guard lock(state_mutex_);
      reads.swap(pending_reads_);
    }
    guestapi::ReadOutputResponse chunk;
    chunk.set_data("hostile agent: a valid prefix\n");
    if (!reads.empty() && !Respond(reads[0], chunk.SerializeAsString())) return;
    // A Response that starts as a valid one and turns into garbage.
    wire::Response response;
    response.set_payload(chunk.SerializeAsString());
    std::string half = response.SerializeAsString().substr(0, 8) + std::string(64, '\xff');
    if (reads.size() > 1 && !WriteFrame(reads[1], kResponse, 0, half)) return;
    Log("hostile agent: garbage from here on");
    Noise noise;
    std::string buffer(1 << 20, '\0');
    while (!stop_) {
      noise.Fill(buffer);
      std::lock_guard lock(write_mutex_);
      if (!WriteAllLocked(buffer.data(), buffer.size())) return;
    }
  }

  void ConsoleFlood() {
    UniqueFd console(::open("/dev/console", O_WRONLY | O_CLOEXEC));
    int fd = console ? console.get() : STDERR_FILENO;
    std::string line(1023, 'C');
    line += '\n';
    for (;;) {
      ssize_t ignored = ::write(fd, line.data(), line.size());
      (void)ignored;
    }
  }

  UniqueFd fd_;
  std::mutex write_mutex_;
  std::mutex state_mutex_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> misbehaving_{false};
  Scenario scenario_ = Scenario::kBehave;
  std::string container_id_;
  std::vector<uint32_t> pending_reads_;   // ReadOutput calls not answered yet
  std::vector<uint32_t> answered_reads_;  // the flood's last answered ReadOutput calls
  std::string flood_answer_;
  std::vector<uint32_t> pending_waits_;
  uint32_t last_wait_ = 0;  // the flood thread's only
  bool exited_ = false;
  uint32_t exit_status_ = 0;
};

// /dev/vportNpM of the virtio-serial port `name` (as vminitd's main.cc finds it).
std::string FindVirtioPort(const std::string& name) {
  constexpr char kPorts[] = "/sys/class/virtio-ports";
  for (;;) {
    if (DIR* dir = ::opendir(kPorts)) {
      std::string found;
      while (struct dirent* entry = ::readdir(dir)) {
        std::string port = entry->d_name;
        if (port == "." || port == "..") continue;
        auto port_name = ReadSmallFile(std::string(kPorts) + "/" + port + "/name", 256);
        if (port_name.ok() && (*port_name == name + "\n" || *port_name == name)) found = port;
      }
      ::closedir(dir);
      if (!found.empty()) return "/dev/" + found;
    }
    ::usleep(100 * 1000);
  }
}

[[noreturn]] void Serve(const ChannelSpec& channel) {
  for (;;) {
    UniqueFd connection;
    if (channel.kind == ChannelSpec::Kind::kVsock) {
      static UniqueFd listener;
      if (!listener) {
        listener.Reset(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_vm addr{};
        addr.svm_family = AF_VSOCK;
        addr.svm_cid = VMADDR_CID_ANY;
        addr.svm_port = channel.vsock_port;
        if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
            ::listen(listener.get(), 8) != 0) {
          Log("hostile agent: cannot listen on vsock");
          listener.Reset();
          ::sleep(1);
          continue;
        }
        Log("serving on vsock port " + std::to_string(channel.vsock_port) + " (hostile agent)");
      }
      connection.Reset(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    } else {
      std::string path = FindVirtioPort(channel.port_name);
      connection.Reset(::open(path.c_str(), O_RDWR | O_CLOEXEC));
      if (connection) Log("serving on virtio-serial " + path + " (hostile agent)");
    }
    if (!connection) {
      ::sleep(1);
      continue;
    }
    // Sessions live as long as the VM: a misbehaving thread may still use one.
    auto* session = new Session(std::move(connection));
    session->Run();
    ::usleep(100 * 1000);
  }
}

}  // namespace
}  // namespace beaconbox::guest::hostile

int main() {
  using namespace beaconbox::guest;
  ::signal(SIGPIPE, SIG_IGN);
  if (::getpid() == 1) {
    MountBaseFilesystems();
    OpenConsole();
    LoadModules("/etc/beaconbox/modules.order");
  }
  Log("starting: HOSTILE TEST AGENT, not vminitd");
  std::map<std::string, std::string> params;
  if (auto cmdline = beaconbox::ReadSmallFile("/proc/cmdline", 64 * 1024); cmdline.ok()) {
    params = ParseCmdline(*cmdline);
  }
  ChannelSpec channel;
  channel.port_name = "beaconbox.agent";
  if (auto it = params.find(std::string(kChannelParam)); it != params.end()) {
    if (auto parsed = ParseChannelSpec(it->second); parsed.ok()) channel = *parsed;
  }
  hostile::Serve(channel);
}
