#include "tests/shim/fake_guest_agent.h"

#include <sys/socket.h>

#include "common/base/agent_token.h"
#include "common/base/errno_error.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "host/shim/translate.h"

namespace beaconbox::shim::testing {
namespace {

using google::protobuf::Empty;
using ttrpc::Code;
using ttrpc::RpcStatus;
using ttrpc::ServerContext;

constexpr char kGuest[] = "beaconbox.guest.v1.Guest";
constexpr char kTask[] = "containerd.task.v2.Task";

}  // namespace

FakeGuestAgent::~FakeGuestAgent() {
  Disconnect();
  // Handlers run on ttrpc's pool and may outlive the connection by a poll interval.
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return waiting_handlers_ == 0; });
}

Result<UniqueFd> FakeGuestAgent::Connect() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return ErrnoError("socketpair", "");
  }
  ttrpc::Options options;
  {
    std::lock_guard lock(mutex_);
    if (!required_token_.empty()) {
      options.authorizer = [token = required_token_](std::string_view, std::string_view,
                                                     const ttrpc::Metadata& metadata) {
        for (const auto& [key, value] : metadata) {
          if (key == kAgentTokenMetadataKey && AgentTokenMatches(token, value)) {
            return ttrpc::RpcStatus{};
          }
        }
        return ttrpc::RpcStatus{ttrpc::Code::kUnauthenticated, "fake guest: no valid agent token"};
      };
    }
  }
  auto server = std::make_unique<ttrpc::Server>(options);
  Register(*server);
  ttrpc::Server* raw = server.get();
  std::lock_guard lock(mutex_);
  servers_.push_back(std::move(server));
  threads_.emplace_back([raw, fd = fds[1]] { raw->ServeConnection(UniqueFd(fd)); });
  return UniqueFd(fds[0]);
}

void FakeGuestAgent::SaveProcesses() {
  std::lock_guard lock(mutex_);
  saved_processes_ = processes_;
}

void FakeGuestAgent::LoadSavedProcesses() {
  {
    std::lock_guard lock(mutex_);
    processes_ = saved_processes_;
  }
  changed_.notify_all();
}

void FakeGuestAgent::RequireToken(std::string token) {
  std::lock_guard lock(mutex_);
  required_token_ = std::move(token);
}

void FakeGuestAgent::Disconnect() {
  std::vector<std::unique_ptr<ttrpc::Server>> servers;
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    servers.swap(servers_);
    threads.swap(threads_);
  }
  for (auto& server : servers) server->Shutdown();
  for (auto& thread : threads) thread.join();
  changed_.notify_all();
}

void FakeGuestAgent::Exit(const std::string& id, const std::string& exec_id, uint32_t status) {
  {
    std::lock_guard lock(mutex_);
    auto& process = processes_[{id, exec_id}];
    process.exited = true;
    process.exit_status = status;
  }
  changed_.notify_all();
}

void FakeGuestAgent::ExitOnStart(uint32_t status) {
  std::lock_guard lock(mutex_);
  exit_on_start_ = status;
}

void FakeGuestAgent::FailNext(const std::string& method, Code code) {
  std::lock_guard lock(mutex_);
  failures_[method] = code;
}

std::optional<::containerd::task::v2::UpdateTaskRequest> FakeGuestAgent::last_update() const {
  std::lock_guard lock(mutex_);
  return last_update_;
}

std::vector<std::string> FakeGuestAgent::calls() const {
  std::lock_guard lock(mutex_);
  return calls_;
}

std::optional<guestapi::CreateBundleRequest> FakeGuestAgent::last_bundle() const {
  std::lock_guard lock(mutex_);
  return last_bundle_;
}

std::optional<guestapi::NetworkConfig> FakeGuestAgent::network() const {
  std::lock_guard lock(mutex_);
  return network_;
}

void FakeGuestAgent::IgnoreKill() {
  std::lock_guard lock(mutex_);
  ignore_kill_ = true;
}

void FakeGuestAgent::Hang(const std::string& method) {
  std::lock_guard lock(mutex_);
  hanging_.insert(method);
}

void FakeGuestAgent::StopHanging() {
  std::lock_guard lock(mutex_);
  hanging_.clear();
}

void FakeGuestAgent::AnswerPid(uint32_t pid) {
  std::lock_guard lock(mutex_);
  answer_pid_ = pid;
}

void FakeGuestAgent::AnswerInvalidExitTime() {
  std::lock_guard lock(mutex_);
  invalid_exit_time_ = true;
}

void FakeGuestAgent::SetOomKills(const std::string& id, uint64_t count) {
  {
    std::lock_guard lock(mutex_);
    oom_kills_[id] = count;
  }
  changed_.notify_all();
}

void FakeGuestAgent::AnswerStats(const std::string& type_url, const std::string& value) {
  std::lock_guard lock(mutex_);
  stats_ = std::make_pair(type_url, value);
}

int FakeGuestAgent::hung_calls() const {
  std::lock_guard lock(mutex_);
  return hung_calls_;
}

RpcStatus FakeGuestAgent::Record(const std::string& method, const ServerContext& context) {
  std::unique_lock lock(mutex_);
  calls_.push_back(method);
  if (hanging_.count(method) != 0 || hanging_.count("*") != 0) {
    // Never answers: the handler returns only once the connection is gone.
    ++hung_calls_;
    ++waiting_handlers_;
    while (!context.cancelled()) changed_.wait_for(lock, std::chrono::milliseconds(10));
    --waiting_handlers_;
    changed_.notify_all();
    return RpcStatus{Code::kUnavailable, "fake guest: hung call of " + method + " cancelled"};
  }
  if (auto it = failures_.find(method); it != failures_.end()) {
    Code code = it->second;
    failures_.erase(it);
    return RpcStatus{code, "fake guest: injected failure of " + method};
  }
  return RpcStatus{};
}

void FakeGuestAgent::Register(ttrpc::Server& server) {
  using namespace guestapi;
  namespace task = ::containerd::task::v2;
  ttrpc::RegisterUnaryProto<HelloRequest, HelloResponse>(
      server, kGuest, "Hello",
      [this](ServerContext& context, const HelloRequest&, HelloResponse* out) {
        if (auto failed = Record("Guest.Hello", context); !failed.ok()) return failed;
        out->set_protocol_version(1);
        out->set_agent_version("fake");
        out->set_kernel_release("fake");
        return RpcStatus{};
      });
  // As vminitd: takes the bytes and the host's time, answers what it "added" and set.
  ttrpc::RegisterUnaryProto<RefreshRequest, RefreshResponse>(
      server, kGuest, "Refresh",
      [this](ServerContext& context, const RefreshRequest& in, RefreshResponse* out) {
        if (auto failed = Record("Guest.Refresh", context); !failed.ok()) return failed;
        out->set_entropy_bytes_added(static_cast<uint32_t>(in.entropy().size()));
        out->set_unix_time_ns(in.unix_time_ns());
        return RpcStatus{};
      });
  ttrpc::RegisterUnaryProto<NetworkConfig, guestapi::Empty>(
      server, kGuest, "ConfigureNetwork",
      [this](ServerContext& context, const NetworkConfig& config, guestapi::Empty*) {
        if (auto failed = Record("Guest.ConfigureNetwork", context); !failed.ok()) return failed;
        std::lock_guard lock(mutex_);
        network_ = config;
        return RpcStatus{};
      });
  ttrpc::RegisterUnaryProto<CreateBundleRequest, CreateBundleResponse>(
      server, kGuest, "CreateBundle",
      [this](ServerContext& context, const CreateBundleRequest& request,
             CreateBundleResponse* out) {
        if (auto failed = Record("Guest.CreateBundle", context); !failed.ok()) return failed;
        if (Status valid = CheckGuestRelativePath(request.rootfs(), "rootfs"); !valid.ok()) {
          return ttrpc::RpcStatusFromError(valid.error());
        }
        std::lock_guard lock(mutex_);
        last_bundle_ = request;
        out->set_bundle("/run/beaconbox/bundles/" + request.container_id());
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<task::CreateTaskRequest, task::CreateTaskResponse>(
      server, kTask, "Create",
      [this](ServerContext& context, const task::CreateTaskRequest& request,
             task::CreateTaskResponse* out) {
        if (auto failed = Record("Task.Create", context); !failed.ok()) return failed;
        std::lock_guard lock(mutex_);
        Process& process = processes_[{request.id(), ""}];
        process = Process{};  // the same id again after a delete is a new process
        process.pid = next_pid_++;
        out->set_pid(answer_pid_ ? *answer_pid_ : process.pid);
        return RpcStatus{};
      });
  ttrpc::RegisterUnaryProto<task::ExecProcessRequest, Empty>(
      server, kTask, "Exec",
      [this](ServerContext& context, const task::ExecProcessRequest& request, Empty*) {
        if (auto failed = Record("Task.Exec", context); !failed.ok()) return failed;
        std::lock_guard lock(mutex_);
        processes_[{request.id(), request.exec_id()}] = Process{};
        return RpcStatus{};
      });
  ttrpc::RegisterUnaryProto<task::StartRequest, task::StartResponse>(
      server, kTask, "Start",
      [this](ServerContext& context, const task::StartRequest& request, task::StartResponse* out) {
        if (auto failed = Record("Task.Start", context); !failed.ok()) return failed;
        std::lock_guard lock(mutex_);
        auto it = processes_.find({request.id(), request.exec_id()});
        if (it == processes_.end()) return RpcStatus{Code::kNotFound, "no such process"};
        if (it->second.pid == 0) it->second.pid = next_pid_++;
        it->second.started = true;
        out->set_pid(answer_pid_ ? *answer_pid_ : it->second.pid);
        if (request.exec_id().empty() && exit_on_start_) {
          it->second.exited = true;
          it->second.exit_status = *exit_on_start_;
          changed_.notify_all();
        }
        return RpcStatus{};
      });
  ttrpc::RegisterUnaryProto<task::KillRequest, Empty>(
      server, kTask, "Kill",
      [this](ServerContext& context, const task::KillRequest& request, Empty*) {
        if (auto failed = Record("Task.Kill", context); !failed.ok()) return failed;
        {
          std::lock_guard lock(mutex_);
          auto it = processes_.find({request.id(), request.exec_id()});
          if (it == processes_.end()) return RpcStatus{Code::kNotFound, "no such process"};
          if (it->second.exited) return RpcStatus{Code::kNotFound, "process already finished"};
          if (ignore_kill_) return RpcStatus{};  // acknowledged, never done
          it->second.exited = true;
          it->second.exit_status = 128 + request.signal();
        }
        changed_.notify_all();
        return RpcStatus{};
      });
  ttrpc::RegisterUnaryProto<task::WaitRequest, task::WaitResponse>(
      server, kTask, "Wait",
      [this](ServerContext& context, const task::WaitRequest& request, task::WaitResponse* out) {
        if (auto failed = Record("Task.Wait", context); !failed.ok()) return failed;
        std::unique_lock lock(mutex_);
        ++waiting_handlers_;
        RpcStatus status;
        for (;;) {
          auto it = processes_.find({request.id(), request.exec_id()});
          if (it == processes_.end()) {
            status = RpcStatus{Code::kNotFound, "no such process"};
            break;
          }
          if (it->second.exited) {
            out->set_exit_status(it->second.exit_status);
            if (invalid_exit_time_) {
              out->mutable_exited_at()->set_seconds(-5);
              out->mutable_exited_at()->set_nanos(-1);
            }
            break;
          }
          if (context.cancelled()) {
            status = RpcStatus{Code::kUnavailable, "connection closed"};
            break;
          }
          changed_.wait_for(lock, std::chrono::milliseconds(10));
        }
        --waiting_handlers_;
        // Notified under the lock: once it is released the destructor may run and
        // destroy changed_ (found by make test-tsan).
        changed_.notify_all();
        lock.unlock();
        return status;
      });
  ttrpc::RegisterUnaryProto<task::DeleteRequest, task::DeleteResponse>(
      server, kTask, "Delete",
      [this](ServerContext& context, const task::DeleteRequest& request,
             task::DeleteResponse* out) {
        if (auto failed = Record("Task.Delete", context); !failed.ok()) return failed;
        {
          std::lock_guard lock(mutex_);
          auto it = processes_.find({request.id(), request.exec_id()});
          if (it == processes_.end()) return RpcStatus{Code::kNotFound, "no such process"};
          it->second.deleted = true;
          // crun delete --force ends a created process.
          if (!it->second.exited) {
            it->second.exited = true;
            it->second.exit_status = 137;
          }
          out->set_pid(it->second.pid);
          out->set_exit_status(it->second.exit_status);
        }
        changed_.notify_all();
        return RpcStatus{};
      });
  ttrpc::RegisterUnaryProto<task::StateRequest, task::StateResponse>(
      server, kTask, "State",
      [this](ServerContext& context, const task::StateRequest& request, task::StateResponse* out) {
        if (auto failed = Record("Task.State", context); !failed.ok()) return failed;
        std::lock_guard lock(mutex_);
        auto it = processes_.find({request.id(), request.exec_id()});
        if (it == processes_.end() || it->second.deleted) {
          return RpcStatus{Code::kNotFound, "no such process"};
        }
        out->set_id(request.id());
        out->set_pid(it->second.pid);
        out->set_status(it->second.exited    ? ::containerd::v1::types::STOPPED
                        : it->second.started ? ::containerd::v1::types::RUNNING
                                             : ::containerd::v1::types::CREATED);
        out->set_exit_status(it->second.exit_status);
        return RpcStatus{};
      });
  ttrpc::RegisterUnaryProto<task::PidsRequest, task::PidsResponse>(
      server, kTask, "Pids",
      [this](ServerContext& context, const task::PidsRequest& request, task::PidsResponse* out) {
        if (auto failed = Record("Task.Pids", context); !failed.ok()) return failed;
        std::lock_guard lock(mutex_);
        for (const auto& [key, process] : processes_) {
          if (key.first == request.id() && process.pid != 0 && !process.exited) {
            out->add_processes()->set_pid(process.pid);
          }
        }
        return RpcStatus{};
      });
  ttrpc::RegisterUnaryProto<WaitOomRequest, WaitOomResponse>(
      server, kGuest, "WaitOom",
      [this](ServerContext& context, const WaitOomRequest& request, WaitOomResponse* out) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(request.wait_ms());
        std::unique_lock lock(mutex_);
        ++waiting_handlers_;
        RpcStatus status;
        for (;;) {
          auto it = processes_.find({request.container_id(), ""});
          if (it == processes_.end() || it->second.deleted) {
            status = RpcStatus{Code::kNotFound, "no such container"};
            break;
          }
          out->set_oom_kills(oom_kills_[request.container_id()]);
          if (out->oom_kills() > request.seen() || std::chrono::steady_clock::now() >= deadline) {
            break;
          }
          if (context.cancelled()) {
            status = RpcStatus{Code::kUnavailable, "connection closed"};
            break;
          }
          changed_.wait_for(lock, std::chrono::milliseconds(10));
        }
        --waiting_handlers_;
        changed_.notify_all();
        lock.unlock();
        return status;
      });
  ttrpc::RegisterUnaryProto<task::StatsRequest, task::StatsResponse>(
      server, kTask, "Stats",
      [this](ServerContext& context, const task::StatsRequest&, task::StatsResponse* out) {
        if (auto failed = Record("Task.Stats", context); !failed.ok()) return failed;
        std::lock_guard lock(mutex_);
        if (!stats_) return RpcStatus{Code::kUnimplemented, "fake guest: no stats"};
        out->mutable_stats()->set_type_url(stats_->first);
        out->mutable_stats()->set_value(stats_->second);
        return RpcStatus{};
      });
  for (const char* method : {"Pause", "Resume"}) {
    ttrpc::RegisterUnaryProto<task::PauseRequest, Empty>(
        server, kTask, method,
        [this, method](ServerContext& context, const task::PauseRequest&, Empty*) {
          return Record(std::string("Task.") + method, context);
        });
  }
  ttrpc::RegisterUnaryProto<task::UpdateTaskRequest, Empty>(
      server, kTask, "Update",
      [this](ServerContext& context, const task::UpdateTaskRequest& request, Empty*) {
        if (auto failed = Record("Task.Update", context); !failed.ok()) return failed;
        std::lock_guard lock(mutex_);
        last_update_ = request;
        return RpcStatus{};
      });
  ttrpc::RegisterUnaryProto<task::ResizePtyRequest, Empty>(
      server, kTask, "ResizePty",
      [this](ServerContext& context, const task::ResizePtyRequest&, Empty*) {
        return Record("Task.ResizePty", context);
      });
}

}  // namespace beaconbox::shim::testing
