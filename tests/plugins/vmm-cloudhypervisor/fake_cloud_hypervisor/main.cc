// fake-cloud-hypervisor: a TEST DOUBLE of Cloud Hypervisor for machines without KVM
// or a CH binary (README.md here). It serves CH's REST API on --api-socket, checks
// each request body against CH's documented schema (schema_check.h), and runs the VM
// with QEMU (TCG) underneath, relaying CH's hybrid vsock to a virtio-serial port.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "common/base/fd_passing.h"
#include "common/base/unique_fd.h"
#include "plugins/vmm-qemu/qmp.h"
#include "tests/plugins/common/unix_socket.h"
#include "tests/plugins/vmm-cloudhypervisor/fake_cloud_hypervisor/qemu_translation.h"
#include "tests/plugins/vmm-cloudhypervisor/fake_cloud_hypervisor/schema_check.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using namespace beaconbox;
using namespace beaconbox::fakech;
using beaconbox::plugins::testing::ConnectUnix;
using beaconbox::plugins::testing::ListenUnix;
using namespace std::chrono_literals;
using nlohmann::json;

constexpr size_t kMaxRequestBody = 1 << 20;
// Descriptors one request may carry; more is refused (CH's own bound is the kernel's).
constexpr size_t kMaxRequestFds = 16;
// CH's virtio-net minimum MTU (IPv6's).
constexpr uint64_t kMinNetMtu = 1280;

void Log(const std::string& line) { std::cerr << "fake-cloud-hypervisor: " << line << std::endl; }

// Copies both ways until either side closes.
void Splice(UniqueFd a, UniqueFd b) {
  char buffer[64 * 1024];
  pollfd fds[2] = {{a.get(), POLLIN, 0}, {b.get(), POLLIN, 0}};
  while (true) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (n <= 0) return;
      const int to = fds[1 - i].fd;
      for (ssize_t done = 0; done < n;) {
        ssize_t w = ::send(to, buffer + done, static_cast<size_t>(n - done), MSG_NOSIGNAL);
        if (w <= 0) return;
        done += w;
      }
    }
  }
}

// The API connection as a Beast sync stream read with recvmsg: descriptors that come
// as SCM_RIGHTS are kept for the request being read, as CH's HTTP server keeps them
// (vm.add-net's TAPs). Close-on-exec on arrival; the boot clears it on QEMU's side.
class FdCollectingStream {
 public:
  explicit FdCollectingStream(UniqueFd fd) : fd_(std::move(fd)) {}

  template <class Buffers>
  size_t read_some(const Buffers& buffers, beast::error_code& error) {
    const asio::mutable_buffer buffer = *asio::buffer_sequence_begin(buffers);
    auto received = ReceiveWithFds(fd_.get(), {static_cast<char*>(buffer.data()), buffer.size()},
                                   kMaxRequestFds);
    if (!received.ok()) {
      error = beast::error_code(errno, beast::system_category());
      return 0;
    }
    if (received->size == 0) {
      error = asio::error::eof;
      return 0;
    }
    error = {};
    if (received->fds_dropped) fds_truncated_ = true;  // more than kMaxRequestFds: closed
    for (UniqueFd& fd : received->fds) fds_.push_back(std::move(fd));
    return received->size;
  }
  template <class Buffers>
  size_t read_some(const Buffers& buffers) {
    beast::error_code error;
    size_t n = read_some(buffers, error);
    if (error) throw beast::system_error(error);
    return n;
  }
  template <class Buffers>
  size_t write_some(const Buffers& buffers, beast::error_code& error) {
    const asio::const_buffer buffer = *asio::buffer_sequence_begin(buffers);
    ssize_t n;
    do {
      n = ::send(fd_.get(), buffer.data(), buffer.size(), MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      error = beast::error_code(errno, beast::system_category());
      return 0;
    }
    error = {};
    return static_cast<size_t>(n);
  }
  template <class Buffers>
  size_t write_some(const Buffers& buffers) {
    beast::error_code error;
    size_t n = write_some(buffers, error);
    if (error) throw beast::system_error(error);
    return n;
  }

  // The descriptors received since the last call, and whether some were lost.
  std::vector<UniqueFd> TakeFds(bool* truncated) {
    *truncated = fds_truncated_;
    fds_truncated_ = false;
    return std::move(fds_);
  }

 private:
  UniqueFd fd_;
  std::vector<UniqueFd> fds_;
  bool fds_truncated_ = false;
};

class FakeVmm {
 public:
  FakeVmm(ApiSchema schema, std::string api_socket, std::string qemu, std::string version)
      : schema_(std::move(schema)),
        api_socket_(std::move(api_socket)),
        qemu_(std::move(qemu)),
        version_(std::move(version)) {
    std::string dir = std::filesystem::path(api_socket_).parent_path().string();
    paths_.qmp_socket = dir + "/fake-ch-qmp.sock";
    paths_.agent_socket = dir + "/fake-ch-agent.sock";
  }

  int Serve() {
    UniqueFd listen = ListenUnix(api_socket_);
    if (!listen) {
      Log("cannot listen on --api-socket " + api_socket_ + ": " + std::strerror(errno));
      return 1;
    }
    while (!exit_) {
      pollfd wait{listen.get(), POLLIN, 0};
      int ready = ::poll(&wait, 1, 200);
      ReapQemu();
      if (exit_) break;
      if (ready <= 0) continue;
      UniqueFd client(::accept4(listen.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (client) ServeConnection(std::move(client));
    }
    StopQemu();
    ::unlink(api_socket_.c_str());
    if (!vsock_socket_.empty()) ::unlink(vsock_socket_.c_str());
    return 0;
  }

 private:
  struct Answer {
    http::status status = http::status::no_content;
    std::string body;  // JSON for 200, text for errors
  };

  static Answer Text(http::status status, const std::string& text) {
    return {status, "fake-cloud-hypervisor: " + text + "\n"};
  }

  void ServeConnection(UniqueFd fd) {
    FdCollectingStream socket(std::move(fd));
    beast::flat_buffer buffer;
    while (true) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(kMaxRequestBody);
      beast::error_code error;
      http::read(socket, buffer, parser, error);
      if (error) return;
      const auto& request = parser.get();
      bool truncated = false;
      std::vector<UniqueFd> fds = socket.TakeFds(&truncated);
      Answer answer =
          truncated || fds.size() > kMaxRequestFds
              ? Text(http::status::bad_request, "more than " + std::to_string(kMaxRequestFds) +
                                                    " descriptors with one request")
              : Dispatch(request, std::move(fds));
      http::response<http::string_body> response{answer.status, request.version()};
      response.set(http::field::server, "fake-cloud-hypervisor");
      if (!answer.body.empty()) {
        response.set(http::field::content_type,
                     answer.status == http::status::ok ? "application/json" : "text/plain");
        response.body() = answer.body;
      }
      response.keep_alive(request.keep_alive());
      response.prepare_payload();
      http::write(socket, response, error);
      if (error || !request.keep_alive() || exit_) return;
    }
  }

  Answer Dispatch(const http::request<http::string_body>& request, std::vector<UniqueFd> fds) {
    std::string target(request.target());
    const std::string prefix = "/api/v1/";
    if (target.rfind(prefix, 0) != 0 || !schema_.Serves(target.substr(prefix.size()))) {
      return Text(http::status::not_found, "no such call " + target);
    }
    const std::string call = target.substr(prefix.size());
    if (std::string(request.method_string()) != schema_.MethodOf(call)) {
      return Text(http::status::method_not_allowed, call + " takes " + schema_.MethodOf(call) +
                                                        ", not " +
                                                        std::string(request.method_string()));
    }
    json body;
    const std::string body_type = schema_.BodyTypeOf(call);
    if (!body_type.empty()) {
      body = json::parse(request.body(), nullptr, false);
      if (body.is_discarded()) return Text(http::status::bad_request, call + ": body is not JSON");
      if (Status checked = schema_.Check(body_type, body); !checked.ok()) {
        return Text(http::status::bad_request, call + ": " + checked.error().message);
      }
    } else if (!request.body().empty()) {
      return Text(http::status::bad_request, call + " takes no body");
    }
    return Handle(call, body, std::move(fds));
  }

  // Descriptors reach only vm.add-net (CH drops those of any other call here).
  Answer Handle(const std::string& call, const json& body, std::vector<UniqueFd> fds) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (call == "vmm.ping") {
      return {http::status::ok, json{{"version", version_},
                                     {"build_version", "fake-cloud-hypervisor (QEMU TCG)"},
                                     {"pid", ::getpid()},
                                     {"features", json::array({"fw_cfg"})}}
                                    .dump()};
    }
    if (call == "vmm.shutdown") {
      StopQemuLocked();
      exit_ = true;
      return {};
    }
    if (call == "vm.create") {
      if (!config_.is_null())
        return Text(http::status::internal_server_error, "VM already created");
      config_ = body;
      state_ = "Created";
      return {};
    }
    if (config_.is_null()) return Text(http::status::not_found, call + ": the VM is not created");
    if (call == "vm.info") {
      return {http::status::ok, json{{"config", config_},
                                     {"state", state_},
                                     {"memory_actual_size", config_["memory"].value("size", 0)}}
                                    .dump()};
    }
    if (call == "vm.boot") return Boot();
    if (call == "vm.pause" || call == "vm.resume") {
      const bool pause = call == "vm.pause";
      if (state_ != (pause ? "Running" : "Paused") || !qmp_) {
        return Text(http::status::internal_server_error, call + ": the VM is " + state_);
      }
      if (Status done = qmp_->Execute(pause ? "stop" : "cont", 5s); !done.ok()) {
        return Text(http::status::internal_server_error, call + ": " + done.error().message);
      }
      state_ = pause ? "Paused" : "Running";
      return {};
    }
    if (call == "vm.shutdown") {
      StopQemuLocked();
      state_ = "Shutdown";
      return {};
    }
    if (call == "vm.delete") {
      StopQemuLocked();
      config_ = json();
      net_fds_.clear();
      vcpus_ = ram_ = 0;
      dimms_ = 0;
      state_ = "";
      return {};
    }
    if (call == "vm.resize") return Resize(body);
    if (call == "vm.add-net" && state_ == "Created") return ColdAddNet(body, std::move(fds));
    // vm.add-*, vm.remove-device: the body was checked; QEMU hotplug is not emulated.
    return Text(http::status::internal_server_error,
                call + " is not emulated (the double checks its body only; see its README)");
  }

  // vm.add-net before vm.boot, CH's rules: the TAP descriptors came as SCM_RIGHTS (any
  // `fds` in the body are stale numbers and ignored), num_queues (default 2) is at
  // least 2 and twice the number of descriptors when there are some, no more queue
  // pairs than boot vCPUs, an MTU of at least 1280, an id unique in the VmConfig. The
  // net joins the stored VmConfig (with the descriptors this process now holds, as CH
  // reports them in vm.info) and QEMU gets them at vm.boot; 204, as CH's cold-plug.
  Answer ColdAddNet(json net, std::vector<UniqueFd> fds) {
    net.erase("fds");
    const uint64_t queues = net.value("num_queues", uint64_t{2});
    if (queues < 2) {
      return Text(http::status::bad_request,
                  "vm.add-net: num_queues " + std::to_string(queues) + " is below 2");
    }
    if (!fds.empty() && queues != fds.size() * 2) {
      return Text(http::status::bad_request,
                  "vm.add-net: num_queues " + std::to_string(queues) + " does not match the " +
                      std::to_string(fds.size()) + " descriptor(s) sent (one per queue pair)");
    }
    const uint64_t vcpus = config_["cpus"].value("boot_vcpus", uint64_t{1});
    if (queues / 2 > vcpus) {
      return Text(http::status::bad_request, "vm.add-net: " + std::to_string(queues / 2) +
                                                 " queue pairs for " + std::to_string(vcpus) +
                                                 " boot vCPUs");
    }
    if (net.contains("mtu") && net["mtu"].get<uint64_t>() < kMinNetMtu) {
      return Text(http::status::bad_request, "vm.add-net: mtu below " + std::to_string(kMinNetMtu));
    }
    if (net.contains("id")) {
      const std::string id = net["id"].get<std::string>();
      for (const char* kind : {"disks", "net", "fs", "pmem", "devices", "vdpa"}) {
        for (const auto& device : config_.value(kind, json::array())) {
          if (device.is_object() && device.value("id", "") == id) {
            return Text(http::status::conflict, "vm.add-net: the id " + id + " is taken");
          }
        }
      }
    }
    if (!fds.empty()) {
      json numbers = json::array();
      for (const auto& fd : fds) numbers.push_back(fd.get());
      net["fds"] = numbers;
      for (auto& fd : fds) net_fds_.push_back(std::move(fd));
    }
    if (!config_.contains("net")) config_["net"] = json::array();
    config_["net"].push_back(std::move(net));
    return {};
  }

  // vm.resize by QEMU hotplug: vCPUs into free CPU slots (query-hotpluggable-cpus,
  // device_add), memory as one pc-dimm per step up to size + hotplug_size. Like CH, it
  // only adds: fewer vCPUs or less memory is refused (CH would unplug or balloon).
  Answer Resize(const json& body) {
    if ((state_ != "Running" && state_ != "Paused") || !qmp_) {
      return Text(http::status::internal_server_error, "vm.resize: the VM is " + state_);
    }
    json& cpus = config_["cpus"];
    const uint64_t boot_vcpus = cpus.value("boot_vcpus", uint64_t{1});
    const uint64_t max_vcpus = cpus.value("max_vcpus", boot_vcpus);
    const uint64_t vcpus = vcpus_ != 0 ? vcpus_ : boot_vcpus;
    if (body.contains("desired_vcpus")) {
      const uint64_t desired = body["desired_vcpus"].get<uint64_t>();
      if (desired > max_vcpus || desired < vcpus) {
        return Text(http::status::internal_server_error,
                    "vm.resize: desired_vcpus " + std::to_string(desired) + " outside " +
                        std::to_string(vcpus) + ".." + std::to_string(max_vcpus) +
                        " (removing vCPUs is not emulated)");
      }
      if (Status added = PlugVcpus(vcpus, desired); !added.ok()) {
        return Text(http::status::internal_server_error, "vm.resize: " + added.error().message);
      }
      vcpus_ = desired;
    }
    if (body.contains("desired_ram")) {
      const json& memory = config_["memory"];
      const uint64_t size = memory.value("size", uint64_t{512} << 20);
      const uint64_t ram = ram_ != 0 ? ram_ : size;
      const uint64_t desired = body["desired_ram"].get<uint64_t>();
      const uint64_t limit = size + memory.value("hotplug_size", uint64_t{0});
      if (desired > limit || desired < ram || desired % (uint64_t{1} << 20) != 0) {
        return Text(http::status::internal_server_error,
                    "vm.resize: desired_ram " + std::to_string(desired) + " outside " +
                        std::to_string(ram) + ".." + std::to_string(limit) +
                        " bytes or not whole MiB (removing memory is not emulated)");
      }
      if (desired > ram) {
        const std::string id = "dimm" + std::to_string(dimms_);
        json backend = {{"qom-type", "memory-backend-memfd"},
                        {"id", id + "-mem"},
                        {"size", desired - ram},
                        {"share", true}};
        auto made = qmp_->Call("object-add", backend.dump(), 10s);
        auto added =
            made.ok()
                ? qmp_->Call(
                      "device_add",
                      json{{"driver", "pc-dimm"}, {"id", id}, {"memdev", id + "-mem"}}.dump(), 10s)
                : made;
        if (!added.ok()) {
          return Text(http::status::internal_server_error, "vm.resize: " + added.error().message);
        }
        ++dimms_;
        ram_ = desired;
      }
    }
    return {};
  }

  Status PlugVcpus(uint64_t from, uint64_t to) {
    auto text = qmp_->Call("query-hotpluggable-cpus", "", 5s);
    if (!text.ok()) return text.error();
    json slots = json::parse(*text, nullptr, false);
    if (!slots.is_array())
      return MakeError(ErrorCode::kInternal, "query-hotpluggable-cpus: bad reply");
    std::reverse(slots.begin(), slots.end());  // QEMU lists the highest id first
    for (const auto& slot : slots) {
      if (from >= to) break;
      if (!slot.is_object() || slot.contains("qom-path") || !slot.contains("props")) continue;
      json arguments = slot["props"];
      arguments.erase("node-id");
      arguments["driver"] = slot["type"];
      arguments["id"] = "vcpu" + std::to_string(from);
      if (auto added = qmp_->Call("device_add", arguments.dump(), 10s); !added.ok()) {
        return added.error();
      }
      ++from;
    }
    if (from < to) return MakeError(ErrorCode::kExhausted, "no free vCPU slot");
    return Status::Ok();
  }

  Answer Boot() {
    if (state_ != "Created") {
      return Text(http::status::internal_server_error, "vm.boot: the VM is " + state_);
    }
    auto argv = QemuArgvOf(config_, qemu_, paths_);
    if (!argv.ok()) {
      return Text(http::status::internal_server_error, "vm.boot: " + argv.error().message);
    }
    for (const auto& stale : {paths_.qmp_socket, paths_.agent_socket}) ::unlink(stale.c_str());
    if (config_.contains("vsock") && !StartVsockRelay()) {
      return Text(http::status::internal_server_error,
                  "vm.boot: cannot listen on the vsock socket " + vsock_socket_);
    }
    std::vector<char*> args;
    for (auto& arg : *argv) args.push_back(arg.data());
    args.push_back(nullptr);
    const pid_t parent = ::getpid();
    std::vector<int> inherited;
    for (const auto& fd : net_fds_) inherited.push_back(fd.get());
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) _exit(127);
      // QEMU's -netdev tap,fd=N: the TAP descriptors stay open across its exec.
      for (int fd : inherited) {
        if (::fcntl(fd, F_SETFD, 0) != 0) _exit(127);
      }
      ::execv(args[0], args.data());
      _exit(127);
    }
    if (pid < 0) return Text(http::status::internal_server_error, "vm.boot: fork failed");
    qemu_pid_ = pid;
    // QEMU reads its fw_cfg files while parsing options, before QMP serves: once
    // QMP answers, the caller may remove them (the plugin does).
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!std::filesystem::exists(paths_.qmp_socket)) {
      int status = 0;
      if (::waitpid(qemu_pid_, &status, WNOHANG) == qemu_pid_) {
        qemu_pid_ = -1;
        return Text(http::status::internal_server_error,
                    "vm.boot: QEMU exited at start (its stderr is in this process's log)");
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return Text(http::status::internal_server_error, "vm.boot: QEMU did not start");
      }
      std::this_thread::sleep_for(20ms);
    }
    auto qmp = qemu::QmpClient::Connect(paths_.qmp_socket, 10s);
    if (!qmp.ok()) {
      return Text(http::status::internal_server_error, "vm.boot: QMP: " + qmp.error().message);
    }
    qmp_.emplace(std::move(qmp).value());
    state_ = "Running";
    return {};
  }

  // The hybrid vsock: CONNECT <port> to the port the guest agent listens on is
  // relayed to QEMU's virtio-serial socket; any other port is closed, as CH closes
  // a connection to a port nothing listens on in the guest.
  bool StartVsockRelay() {
    vsock_socket_ = config_["vsock"]["socket"].get<std::string>();
    UniqueFd listen = ListenUnix(vsock_socket_);
    if (!listen) return false;
    const unsigned agent_port = AgentVsockPortOf(config_);
    const std::string agent_socket = paths_.agent_socket;
    std::thread([listen = std::move(listen), agent_port, agent_socket]() mutable {
      uint32_t next_local_port = 1u << 30;
      while (true) {
        UniqueFd client(::accept4(listen.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!client) return;
        std::string line;
        char byte = 0;
        while (line.size() < 32 && ::read(client.get(), &byte, 1) == 1 && byte != '\n') {
          line.push_back(byte);
        }
        unsigned port = 0;
        if (line.rfind("CONNECT ", 0) == 0)
          port = static_cast<unsigned>(std::atoi(line.c_str() + 8));
        if (port == 0 || port != agent_port) continue;  // closes: nothing listens there
        UniqueFd guest = ConnectUnix(agent_socket);
        if (!guest) continue;
        std::string ok = "OK " + std::to_string(next_local_port++) + "\n";
        if (::send(client.get(), ok.data(), ok.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(ok.size())) {
          continue;
        }
        std::thread(Splice, std::move(client), std::move(guest)).detach();
      }
    }).detach();
    return true;
  }

  void ReapQemu() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (qemu_pid_ <= 0) return;
    int status = 0;
    if (::waitpid(qemu_pid_, &status, WNOHANG) == qemu_pid_) {
      // The guest powered off or QEMU died: this double ends with it (README).
      Log("QEMU exited; the VM is shut down and the VMM exits");
      qemu_pid_ = -1;
      qmp_.reset();
      state_ = "Shutdown";
      exit_ = true;
    }
  }

  void StopQemu() {
    std::lock_guard<std::mutex> lock(mutex_);
    StopQemuLocked();
  }

  void StopQemuLocked() {
    if (qemu_pid_ > 0) {
      if (qmp_) (void)qmp_->Execute("quit", 2s);
      for (int i = 0; i < 100; ++i) {
        int status = 0;
        if (::waitpid(qemu_pid_, &status, WNOHANG) == qemu_pid_) {
          qemu_pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(20ms);
      }
      if (qemu_pid_ > 0) {
        ::kill(qemu_pid_, SIGKILL);
        ::waitpid(qemu_pid_, nullptr, 0);
        qemu_pid_ = -1;
      }
    }
    qmp_.reset();
    for (const auto& path : {paths_.qmp_socket, paths_.agent_socket}) ::unlink(path.c_str());
  }

  ApiSchema schema_;
  std::string api_socket_;
  std::string qemu_;
  std::string version_;  // what vmm.ping reports
  QemuPaths paths_;
  std::mutex mutex_;
  json config_;
  std::string state_;
  pid_t qemu_pid_ = -1;
  std::optional<qemu::QmpClient> qmp_;
  uint64_t vcpus_ = 0;  // after vm.resize; 0: boot_vcpus
  uint64_t ram_ = 0;    // bytes, after vm.resize; 0: memory.size
  int dimms_ = 0;
  std::string vsock_socket_;
  std::vector<UniqueFd> net_fds_;  // TAPs of vm.add-net, numbered as in config_["net"]
  std::atomic<bool> exit_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  std::string api_socket;
  std::string qemu = "/usr/bin/qemu-system-x86_64";
  if (const char* env = std::getenv("FAKE_CLOUD_HYPERVISOR_QEMU"); env && *env) qemu = env;
  std::string schema_path = BBX_FAKE_CH_SCHEMA;
  std::string version = "v48.0-fake";
  if (const char* env = std::getenv("FAKE_CLOUD_HYPERVISOR_TEST_ONLY_VERSION"); env && *env) {
    version = env;
  }
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value = i + 1 < argc ? argv[i + 1] : "";
    if (arg == "--api-socket" && i + 1 < argc) {
      api_socket = value.rfind("path=", 0) == 0 ? value.substr(5) : value;
      ++i;
    } else if (arg == "--schema" && i + 1 < argc) {
      schema_path = value;
      ++i;
    } else if (arg == "--test-only-version" && i + 1 < argc) {
      // TEST ONLY: the version vmm.ping and --version report, e.g. v40.0 for the
      // plugin's "too old" path (tests/plugins/vmm-cloudhypervisor/ch_vm_test.cc).
      version = value;
      ++i;
    } else if (arg == "--version" || arg == "-V") {
      std::cout << "cloud-hypervisor " << version << " (fake-cloud-hypervisor, a test double)\n";
      return 0;
    } else {
      Log("unknown argument " + arg +
          ": this test double takes --api-socket path=<p> [--schema f] [--test-only-version v]");
      return 2;
    }
  }
  if (api_socket.empty()) {
    Log("--api-socket path=<socket> is required");
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  auto schema = ApiSchema::Load(schema_path);
  if (!schema.ok()) {
    Log(schema.error().message);
    return 1;
  }
  return FakeVmm(std::move(schema).value(), api_socket, qemu, version).Serve();
}
