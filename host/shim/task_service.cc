#include "host/shim/task_service.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include "github.com/containerd/containerd/api/events/task.pb.h"

namespace beaconbox::shim {
namespace {

namespace events = ::containerd::events;
namespace types = ::containerd::v1::types;
using google::protobuf::Empty;
using ttrpc::RpcStatus;
using ttrpc::ServerContext;

constexpr char kService[] = "containerd.task.v2.Task";

types::Status ToContainerdStatus(ProcessState state) {
  switch (state) {
    case ProcessState::kCreated: return types::CREATED;
    case ProcessState::kRunning: return types::RUNNING;
    case ProcessState::kPaused: return types::PAUSED;
    case ProcessState::kStopped: return types::STOPPED;
  }
  return types::UNKNOWN;
}

}  // namespace


TaskService::TaskService(Sandbox& sandbox, EventPublisher& events, SandboxOptions options,
                         std::function<void()> shutdown)
    : sandbox_(sandbox),
      events_(events),
      options_(std::move(options)),
      shutdown_(std::move(shutdown)) {}

void TaskService::Register(ttrpc::Server& server) {
  using namespace task;
  auto fail = [](const Error& error) { return ttrpc::RpcStatusFromError(error); };
  auto check_id = [this](const std::string& id) -> RpcStatus {
    if (id != options_.container_id) {
      return RpcStatus{ttrpc::Code::kNotFound,
                       "container " + id + " is not served by this shim (" +
                           options_.container_id + ")"};
    }
    return RpcStatus{};
  };

  ttrpc::RegisterUnaryProto<CreateTaskRequest, CreateTaskResponse>(
      server, kService, "Create",
      [this, fail, check_id](ServerContext&, const CreateTaskRequest& request,
                             CreateTaskResponse* response) {
        if (auto status = check_id(request.id()); !status.ok()) return status;
        if (!request.checkpoint().empty()) {
          return RpcStatus{ttrpc::Code::kUnimplemented, "checkpoint restore is not implemented"};
        }
        auto pid = sandbox_.Create(request);
        if (!pid.ok()) return fail(pid.error());
        response->set_pid(*pid);
        events::TaskCreate event;
        event.set_container_id(request.id());
        event.set_bundle(request.bundle());
        for (const auto& mount : request.rootfs()) *event.add_rootfs() = mount;
        event.mutable_io()->set_stdin(request.stdin());
        event.mutable_io()->set_stdout(request.stdout());
        event.mutable_io()->set_stderr(request.stderr());
        event.mutable_io()->set_terminal(request.terminal());
        event.set_pid(*pid);
        events_.Publish("/tasks/create", event);
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<StartRequest, StartResponse>(
      server, kService, "Start",
      [this, fail, check_id](ServerContext&, const StartRequest& request, StartResponse* response) {
        if (auto status = check_id(request.id()); !status.ok()) return status;
        auto pid = sandbox_.Start(request.exec_id());
        if (!pid.ok()) return fail(pid.error());
        response->set_pid(*pid);
        if (request.exec_id().empty()) {
          events::TaskStart event;
          event.set_container_id(request.id());
          event.set_pid(*pid);
          events_.Publish("/tasks/start", event);
        } else {
          events::TaskExecStarted event;
          event.set_container_id(request.id());
          event.set_exec_id(request.exec_id());
          event.set_pid(*pid);
          events_.Publish("/tasks/exec-started", event);
        }
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<DeleteRequest, DeleteResponse>(
      server, kService, "Delete",
      [this, fail, check_id](ServerContext&, const DeleteRequest& request,
                             DeleteResponse* response) {
        if (auto status = check_id(request.id()); !status.ok()) return status;
        auto exit = sandbox_.Delete(request.exec_id());
        if (!exit.ok()) return fail(exit.error());
        response->set_pid(exit->pid);
        response->set_exit_status(exit->exit_status);
        *response->mutable_exited_at() = exit->exited_at;
        if (request.exec_id().empty()) {
          events::TaskDelete event;
          event.set_container_id(request.id());
          event.set_pid(exit->pid);
          event.set_exit_status(exit->exit_status);
          *event.mutable_exited_at() = exit->exited_at;
          events_.Publish("/tasks/delete", event);
        }
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<ExecProcessRequest, Empty>(
      server, kService, "Exec",
      [this, fail, check_id](ServerContext&, const ExecProcessRequest& request, Empty*) {
        if (auto status = check_id(request.id()); !status.ok()) return status;
        if (auto status = sandbox_.Exec(request); !status.ok()) return fail(status.error());
        events::TaskExecAdded event;
        event.set_container_id(request.id());
        event.set_exec_id(request.exec_id());
        events_.Publish("/tasks/exec-added", event);
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<StateRequest, StateResponse>(
      server, kService, "State",
      [this, fail, check_id](ServerContext&, const StateRequest& request, StateResponse* response) {
        if (auto status = check_id(request.id()); !status.ok()) return status;
        auto view = sandbox_.State(request.exec_id());
        if (!view.ok()) return fail(view.error());
        response->set_id(request.exec_id().empty() ? request.id() : request.exec_id());
        response->set_bundle(options_.bundle);
        response->set_pid(view->pid);
        response->set_status(ToContainerdStatus(view->state));
        response->set_stdin(view->stdio.stdin_path);
        response->set_stdout(view->stdio.stdout_path);
        response->set_stderr(view->stdio.stderr_path);
        response->set_terminal(view->stdio.terminal);
        response->set_exit_status(view->exit_status);
        *response->mutable_exited_at() = view->exited_at;
        response->set_exec_id(request.exec_id());
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<KillRequest, Empty>(
      server, kService, "Kill",
      [this, fail, check_id](ServerContext&, const KillRequest& request, Empty*) {
        if (auto status = check_id(request.id()); !status.ok()) return status;
        if (auto status = sandbox_.Kill(request.exec_id(), request.signal(), request.all());
            !status.ok()) {
          return fail(status.error());
        }
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<WaitRequest, WaitResponse>(
      server, kService, "Wait",
      [this, fail, check_id](ServerContext&, const WaitRequest& request, WaitResponse* response) {
        if (auto status = check_id(request.id()); !status.ok()) return status;
        auto exit = sandbox_.Wait(request.exec_id());
        if (!exit.ok()) return fail(exit.error());
        response->set_exit_status(exit->exit_status);
        *response->mutable_exited_at() = exit->exited_at;
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<PidsRequest, PidsResponse>(
      server, kService, "Pids",
      [this, fail, check_id](ServerContext&, const PidsRequest& request, PidsResponse* response) {
        if (auto status = check_id(request.id()); !status.ok()) return status;
        auto pids = sandbox_.Pids();
        if (!pids.ok()) return fail(pids.error());
        for (uint32_t pid : *pids) response->add_processes()->set_pid(pid);
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<CloseIORequest, Empty>(
      server, kService, "CloseIO",
      [this, fail, check_id](ServerContext&, const CloseIORequest& request, Empty*) {
        if (auto status = check_id(request.id()); !status.ok()) return status;
        if (!request.stdin()) return RpcStatus{};
        if (auto status = sandbox_.CloseIo(request.exec_id()); !status.ok()) {
          return fail(status.error());
        }
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<ResizePtyRequest, Empty>(
      server, kService, "ResizePty",
      [this, fail, check_id](ServerContext&, const ResizePtyRequest& request, Empty*) {
        if (auto status = check_id(request.id()); !status.ok()) return status;
        if (auto status = sandbox_.ResizePty(request.exec_id(), request.width(), request.height());
            !status.ok()) {
          return fail(status.error());
        }
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<PauseRequest, Empty>(
      server, kService, "Pause",
      [this, fail, check_id](ServerContext&, const PauseRequest& request, Empty*) {
        if (auto status = check_id(request.id()); !status.ok()) return status;
        if (auto status = sandbox_.Pause(); !status.ok()) return fail(status.error());
        events::TaskPaused event;
        event.set_container_id(request.id());
        events_.Publish("/tasks/paused", event);
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<ResumeRequest, Empty>(
      server, kService, "Resume",
      [this, fail, check_id](ServerContext&, const ResumeRequest& request, Empty*) {
        if (auto status = check_id(request.id()); !status.ok()) return status;
        if (auto status = sandbox_.Resume(); !status.ok()) return fail(status.error());
        events::TaskResumed event;
        event.set_container_id(request.id());
        events_.Publish("/tasks/resumed", event);
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<ConnectRequest, ConnectResponse>(
      server, kService, "Connect",
      [this](ServerContext&, const ConnectRequest&, ConnectResponse* response) {
        response->set_shim_pid(static_cast<uint32_t>(::getpid()));
        response->set_task_pid(sandbox_.init_pid());
        response->set_version("beaconbox " BEACONBOX_VERSION);
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<ShutdownRequest, Empty>(
      server, kService, "Shutdown",
      [this](ServerContext&, const ShutdownRequest& request, Empty*) {
        // Like runc's shim: stay while a container is still there, unless told `now`.
        if (!request.now() && sandbox_.has_container()) return RpcStatus{};
        shutdown_();
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<StatsRequest, StatsResponse>(
      server, kService, "Stats", [](ServerContext&, const StatsRequest&, StatsResponse*) {
        return RpcStatus{ttrpc::Code::kUnimplemented, "beaconbox: Stats is not implemented yet"};
      });
  ttrpc::RegisterUnaryProto<UpdateTaskRequest, Empty>(
      server, kService, "Update", [](ServerContext&, const UpdateTaskRequest&, Empty*) {
        return RpcStatus{ttrpc::Code::kUnimplemented, "beaconbox: Update is not implemented yet"};
      });
  ttrpc::RegisterUnaryProto<CheckpointTaskRequest, Empty>(
      server, kService, "Checkpoint", [](ServerContext&, const CheckpointTaskRequest&, Empty*) {
        return RpcStatus{ttrpc::Code::kUnimplemented,
                         "beaconbox: Checkpoint is not implemented (no VM checkpoint)"};
      });
}

}  // namespace beaconbox::shim
