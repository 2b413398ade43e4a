#include "host/shim/task_service.h"

#include <unistd.h>

#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"

namespace beaconbox::shim {
namespace {

namespace types = ::containerd::v1::types;
using google::protobuf::Empty;
using ttrpc::RpcStatus;
using ttrpc::ServerContext;

constexpr char kService[] = "containerd.task.v2.Task";
// containerd sends the namespace of each call as ttrpc metadata under this key.
constexpr char kNamespaceMetadata[] = "containerd-namespace-ttrpc";

types::Status ToContainerdStatus(ProcessState state) {
  switch (state) {
    case ProcessState::kCreated:
      return types::CREATED;
    case ProcessState::kRunning:
      return types::RUNNING;
    case ProcessState::kPaused:
      return types::PAUSED;
    case ProcessState::kStopped:
      return types::STOPPED;
  }
  return types::UNKNOWN;
}

RpcStatus ToRpc(const Status& status) {
  return status.ok() ? RpcStatus{} : ttrpc::RpcStatusFromError(status.error());
}

// BBX_ASSIGN_OR_RETURN for handlers, which return a ttrpc status.
#define BBX_ASSIGN_OR_RETURN_RPC(decl, expr)                                         \
  auto BBX_CONCAT(bbx_rpc_result_, __LINE__) = (expr);                               \
  if (!BBX_CONCAT(bbx_rpc_result_, __LINE__).ok())                                   \
    return ttrpc::RpcStatusFromError(BBX_CONCAT(bbx_rpc_result_, __LINE__).error()); \
  decl = std::move(BBX_CONCAT(bbx_rpc_result_, __LINE__)).value()

// A Pids entry; an exec's carries containerd's runc ProcessDetails with its exec id.
void AddProcessInfo(const PidEntry& entry, task::PidsResponse* response) {
  auto* info = response->add_processes();
  info->set_pid(entry.pid);
  if (entry.exec_id.empty()) return;
  ::containerd::runc::v1::ProcessDetails details;
  details.set_exec_id(entry.exec_id);
  info->mutable_info()->set_type_url("containerd.runc.v1.ProcessDetails");
  info->mutable_info()->set_value(details.SerializeAsString());
}

RpcStatus Unimplemented(std::string_view what) {
  return RpcStatus{ttrpc::Code::kUnimplemented, "beaconbox: " + std::string(what)};
}

}  // namespace

TaskService::TaskService(Sandbox& sandbox, std::string namespace_name,
                         std::function<void()> shutdown, std::function<void()> after_start)
    : sandbox_(sandbox),
      namespace_(std::move(namespace_name)),
      shutdown_(std::move(shutdown)),
      after_start_(std::move(after_start)) {}

ContainerKey TaskService::KeyOf(const ServerContext& context, const std::string& id) const {
  std::string ns = context.MetadataValue(kNamespaceMetadata);
  return ContainerKey{ns.empty() ? namespace_ : ns, id};
}

Result<std::shared_ptr<Container>> TaskService::Find(const ServerContext& context,
                                                     const std::string& id) const {
  return sandbox_.Find(KeyOf(context, id));
}

void TaskService::Register(ttrpc::Server& server) {
  using namespace task;
  // Every handler below: find, call, copy the answer. Nothing else.
  ttrpc::RegisterUnaryProto<CreateTaskRequest, CreateTaskResponse>(
      server, kService, "Create",
      [this](ServerContext& context, const CreateTaskRequest& request,
             CreateTaskResponse* response) {
        auto container = sandbox_.CreateContainer(KeyOf(context, request.id()), request);
        if (!container.ok()) return ToRpc(container.error());
        response->set_pid((*container)->host_pid());
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<StartRequest, StartResponse>(
      server, kService, "Start",
      [this](ServerContext& context, const StartRequest& request, StartResponse* response) {
        BBX_ASSIGN_OR_RETURN_RPC(auto container, Find(context, request.id()));
        auto pid = container->Start(request.exec_id());
        if (!pid.ok()) return ToRpc(pid.error());
        response->set_pid(*pid);
        if (after_start_) after_start_();
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<DeleteRequest, DeleteResponse>(
      server, kService, "Delete",
      [this](ServerContext& context, const DeleteRequest& request, DeleteResponse* response) {
        Result<ExitInfo> exit = MakeError(ErrorCode::kInternal, "");
        if (request.exec_id().empty()) {
          exit = sandbox_.DeleteContainer(KeyOf(context, request.id()));
        } else {
          BBX_ASSIGN_OR_RETURN_RPC(auto container, Find(context, request.id()));
          exit = container->DeleteExec(request.exec_id());
        }
        if (!exit.ok()) return ToRpc(exit.error());
        response->set_pid(exit->pid);
        response->set_exit_status(exit->exit_status);
        *response->mutable_exited_at() = exit->exited_at;
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<ExecProcessRequest, Empty>(
      server, kService, "Exec",
      [this](ServerContext& context, const ExecProcessRequest& request, Empty*) {
        BBX_ASSIGN_OR_RETURN_RPC(auto container, Find(context, request.id()));
        Status added = container->Exec(request);
        // runc's shim answers an exec into a task that is not running ("cannot exec
        // in a stopped state") with a plain error: code Unknown, as ctr shows it.
        if (!added.ok() && added.error().code == ErrorCode::kFailedPrecondition) {
          return RpcStatus{ttrpc::Code::kUnknown, added.error().message};
        }
        return ToRpc(added);
      });

  ttrpc::RegisterUnaryProto<StateRequest, StateResponse>(
      server, kService, "State",
      [this](ServerContext& context, const StateRequest& request, StateResponse* response) {
        BBX_ASSIGN_OR_RETURN_RPC(auto container, Find(context, request.id()));
        auto view = container->State(request.exec_id());
        if (!view.ok()) return ToRpc(view.error());
        response->set_id(request.exec_id().empty() ? request.id() : request.exec_id());
        response->set_bundle(container->bundle());
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
      server, kService, "Kill", [this](ServerContext& context, const KillRequest& request, Empty*) {
        BBX_ASSIGN_OR_RETURN_RPC(auto container, Find(context, request.id()));
        return ToRpc(container->Kill(request.exec_id(), request.signal(), request.all()));
      });

  ttrpc::RegisterUnaryProto<WaitRequest, WaitResponse>(
      server, kService, "Wait",
      [this](ServerContext& context, const WaitRequest& request, WaitResponse* response) {
        BBX_ASSIGN_OR_RETURN_RPC(auto container, Find(context, request.id()));
        auto exit = container->Wait(request.exec_id());
        if (!exit.ok()) return ToRpc(exit.error());
        response->set_exit_status(exit->exit_status);
        *response->mutable_exited_at() = exit->exited_at;
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<PidsRequest, PidsResponse>(
      server, kService, "Pids",
      [this](ServerContext& context, const PidsRequest& request, PidsResponse* response) {
        BBX_ASSIGN_OR_RETURN_RPC(auto container, Find(context, request.id()));
        auto pids = container->Pids();
        if (!pids.ok()) return ToRpc(pids.error());
        // The VMM's pid for each live process, where runc's shim lists the container's
        // pids; each exec marked with its id as runc's shim does: see container.h.
        for (const PidEntry& entry : *pids) AddProcessInfo(entry, response);
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<CloseIORequest, Empty>(
      server, kService, "CloseIO",
      [this](ServerContext& context, const CloseIORequest& request, Empty*) {
        BBX_ASSIGN_OR_RETURN_RPC(auto container, Find(context, request.id()));
        if (!request.stdin()) return RpcStatus{};
        return ToRpc(container->CloseIo(request.exec_id()));
      });

  ttrpc::RegisterUnaryProto<ResizePtyRequest, Empty>(
      server, kService, "ResizePty",
      [this](ServerContext& context, const ResizePtyRequest& request, Empty*) {
        BBX_ASSIGN_OR_RETURN_RPC(auto container, Find(context, request.id()));
        return ToRpc(container->ResizePty(request.exec_id(), request.width(), request.height()));
      });

  ttrpc::RegisterUnaryProto<PauseRequest, Empty>(
      server, kService, "Pause",
      [this](ServerContext& context, const PauseRequest& request, Empty*) {
        BBX_ASSIGN_OR_RETURN_RPC(auto container, Find(context, request.id()));
        return ToRpc(container->Pause());
      });

  ttrpc::RegisterUnaryProto<ResumeRequest, Empty>(
      server, kService, "Resume",
      [this](ServerContext& context, const ResumeRequest& request, Empty*) {
        BBX_ASSIGN_OR_RETURN_RPC(auto container, Find(context, request.id()));
        return ToRpc(container->Resume());
      });

  ttrpc::RegisterUnaryProto<ConnectRequest, ConnectResponse>(
      server, kService, "Connect",
      [this](ServerContext& context, const ConnectRequest& request, ConnectResponse* response) {
        response->set_shim_pid(static_cast<uint32_t>(::getpid()));
        if (auto container = Find(context, request.id()); container.ok()) {
          response->set_task_pid((*container)->host_pid());
        }
        response->set_version("beaconbox " BEACONBOX_VERSION);
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<ShutdownRequest, Empty>(
      server, kService, "Shutdown", [this](ServerContext&, const ShutdownRequest& request, Empty*) {
        // Like runc's shim: stay while a container is still there, unless told `now`.
        if (!request.now() && !sandbox_.empty()) return RpcStatus{};
        shutdown_();
        return RpcStatus{};
      });

  ttrpc::RegisterUnaryProto<StatsRequest, StatsResponse>(
      server, kService, "Stats",
      [this](ServerContext& context, const StatsRequest& request, StatsResponse* response) {
        BBX_ASSIGN_OR_RETURN_RPC(auto container, Find(context, request.id()));
        BBX_ASSIGN_OR_RETURN_RPC(*response->mutable_stats(), container->Stats());
        return RpcStatus{};
      });
  ttrpc::RegisterUnaryProto<UpdateTaskRequest, Empty>(
      server, kService, "Update",
      [this](ServerContext& context, const UpdateTaskRequest& request, Empty*) {
        return ToRpc(sandbox_.UpdateContainer(KeyOf(context, request.id()), request));
      });
  ttrpc::RegisterUnaryProto<CheckpointTaskRequest, Empty>(
      server, kService, "Checkpoint",
      [this](ServerContext& context, const CheckpointTaskRequest& request, Empty*) {
        return ToRpc(sandbox_.CheckpointContainer(KeyOf(context, request.id()), request));
      });
}

}  // namespace beaconbox::shim
