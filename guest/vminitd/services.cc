#include "guest/vminitd/services.h"

#include <sys/reboot.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <string_view>
#include <thread>
#include <vector>

#include "common/base/agent_token.h"
#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/ttrpc/ttrpc.h"
#include "guest/vminitd/boot_timeline.h"
#include "guest/vminitd/log.h"
#include "guest/vminitd/network.h"
#include "guest/vminitd/refresh.h"

namespace beaconbox::guest {
namespace {

using google::protobuf::Empty;
using ttrpc::RpcStatus;
using ttrpc::ServerContext;

constexpr char kGuestService[] = "beaconbox.guest.v1.Guest";
constexpr char kTaskService[] = "containerd.task.v2.Task";
constexpr uint32_t kProtocolVersion = 1;
// Bounds of one stdio call: what the guest holds for it, and how long it waits.
constexpr size_t kMaxStdioChunk = 1 << 20;
constexpr uint32_t kMaxStdioWaitMs = 60 * 1000;

std::chrono::milliseconds StdioWait(uint32_t wait_ms) {
  return std::chrono::milliseconds(std::min(wait_ms, kMaxStdioWaitMs));
}

std::chrono::milliseconds Remaining(std::chrono::steady_clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(0),
                  std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now()));
}

std::atomic<uint64_t> ready_ms{0};

// One Error -> status mapping for the shim and the guest: common/ttrpc.
RpcStatus ToRpc(const Error& error) { return ttrpc::RpcStatusFromError(error); }

RpcStatus ToRpc(const Status& status) { return status.ok() ? RpcStatus{} : ToRpc(status.error()); }

template <typename T, typename Resp>
RpcStatus Reply(Result<T> result, Resp* response) {
  if (!result.ok()) return ToRpc(result.error());
  *response = std::move(*result);
  return RpcStatus{};
}

// Registers a unary method served by one Runtime call returning Result<Resp>.
template <typename Req, typename Resp, typename Fn>
void Unary(ttrpc::Server& server, const char* service, const char* method, Fn fn) {
  ttrpc::RegisterUnaryProto<Req, Resp>(
      server, service, method,
      [fn](ServerContext&, const Req& req, Resp* resp) { return fn(req, resp); });
}

template <typename Req>
void NotImplemented(ttrpc::Server& server, const char* method) {
  Unary<Req, Empty>(server, kTaskService, method, [method](const Req&, Empty*) {
    return RpcStatus{ttrpc::Code::kUnimplemented,
                     std::string("Task.") + method + " is not implemented by the beaconbox guest"};
  });
}

void PowerOffSoon() {
  // Answer first, then power off: the shim waits for the reply before killing QEMU.
  std::thread([] {
    ::usleep(100 * 1000);
    Log("powering off");
    ::sync();
    ::reboot(RB_POWER_OFF);
    Log(ErrnoError("reboot", "RB_POWER_OFF").message);
    ::reboot(RB_HALT_SYSTEM);
  }).detach();
}

// ReadOutput, WriteInput and CloseInput: a process's stdio, pulled by the shim one
// call at a time (flow control: guest.proto, stdio_pipe.h).
void RegisterGuestStdio(ttrpc::Server& server, Runtime& rt) {
  using namespace guestapi;
  Unary<ReadOutputRequest, ReadOutputResponse>(
      server, kGuestService, "ReadOutput",
      [&rt](const ReadOutputRequest& req, ReadOutputResponse* resp) {
        const auto deadline = std::chrono::steady_clock::now() + StdioWait(req.wait_ms());
        auto pipe =
            rt.Output(req.container_id(), req.exec_id(), req.stream(), StdioWait(req.wait_ms()));
        if (!pipe.ok()) return ToRpc(pipe.error());
        if (!*pipe) return RpcStatus{};  // not started yet: nothing, ask again
        size_t max_bytes = std::clamp<size_t>(req.max_bytes(), 1, kMaxStdioChunk);
        auto chunk = (*pipe)->Read(max_bytes, Remaining(deadline));
        if (!chunk.ok()) return ToRpc(chunk.error());
        resp->set_data(std::move(chunk->data));
        resp->set_eof(chunk->eof);
        return RpcStatus{};
      });
  Unary<WriteInputRequest, WriteInputResponse>(
      server, kGuestService, "WriteInput",
      [&rt](const WriteInputRequest& req, WriteInputResponse* resp) {
        const auto deadline = std::chrono::steady_clock::now() + StdioWait(req.wait_ms());
        auto pipe = rt.Input(req.container_id(), req.exec_id(), StdioWait(req.wait_ms()));
        if (!pipe.ok()) return ToRpc(pipe.error());
        if (!*pipe) return RpcStatus{};  // not started yet: nothing written, send again
        auto written = (*pipe)->Write(req.data(), Remaining(deadline));
        if (!written.ok()) return ToRpc(written.error());
        resp->set_written(static_cast<uint32_t>(*written));
        return RpcStatus{};
      });
  Unary<CloseInputRequest, v1::Empty>(
      server, kGuestService, "CloseInput", [&rt](const CloseInputRequest& req, v1::Empty*) {
        return ToRpc(rt.CloseInput(req.container_id(), req.exec_id()));
      });
}

// PortOpen, PortRead, PortWrite and PortClose: CRI port-forward's connections to the
// guest's loopback, pulled by the shim with stdio's bounds (port_streams.h).
void RegisterPortForward(ttrpc::Server& server, PortStreams& streams) {
  using namespace guestapi;
  Unary<PortOpenRequest, PortOpenResponse>(
      server, kGuestService, "PortOpen",
      [&streams](const PortOpenRequest& req, PortOpenResponse* resp) {
        auto id = streams.Open(req.port());
        if (!id.ok()) return ToRpc(id.error());
        resp->set_stream_id(*id);
        return RpcStatus{};
      });
  Unary<PortReadRequest, ReadOutputResponse>(
      server, kGuestService, "PortRead",
      [&streams](const PortReadRequest& req, ReadOutputResponse* resp) {
        auto stream = streams.Find(req.stream_id());
        if (!stream.ok()) return ToRpc(stream.error());
        size_t max_bytes = std::clamp<size_t>(req.max_bytes(), 1, kMaxStdioChunk);
        auto chunk = stream->reader->Read(max_bytes, StdioWait(req.wait_ms()));
        if (!chunk.ok()) return ToRpc(chunk.error());
        resp->set_data(std::move(chunk->data));
        resp->set_eof(chunk->eof);
        return RpcStatus{};
      });
  Unary<PortWriteRequest, WriteInputResponse>(
      server, kGuestService, "PortWrite",
      [&streams](const PortWriteRequest& req, WriteInputResponse* resp) {
        auto stream = streams.Find(req.stream_id());
        if (!stream.ok()) return ToRpc(stream.error());
        auto written = stream->writer->Write(req.data(), StdioWait(req.wait_ms()));
        if (!written.ok()) return ToRpc(written.error());
        resp->set_written(static_cast<uint32_t>(*written));
        return RpcStatus{};
      });
  Unary<PortCloseRequest, v1::Empty>(
      server, kGuestService, "PortClose", [&streams](const PortCloseRequest& req, v1::Empty*) {
        return ToRpc(streams.Close(req.stream_id(), req.write_only()));
      });
}

void RegisterGuest(ttrpc::Server& server, Runtime& rt) {
  using namespace guestapi;
  Unary<HelloRequest, HelloResponse>(server, kGuestService, "Hello",
                                     [](const HelloRequest&, HelloResponse* resp) {
                                       struct utsname uts {};
                                       ::uname(&uts);
                                       resp->set_protocol_version(kProtocolVersion);
                                       resp->set_kernel_release(uts.release);
                                       resp->set_agent_version(BEACONBOX_VERSION);
                                       resp->set_boot_to_ready_ms(ready_ms.load());
                                       MarkBootStep("hello-received");
                                       for (const auto& step : BootTimeline()) {
                                         auto* out = resp->add_boot_steps();
                                         out->set_name(step.name);
                                         out->set_at_us(step.at_us);
                                       }
                                       return RpcStatus{};
                                     });
  Unary<NetworkConfig, v1::Empty>(
      server, kGuestService, "ConfigureNetwork",
      [](const NetworkConfig& req, v1::Empty*) { return ToRpc(ConfigureNetwork(req)); });
  Unary<CreateBundleRequest, CreateBundleResponse>(
      server, kGuestService, "CreateBundle",
      [&rt](const CreateBundleRequest& req, CreateBundleResponse* resp) {
        return Reply(rt.CreateBundle(req), resp);
      });
  Unary<RemoveBundleRequest, v1::Empty>(
      server, kGuestService, "RemoveBundle",
      [&rt](const RemoveBundleRequest& req, v1::Empty*) { return ToRpc(rt.RemoveBundle(req)); });
  Unary<PowerOffRequest, v1::Empty>(server, kGuestService, "PowerOff",
                                    [](const PowerOffRequest&, v1::Empty*) {
                                      PowerOffSoon();
                                      return RpcStatus{};
                                    });
  Unary<WaitOomRequest, WaitOomResponse>(server, kGuestService, "WaitOom",
                                         [&rt](const WaitOomRequest& req, WaitOomResponse* resp) {
                                           return Reply(rt.WaitOom(req), resp);
                                         });
  Unary<RefreshRequest, RefreshResponse>(
      server, kGuestService, "Refresh", [](const RefreshRequest& req, RefreshResponse* resp) {
        // Nothing changes unless the whole request is sound.
        Status checked = CheckRefreshInput(req.entropy().size(), req.unix_time_ns());
        if (!checked.ok()) return ToRpc(checked);
        Status added = AddEntropyAndReseed(req.entropy());
        if (!added.ok()) return ToRpc(added);
        Status clock = SetRealtimeClock(req.unix_time_ns());
        if (!clock.ok()) return ToRpc(clock);
        struct timespec now {};
        ::clock_gettime(CLOCK_REALTIME, &now);
        resp->set_entropy_bytes_added(static_cast<uint32_t>(req.entropy().size()));
        resp->set_unix_time_ns(int64_t{now.tv_sec} * 1000000000 + now.tv_nsec);
        resp->set_refreshed_at_us(MarkBootStep("refreshed"));
        return RpcStatus{};
      });
  RegisterGuestStdio(server, rt);
}

void RegisterTask(ttrpc::Server& server, Runtime& rt) {
  using namespace taskapi;
  Unary<CreateTaskRequest, CreateTaskResponse>(
      server, kTaskService, "Create",
      [&rt](const CreateTaskRequest& req, CreateTaskResponse* resp) {
        return Reply(rt.Create(req), resp);
      });
  Unary<StartRequest, StartResponse>(
      server, kTaskService, "Start",
      [&rt](const StartRequest& req, StartResponse* resp) { return Reply(rt.Start(req), resp); });
  Unary<DeleteRequest, DeleteResponse>(server, kTaskService, "Delete",
                                       [&rt](const DeleteRequest& req, DeleteResponse* resp) {
                                         return Reply(rt.Delete(req), resp);
                                       });
  Unary<StateRequest, StateResponse>(
      server, kTaskService, "State",
      [&rt](const StateRequest& req, StateResponse* resp) { return Reply(rt.State(req), resp); });
  Unary<PidsRequest, PidsResponse>(
      server, kTaskService, "Pids",
      [&rt](const PidsRequest& req, PidsResponse* resp) { return Reply(rt.Pids(req), resp); });
  Unary<WaitRequest, WaitResponse>(
      server, kTaskService, "Wait",
      [&rt](const WaitRequest& req, WaitResponse* resp) { return Reply(rt.Wait(req), resp); });
  Unary<ConnectRequest, ConnectResponse>(server, kTaskService, "Connect",
                                         [&rt](const ConnectRequest& req, ConnectResponse* resp) {
                                           return Reply(rt.Connect(req), resp);
                                         });
  Unary<KillRequest, Empty>(server, kTaskService, "Kill",
                            [&rt](const KillRequest& req, Empty*) { return ToRpc(rt.Kill(req)); });
  Unary<ExecProcessRequest, Empty>(
      server, kTaskService, "Exec",
      [&rt](const ExecProcessRequest& req, Empty*) { return ToRpc(rt.Exec(req)); });
  Unary<CloseIORequest, Empty>(
      server, kTaskService, "CloseIO",
      [&rt](const CloseIORequest& req, Empty*) { return ToRpc(rt.CloseIO(req)); });
  Unary<ResizePtyRequest, Empty>(
      server, kTaskService, "ResizePty",
      [&rt](const ResizePtyRequest& req, Empty*) { return ToRpc(rt.ResizePty(req)); });
  Unary<PauseRequest, Empty>(server, kTaskService, "Pause", [&rt](const PauseRequest& req, Empty*) {
    return ToRpc(rt.Pause(req.id()));
  });
  Unary<ResumeRequest, Empty>(
      server, kTaskService, "Resume",
      [&rt](const ResumeRequest& req, Empty*) { return ToRpc(rt.Resume(req.id())); });
  NotImplemented<CheckpointTaskRequest>(server, "Checkpoint");
  Unary<UpdateTaskRequest, Empty>(
      server, kTaskService, "Update",
      [&rt](const UpdateTaskRequest& req, Empty*) { return ToRpc(rt.Update(req)); });
  NotImplemented<ShutdownRequest>(server, "Shutdown");
  Unary<StatsRequest, StatsResponse>(
      server, kTaskService, "Stats",
      [&rt](const StatsRequest& req, StatsResponse* resp) { return Reply(rt.Stats(req), resp); });
}

}  // namespace

void SetReadyTime() {
  if (ready_ms.load() != 0) return;
  MarkBootStep("agent-listening");
  struct timespec ts {};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  ready_ms = uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

std::string ReadAgentTokenNow() {
  auto token = ReadSmallFile(
      std::string("/sys/firmware/qemu_fw_cfg/by_name/") + kAgentTokenFwCfgName + "/raw", 4096);
  if (!token.ok() || !IsWellFormedAgentToken(*token)) return "";
  return std::move(token).value();
}

std::string ReadAgentToken(std::chrono::milliseconds timeout) {
  const std::string path =
      std::string("/sys/firmware/qemu_fw_cfg/by_name/") + kAgentTokenFwCfgName + "/raw";
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (::access(path.c_str(), R_OK) != 0 && std::chrono::steady_clock::now() < deadline) {
    ::usleep(50 * 1000);
  }
  auto token = ReadSmallFile(path, 4096);
  if (!token.ok()) {
    Log("no agent token (" + path +
        "): refusing every call; the VMM plugin must deliver VmSpec.agent_token");
    return "";
  }
  if (!IsWellFormedAgentToken(*token)) {
    Log("malformed agent token in " + path + ": refusing every call");
    return "";
  }
  return std::move(token).value();
}

namespace {

ttrpc::Options SessionOptions(std::function<RpcStatus(const ttrpc::Metadata&)> authorize) {
  ttrpc::Options options;
  options.authorizer = [authorize = std::move(authorize)](std::string_view, std::string_view,
                                                          const ttrpc::Metadata& metadata) {
    return authorize(metadata);
  };
  return options;
}

}  // namespace

AgentSession::AgentSession(Runtime& runtime, KeptAgentToken& agent_token)
    : agent_token_(agent_token),
      server_(
          SessionOptions([this](const ttrpc::Metadata& metadata) { return Authorize(metadata); })) {
  RegisterGuest(server_, runtime);
  RegisterTask(server_, runtime);
  RegisterPortForward(server_, port_streams_);
}

RpcStatus AgentSession::Authorize(const ttrpc::Metadata& metadata) {
  std::vector<std::string_view> presented;
  for (const auto& [key, value] : metadata) {
    if (key == kAgentTokenMetadataKey) presented.push_back(value);
  }
  switch (agent_token_.Check(presented)) {
    case KeptAgentToken::Verdict::kAccepted:
      authenticated_ = true;
      return RpcStatus{};
    case KeptAgentToken::Verdict::kNoToken:
      return RpcStatus{ttrpc::Code::kUnauthenticated,
                       "the guest has no agent token (fw_cfg opt/io.beaconbox/agent-token): its "
                       "VMM did not seal the agent channel"};
    case KeptAgentToken::Verdict::kRefused:
      break;
  }
  return RpcStatus{ttrpc::Code::kUnauthenticated, "missing or wrong agent token"};
}

void AgentSession::Serve(UniqueFd connection) { server_.ServeConnection(std::move(connection)); }

}  // namespace beaconbox::guest
