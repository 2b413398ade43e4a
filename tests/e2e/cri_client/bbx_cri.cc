// bbx-cri: beaconbox's own CRI v1 client for its end-to-end tests. It drives
// containerd's CRI plugin over gRPC the way the kubelet does, one call per command,
// so a shell test can build a pod step by step (tests/e2e/cri_e2e.sh).
//
//   bbx-cri [--timeout SECONDS] SOCKET COMMAND [ARGS...]
//
// A failure prints one line `bbx-cri: ...` on stderr and exits 125 (`exec` exits
// with the command's own exit code otherwise; every other command exits 0).
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "runtime/v1/cri_subset.grpc.pb.h"
#include "websocket.h"

namespace beaconbox::cri_client {
namespace {

namespace cri = ::runtime::v1;

constexpr int kToolFailure = 125;
constexpr char kUsage[] =
    "usage: bbx-cri [--timeout SECONDS] SOCKET COMMAND [ARGS...]\n"
    "commands:\n"
    "  version                      runtime name, version and CRI API version\n"
    "  image-status IMAGE           the image's id (fails when CRI does not have it)\n"
    "  run-pod NAME [--handler H] [--log-dir DIR] [--cgroup-parent P] [--hostname H]\n"
    "          [--namespace NS] [--uid UID] [--share-pid] [--cpus C] [--memory MIB]\n"
    "          [--overhead-cpus C] [--overhead-memory MIB] [--port HOST:CTR]...\n"
    "                               RunPodSandbox (network and IPC shared by the pod,\n"
    "                               pid too with --share-pid; the pod's resources and\n"
    "                               the RuntimeClass overhead as the kubelet sends\n"
    "                               them; --port: a TCP hostPort, CNI's portmap\n"
    "                               serves it); prints the pod id\n"
    "  pod-status POD               PodSandboxStatus as key=value lines\n"
    "  pods                         ListPodSandbox: `ID STATE NAME HANDLER` lines\n"
    "  stop-pod POD | rm-pod POD    StopPodSandbox | RemovePodSandbox\n"
    "  create POD NAME IMAGE [--mount HOST:CTR[:ro]]... [--env K=V]... [--log PATH]\n"
    "          [--workdir DIR] [--cpus C] [--memory MIB] [--] [CMD [ARGS...]]\n"
    "                               CreateContainer with the pod's own config (as the\n"
    "                               kubelet passes it); PATH is relative to the pod's\n"
    "                               log directory; prints the container id\n"
    "  start ID                     StartContainer\n"
    "  status ID                    ContainerStatus as key=value lines\n"
    "  containers [POD]             ListContainers: `ID STATE NAME POD` lines\n"
    "  exec ID [--timeout S] [--] CMD [ARGS...]\n"
    "                               ExecSync: the command's stdout and stderr, exits\n"
    "                               with its exit code\n"
    "  stop ID [--timeout S] | rm ID\n"
    "                               StopContainer | RemoveContainer\n"
    "  stats ID                     ContainerStats as key=value lines\n"
    "  list-stats [POD]             ListContainerStats: `ID NAME CPU_NS WORKING_SET_BYTES`\n"
    "streaming (containerd's streaming server over WebSocket; run them in containerd's\n"
    "network namespace, where its URLs point; STREAM is [--input TEXT] [--until TEXT]\n"
    "[--for SECONDS]: TEXT sent once connected, the end once the output holds TEXT\n"
    "(else when the server closes), the longest wait, 30 s by default):\n"
    "  exec-stream ID [-i] [-t] STREAM [--] CMD [ARGS...]\n"
    "                               Exec (stdin with -i, a tty with -t): the command's\n"
    "                               output; exits with its exit code (0 after --until)\n"
    "  attach ID [-i] [-t] STREAM   Attach: the container's output after attaching\n"
    "  port-forward POD PORT STREAM PortForward: what the pod's PORT answers\n"
    "create also takes --stdin and --tty (ContainerConfig's stdin and tty, for attach)\n";

std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

Error Usage(std::string what) {
  return MakeError(ErrorCode::kInvalidArgument, what + " (bbx-cri --help shows the commands)");
}

Status RpcStatus(std::string_view rpc, const grpc::Status& status) {
  if (status.ok()) return Status::Ok();
  static const std::map<grpc::StatusCode, const char*> kNames = {
      {grpc::StatusCode::CANCELLED, "Cancelled"},
      {grpc::StatusCode::UNKNOWN, "Unknown"},
      {grpc::StatusCode::INVALID_ARGUMENT, "InvalidArgument"},
      {grpc::StatusCode::DEADLINE_EXCEEDED, "DeadlineExceeded"},
      {grpc::StatusCode::NOT_FOUND, "NotFound"},
      {grpc::StatusCode::ALREADY_EXISTS, "AlreadyExists"},
      {grpc::StatusCode::PERMISSION_DENIED, "PermissionDenied"},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, "ResourceExhausted"},
      {grpc::StatusCode::FAILED_PRECONDITION, "FailedPrecondition"},
      {grpc::StatusCode::ABORTED, "Aborted"},
      {grpc::StatusCode::OUT_OF_RANGE, "OutOfRange"},
      {grpc::StatusCode::UNIMPLEMENTED, "Unimplemented"},
      {grpc::StatusCode::INTERNAL, "Internal"},
      {grpc::StatusCode::UNAVAILABLE, "Unavailable"},
      {grpc::StatusCode::DATA_LOSS, "DataLoss"},
      {grpc::StatusCode::UNAUTHENTICATED, "Unauthenticated"},
  };
  auto name = kNames.find(status.error_code());
  std::string code = name == kNames.end() ? std::to_string(status.error_code()) : name->second;
  std::string hint;
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    hint = " (is containerd running with its CRI plugin on that socket?)";
  } else if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    hint = " (raise --timeout)";
  }
  return MakeError(ErrorCode::kUnavailable,
                   std::string(rpc) + ": " + code + ": " + OneLine(status.error_message()) + hint);
}

// A decimal integer from 1 to MAX of UNIT ("seconds"), or one line naming FLAG.
Result<int64_t> ParseWhole(std::string_view flag, std::string_view text, long long max,
                           std::string_view unit) {
  char* end = nullptr;
  std::string copy(text);
  long long value = std::strtoll(copy.c_str(), &end, 10);
  if (copy.empty() || *end != '\0' || value < 1 || value > max) {
    return Usage(std::string(flag) + " wants whole " + std::string(unit) + " from 1 to " +
                 std::to_string(max) + ", not '" + copy + "'");
  }
  return static_cast<int64_t>(value);
}

Result<int64_t> ParseSeconds(std::string_view flag, std::string_view text) {
  return ParseWhole(flag, text, 86400, "seconds");
}

// A TCP port 1..65535 of --port HOST:CTR.
Result<int32_t> ParsePort(std::string_view text, std::string_view whole) {
  char* end = nullptr;
  std::string copy(text);
  long value = std::strtol(copy.c_str(), &end, 10);
  if (copy.empty() || *end != '\0' || value < 1 || value > 65535) {
    return Usage("--port wants HOST:CTR, two ports from 1 to 65535, not '" + std::string(whole) +
                 "'");
  }
  return static_cast<int32_t>(value);
}

Result<std::pair<std::string, std::string>> SplitKeyValue(std::string_view flag,
                                                          std::string_view text) {
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return Usage(std::string(flag) + " wants KEY=VALUE, not '" + std::string(text) + "'");
  }
  return std::make_pair(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
}

// CPUs as Kubernetes writes them ("1", "1.5", "0.25": at most 3 decimals) in
// millicores, 1..256000.
Result<int64_t> ParseMilliCpus(std::string_view flag, std::string_view text) {
  int64_t milli = 0;
  int decimals = -1;
  for (char c : text) {
    if (c == '.' && decimals < 0) {
      decimals = 0;
    } else if (c >= '0' && c <= '9' && decimals < 3 && milli <= 256000) {
      milli = milli * 10 + (c - '0');
      if (decimals >= 0) ++decimals;
    } else {
      milli = -1;
      break;
    }
  }
  for (int i = decimals < 0 ? 0 : decimals; milli >= 0 && i < 3; ++i) milli *= 10;
  if (text.empty() || text.back() == '.' || milli < 1 || milli > 256000) {
    return Usage(std::string(flag) + " wants CPUs from 0.001 to 256 (at most 3 decimals), not '" +
                 std::string(text) + "'");
  }
  return milli;
}

// Whole MiB, 1..1048576, in bytes.
Result<int64_t> ParseMibBytes(std::string_view flag, std::string_view text) {
  BBX_ASSIGN_OR_RETURN(int64_t mib, ParseWhole(flag, text, 1048576, "MiB"));
  return mib * 1024 * 1024;
}

// The kubelet's translation of a CPU limit (millicores; 0: none) and a memory limit
// (bytes; 0: none): a CFS quota over a 100 ms period, shares of 1024 per CPU.
void SetResources(int64_t milli_cpus, int64_t memory_bytes, cri::LinuxContainerResources& out) {
  constexpr int64_t kPeriod = 100000;
  if (milli_cpus > 0) {
    out.set_cpu_period(kPeriod);
    out.set_cpu_quota(milli_cpus * kPeriod / 1000);
    out.set_cpu_shares(std::max<int64_t>(2, milli_cpus * 1024 / 1000));
  }
  if (memory_bytes > 0) out.set_memory_limit_in_bytes(memory_bytes);
}

// The arguments of one command: its positional words, then --flag VALUE pairs until
// `--` or the first word after the positionals that is not a known flag.
class Args {
 public:
  explicit Args(std::vector<std::string> words) : words_(std::move(words)) {}

  bool Done() const { return next_ >= words_.size(); }
  Result<std::string> Positional(std::string_view what) {
    if (Done()) return Usage("missing " + std::string(what));
    return words_[next_++];
  }
  // The value of flag FLAG when the next word is FLAG; "" (and nothing taken) otherwise.
  Result<bool> Flag(std::string_view flag, std::string* value) {
    if (Done() || words_[next_] != flag) return false;
    if (next_ + 1 >= words_.size()) return Usage(std::string(flag) + " wants a value");
    *value = words_[next_ + 1];
    next_ += 2;
    return true;
  }
  bool Word(std::string_view word) {
    if (Done() || words_[next_] != word) return false;
    ++next_;
    return true;
  }
  std::vector<std::string> Rest() {
    std::vector<std::string> rest(words_.begin() + static_cast<long>(next_), words_.end());
    next_ = words_.size();
    return rest;
  }
  Status NoMore() const {
    if (!Done()) return Usage("unexpected argument '" + words_[next_] + "'");
    return Status::Ok();
  }

 private:
  std::vector<std::string> words_;
  size_t next_ = 0;
};

// --cpus C / --memory MIB (and the same with PREFIX, e.g. "--overhead-"): true when
// the next word was one of them.
Result<bool> ResourceFlag(Args& args, const std::string& prefix, int64_t* milli_cpus,
                          int64_t* memory_bytes) {
  std::string value;
  const std::string cpus_flag = prefix + "cpus", memory_flag = prefix + "memory";
  BBX_ASSIGN_OR_RETURN(bool cpus, args.Flag(cpus_flag, &value));
  if (cpus) {
    BBX_ASSIGN_OR_RETURN(*milli_cpus, ParseMilliCpus(cpus_flag, value));
    return true;
  }
  BBX_ASSIGN_OR_RETURN(bool memory, args.Flag(memory_flag, &value));
  if (memory) {
    BBX_ASSIGN_OR_RETURN(*memory_bytes, ParseMibBytes(memory_flag, value));
  }
  return memory;
}

class Client {
 public:
  Client(const std::string& socket, int64_t timeout_seconds)
      : channel_(grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials())),
        runtime_(cri::RuntimeService::NewStub(channel_)),
        images_(cri::ImageService::NewStub(channel_)),
        timeout_seconds_(timeout_seconds) {}

  // Runs COMMAND; returns the process's exit code.
  Result<int> Run(const std::string& command, Args args) {
    if (command == "version") return Version(args);
    if (command == "image-status") return ImageStatus(args);
    if (command == "run-pod") return RunPod(args);
    if (command == "pod-status") return PodStatus(args);
    if (command == "pods") return Pods(args);
    if (command == "stop-pod") return StopPod(args);
    if (command == "rm-pod") return RemovePod(args);
    if (command == "create") return Create(args);
    if (command == "start") return Start(args);
    if (command == "status") return ContainerStatus(args);
    if (command == "containers") return Containers(args);
    if (command == "exec") return Exec(args);
    if (command == "stop") return Stop(args);
    if (command == "rm") return Remove(args);
    if (command == "stats") return Stats(args);
    if (command == "list-stats") return ListStats(args);
    if (command == "exec-stream") return ExecStream(args);
    if (command == "attach") return Attach(args);
    if (command == "port-forward") return PortForward(args);
    return Usage("unknown command '" + command + "'");
  }

 private:
  std::unique_ptr<grpc::ClientContext> Context(int64_t extra_seconds = 0) const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(timeout_seconds_ + extra_seconds));
    return context;
  }

  Result<int> Version(Args& args) {
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::VersionRequest request;
    request.set_version("v1");
    cri::VersionResponse response;
    BBX_RETURN_IF_ERROR(
        RpcStatus("Version", runtime_->Version(Context().get(), request, &response)));
    std::cout << "runtime_name=" << response.runtime_name() << "\n"
              << "runtime_version=" << response.runtime_version() << "\n"
              << "runtime_api_version=" << response.runtime_api_version() << "\n";
    return 0;
  }

  Result<int> ImageStatus(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string image, args.Positional("IMAGE"));
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::ImageStatusRequest request;
    request.mutable_image()->set_image(image);
    cri::ImageStatusResponse response;
    BBX_RETURN_IF_ERROR(
        RpcStatus("ImageStatus", images_->ImageStatus(Context().get(), request, &response)));
    if (!response.has_image()) {
      return MakeError(
          ErrorCode::kNotFound,
          "ImageStatus: CRI has no image " + image +
              ": import it into containerd's namespace k8s.io (ctr -n k8s.io image import)");
    }
    std::cout << response.image().id() << "\n";
    return 0;
  }

  Result<int> RunPod(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string name, args.Positional("NAME"));
    cri::RunPodSandboxRequest request;
    cri::PodSandboxConfig& config = *request.mutable_config();
    std::string namespace_name = "default", uid = name + "-uid", value;
    cri::NamespaceMode pid_mode = cri::CONTAINER;
    int64_t pod_cpus = 0, pod_memory = 0, overhead_cpus = 0, overhead_memory = 0;
    while (!args.Done()) {
      BBX_ASSIGN_OR_RETURN(bool handler, args.Flag("--handler", request.mutable_runtime_handler()));
      BBX_ASSIGN_OR_RETURN(bool log_dir, args.Flag("--log-dir", config.mutable_log_directory()));
      BBX_ASSIGN_OR_RETURN(bool hostname, args.Flag("--hostname", config.mutable_hostname()));
      BBX_ASSIGN_OR_RETURN(bool ns, args.Flag("--namespace", &namespace_name));
      BBX_ASSIGN_OR_RETURN(bool uid_given, args.Flag("--uid", &uid));
      BBX_ASSIGN_OR_RETURN(bool cgroup, args.Flag("--cgroup-parent", &value));
      if (cgroup) config.mutable_linux()->set_cgroup_parent(value);
      bool share_pid = args.Word("--share-pid");
      if (share_pid) pid_mode = cri::POD;
      BBX_ASSIGN_OR_RETURN(bool resource, ResourceFlag(args, "--", &pod_cpus, &pod_memory));
      BBX_ASSIGN_OR_RETURN(bool overhead,
                           ResourceFlag(args, "--overhead-", &overhead_cpus, &overhead_memory));
      BBX_ASSIGN_OR_RETURN(bool port, args.Flag("--port", &value));
      if (port) {
        auto colon = value.find(':');
        if (colon == std::string::npos) {
          return Usage("--port wants HOST:CTR, two ports from 1 to 65535, not '" + value + "'");
        }
        BBX_ASSIGN_OR_RETURN(int32_t host_port, ParsePort(value.substr(0, colon), value));
        BBX_ASSIGN_OR_RETURN(int32_t container_port, ParsePort(value.substr(colon + 1), value));
        cri::PortMapping* mapping = config.add_port_mappings();
        mapping->set_protocol(cri::TCP);
        mapping->set_host_port(host_port);
        mapping->set_container_port(container_port);
      }
      if (!(handler || log_dir || hostname || ns || uid_given || cgroup || share_pid || resource ||
            overhead || port)) {
        break;
      }
    }
    if (pod_cpus > 0 || pod_memory > 0) {
      SetResources(pod_cpus, pod_memory, *config.mutable_linux()->mutable_resources());
    }
    if (overhead_cpus > 0 || overhead_memory > 0) {
      SetResources(overhead_cpus, overhead_memory, *config.mutable_linux()->mutable_overhead());
    }
    // As the kubelet sets them: network and IPC of the pod, the pid namespace the
    // container's own unless the pod shares it (shareProcessNamespace).
    cri::NamespaceOption& namespaces =
        *config.mutable_linux()->mutable_security_context()->mutable_namespace_options();
    namespaces.set_network(cri::POD);
    namespaces.set_ipc(cri::POD);
    namespaces.set_pid(pid_mode);
    BBX_RETURN_IF_ERROR(args.NoMore());
    config.mutable_metadata()->set_name(name);
    config.mutable_metadata()->set_namespace_(namespace_name);
    config.mutable_metadata()->set_uid(uid);
    config.mutable_metadata()->set_attempt(0);
    (*config.mutable_labels())["io.beaconbox.test"] = "bbx-cri";
    cri::RunPodSandboxResponse response;
    // Pulling the sandbox image and setting up the network come on top of the start.
    BBX_RETURN_IF_ERROR(
        RpcStatus("RunPodSandbox", runtime_->RunPodSandbox(Context().get(), request, &response)));
    std::cout << response.pod_sandbox_id() << "\n";
    return 0;
  }

  Result<cri::PodSandboxStatusResponse> PodStatusOf(const std::string& pod, bool verbose) {
    cri::PodSandboxStatusRequest request;
    request.set_pod_sandbox_id(pod);
    request.set_verbose(verbose);
    cri::PodSandboxStatusResponse response;
    BBX_RETURN_IF_ERROR(RpcStatus("PodSandboxStatus",
                                  runtime_->PodSandboxStatus(Context().get(), request, &response)));
    return response;
  }

  Result<int> PodStatus(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string pod, args.Positional("POD"));
    BBX_RETURN_IF_ERROR(args.NoMore());
    BBX_ASSIGN_OR_RETURN(auto response, PodStatusOf(pod, false));
    const cri::PodSandboxStatus& status = response.status();
    std::cout << "id=" << status.id() << "\n"
              << "name=" << status.metadata().name() << "\n"
              << "state=" << cri::PodSandboxState_Name(status.state()) << "\n"
              << "ip=" << status.network().ip() << "\n"
              << "runtime_handler=" << status.runtime_handler() << "\n";
    return 0;
  }

  // The pod's config as RunPodSandbox got it, which CreateContainer wants again (the
  // log directory, cgroup parent and metadata come from it): containerd's verbose
  // PodSandboxStatus carries it as JSON under info["info"].config; without that, the
  // metadata, labels and annotations of the status.
  Result<cri::PodSandboxConfig> PodConfigOf(const std::string& pod) {
    BBX_ASSIGN_OR_RETURN(auto response, PodStatusOf(pod, true));
    cri::PodSandboxConfig config;
    auto info = response.info().find("info");
    if (info != response.info().end()) {
      google::protobuf::Struct parsed;
      google::protobuf::util::JsonParseOptions options;
      options.ignore_unknown_fields = true;
      auto fields = google::protobuf::util::JsonStringToMessage(info->second, &parsed, options);
      auto sandbox_config = parsed.fields().find("config");
      if (fields.ok() && sandbox_config != parsed.fields().end() &&
          sandbox_config->second.has_struct_value()) {
        std::string json;
        if (google::protobuf::util::MessageToJsonString(sandbox_config->second.struct_value(),
                                                        &json)
                .ok() &&
            google::protobuf::util::JsonStringToMessage(json, &config, options).ok() &&
            config.has_metadata()) {
          return config;
        }
      }
    }
    config.Clear();
    *config.mutable_metadata() = response.status().metadata();
    *config.mutable_labels() = response.status().labels();
    *config.mutable_annotations() = response.status().annotations();
    return config;
  }

  Result<int> Pods(Args& args) {
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::ListPodSandboxRequest request;
    cri::ListPodSandboxResponse response;
    BBX_RETURN_IF_ERROR(
        RpcStatus("ListPodSandbox", runtime_->ListPodSandbox(Context().get(), request, &response)));
    for (const auto& pod : response.items()) {
      std::cout << pod.id() << " " << cri::PodSandboxState_Name(pod.state()) << " "
                << pod.metadata().name() << " " << pod.runtime_handler() << "\n";
    }
    return 0;
  }

  Result<int> StopPod(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string pod, args.Positional("POD"));
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::StopPodSandboxRequest request;
    request.set_pod_sandbox_id(pod);
    cri::StopPodSandboxResponse response;
    BBX_RETURN_IF_ERROR(
        RpcStatus("StopPodSandbox", runtime_->StopPodSandbox(Context().get(), request, &response)));
    return 0;
  }

  Result<int> RemovePod(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string pod, args.Positional("POD"));
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::RemovePodSandboxRequest request;
    request.set_pod_sandbox_id(pod);
    cri::RemovePodSandboxResponse response;
    BBX_RETURN_IF_ERROR(RpcStatus("RemovePodSandbox",
                                  runtime_->RemovePodSandbox(Context().get(), request, &response)));
    return 0;
  }

  Result<int> Create(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string pod, args.Positional("POD"));
    BBX_ASSIGN_OR_RETURN(std::string name, args.Positional("NAME"));
    BBX_ASSIGN_OR_RETURN(std::string image, args.Positional("IMAGE"));
    cri::CreateContainerRequest request;
    request.set_pod_sandbox_id(pod);
    cri::ContainerConfig& config = *request.mutable_config();
    config.mutable_metadata()->set_name(name);
    config.mutable_image()->set_image(image);
    std::string value;
    int64_t cpus = 0, memory = 0;
    while (!args.Done()) {
      if (args.Word("--")) break;
      BBX_ASSIGN_OR_RETURN(bool log, args.Flag("--log", config.mutable_log_path()));
      BBX_ASSIGN_OR_RETURN(bool workdir, args.Flag("--workdir", config.mutable_working_dir()));
      BBX_ASSIGN_OR_RETURN(bool env, args.Flag("--env", &value));
      if (env) {
        BBX_ASSIGN_OR_RETURN(auto pair, SplitKeyValue("--env", value));
        cri::KeyValue* entry = config.add_envs();
        entry->set_key(pair.first);
        entry->set_value(pair.second);
      }
      BBX_ASSIGN_OR_RETURN(bool mount, args.Flag("--mount", &value));
      if (mount) BBX_RETURN_IF_ERROR(AddMount(value, config));
      bool stdin_flag = args.Word("--stdin");
      if (stdin_flag) config.set_stdin(true);
      bool tty = args.Word("--tty");
      if (tty) config.set_tty(true);
      BBX_ASSIGN_OR_RETURN(bool resource, ResourceFlag(args, "--", &cpus, &memory));
      if (!(log || workdir || env || mount || stdin_flag || tty || resource)) break;
    }
    if (cpus > 0 || memory > 0) {
      SetResources(cpus, memory, *config.mutable_linux()->mutable_resources());
    }
    for (std::string& word : args.Rest()) config.add_command(std::move(word));
    if (!config.log_path().empty() && config.log_path().front() == '/') {
      return Usage("--log " + config.log_path() +
                   ": CRI's log path is relative to the pod's log directory (run-pod --log-dir)");
    }
    BBX_ASSIGN_OR_RETURN(*request.mutable_sandbox_config(), PodConfigOf(pod));
    // The container's namespaces follow the pod's, as the kubelet derives them.
    const auto& pod_linux = request.sandbox_config().linux();
    cri::NamespaceOption& namespaces =
        *config.mutable_linux()->mutable_security_context()->mutable_namespace_options();
    if (pod_linux.has_security_context() && pod_linux.security_context().has_namespace_options()) {
      namespaces = pod_linux.security_context().namespace_options();
    } else {
      namespaces.set_pid(cri::CONTAINER);
    }
    (*config.mutable_labels())["io.beaconbox.test"] = "bbx-cri";
    cri::CreateContainerResponse response;
    BBX_RETURN_IF_ERROR(RpcStatus("CreateContainer",
                                  runtime_->CreateContainer(Context().get(), request, &response)));
    std::cout << response.container_id() << "\n";
    return 0;
  }

  static Status AddMount(const std::string& text, cri::ContainerConfig& config) {
    // HOST:CTR or HOST:CTR:ro, both paths absolute.
    std::string host = text, container, mode;
    auto colon = text.find(':');
    if (colon != std::string::npos) {
      host = text.substr(0, colon);
      container = text.substr(colon + 1);
      auto second = container.find(':');
      if (second != std::string::npos) {
        mode = container.substr(second + 1);
        container.resize(second);
      }
    }
    if (host.empty() || host.front() != '/' || container.empty() || container.front() != '/' ||
        !(mode.empty() || mode == "ro" || mode == "rw")) {
      return Usage("--mount wants HOST:CTR[:ro|rw] with absolute paths, not '" + text + "'");
    }
    cri::Mount* mount = config.add_mounts();
    mount->set_host_path(host);
    mount->set_container_path(container);
    mount->set_readonly(mode == "ro");
    return Status::Ok();
  }

  Result<int> Start(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string id, args.Positional("ID"));
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::StartContainerRequest request;
    request.set_container_id(id);
    cri::StartContainerResponse response;
    BBX_RETURN_IF_ERROR(
        RpcStatus("StartContainer", runtime_->StartContainer(Context().get(), request, &response)));
    return 0;
  }

  Result<int> ContainerStatus(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string id, args.Positional("ID"));
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::ContainerStatusRequest request;
    request.set_container_id(id);
    cri::ContainerStatusResponse response;
    BBX_RETURN_IF_ERROR(RpcStatus("ContainerStatus",
                                  runtime_->ContainerStatus(Context().get(), request, &response)));
    const cri::ContainerStatus& status = response.status();
    std::cout << "id=" << status.id() << "\n"
              << "name=" << status.metadata().name() << "\n"
              << "state=" << cri::ContainerState_Name(status.state()) << "\n"
              << "exit_code=" << status.exit_code() << "\n"
              << "reason=" << OneLine(status.reason()) << "\n"
              << "message=" << OneLine(status.message()) << "\n"
              << "log_path=" << status.log_path() << "\n";
    return 0;
  }

  Result<int> Containers(Args& args) {
    cri::ListContainersRequest request;
    if (!args.Done()) {
      BBX_ASSIGN_OR_RETURN(std::string pod, args.Positional("POD"));
      request.mutable_filter()->set_pod_sandbox_id(pod);
    }
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::ListContainersResponse response;
    BBX_RETURN_IF_ERROR(
        RpcStatus("ListContainers", runtime_->ListContainers(Context().get(), request, &response)));
    for (const auto& container : response.containers()) {
      std::cout << container.id() << " " << cri::ContainerState_Name(container.state()) << " "
                << container.metadata().name() << " " << container.pod_sandbox_id() << "\n";
    }
    return 0;
  }

  Result<int> Exec(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string id, args.Positional("ID"));
    cri::ExecSyncRequest request;
    request.set_container_id(id);
    std::string value;
    BBX_ASSIGN_OR_RETURN(bool timeout, args.Flag("--timeout", &value));
    int64_t exec_seconds = 0;
    if (timeout) {
      BBX_ASSIGN_OR_RETURN(exec_seconds, ParseSeconds("exec --timeout", value));
      request.set_timeout(exec_seconds);
    }
    args.Word("--");
    for (std::string& word : args.Rest()) request.add_cmd(std::move(word));
    if (request.cmd().empty()) return Usage("exec wants a command");
    cri::ExecSyncResponse response;
    BBX_RETURN_IF_ERROR(
        RpcStatus("ExecSync", runtime_->ExecSync(Context(exec_seconds).get(), request, &response)));
    std::fwrite(response.stdout().data(), 1, response.stdout().size(), stdout);
    std::fwrite(response.stderr().data(), 1, response.stderr().size(), stderr);
    std::fflush(stdout);
    // An exit code out of a process's range would read as the tool's own failure.
    int code = response.exit_code();
    return code >= 0 && code < kToolFailure ? code : kToolFailure - 1;
  }

  Result<int> Stop(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string id, args.Positional("ID"));
    cri::StopContainerRequest request;
    request.set_container_id(id);
    std::string value;
    BBX_ASSIGN_OR_RETURN(bool timeout, args.Flag("--timeout", &value));
    int64_t stop_seconds = 0;
    if (timeout) {
      BBX_ASSIGN_OR_RETURN(stop_seconds, ParseSeconds("stop --timeout", value));
      request.set_timeout(stop_seconds);
    }
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::StopContainerResponse response;
    BBX_RETURN_IF_ERROR(RpcStatus(
        "StopContainer", runtime_->StopContainer(Context(stop_seconds).get(), request, &response)));
    return 0;
  }

  Result<int> Remove(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string id, args.Positional("ID"));
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::RemoveContainerRequest request;
    request.set_container_id(id);
    cri::RemoveContainerResponse response;
    BBX_RETURN_IF_ERROR(RpcStatus("RemoveContainer",
                                  runtime_->RemoveContainer(Context().get(), request, &response)));
    return 0;
  }

  static std::string Value(const cri::UInt64Value& value, bool present) {
    return present ? std::to_string(value.value()) : "absent";
  }

  static void PrintStats(const cri::ContainerStats& stats) {
    std::cout << "id=" << stats.attributes().id() << "\n"
              << "name=" << stats.attributes().metadata().name() << "\n"
              << "cpu_usage_core_nano_seconds="
              << Value(stats.cpu().usage_core_nano_seconds(),
                       stats.cpu().has_usage_core_nano_seconds())
              << "\n"
              << "memory_working_set_bytes="
              << Value(stats.memory().working_set_bytes(), stats.memory().has_working_set_bytes())
              << "\n"
              << "memory_usage_bytes="
              << Value(stats.memory().usage_bytes(), stats.memory().has_usage_bytes()) << "\n";
  }

  Result<int> Stats(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string id, args.Positional("ID"));
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::ContainerStatsRequest request;
    request.set_container_id(id);
    cri::ContainerStatsResponse response;
    BBX_RETURN_IF_ERROR(
        RpcStatus("ContainerStats", runtime_->ContainerStats(Context().get(), request, &response)));
    PrintStats(response.stats());
    return 0;
  }

  Result<int> ListStats(Args& args) {
    cri::ListContainerStatsRequest request;
    if (!args.Done()) {
      BBX_ASSIGN_OR_RETURN(std::string pod, args.Positional("POD"));
      request.mutable_filter()->set_pod_sandbox_id(pod);
    }
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::ListContainerStatsResponse response;
    BBX_RETURN_IF_ERROR(RpcStatus(
        "ListContainerStats", runtime_->ListContainerStats(Context().get(), request, &response)));
    for (const auto& stats : response.stats()) {
      std::cout << stats.attributes().id() << " " << stats.attributes().metadata().name() << " "
                << Value(stats.cpu().usage_core_nano_seconds(),
                         stats.cpu().has_usage_core_nano_seconds())
                << " "
                << Value(stats.memory().working_set_bytes(), stats.memory().has_working_set_bytes())
                << "\n";
    }
    return 0;
  }

  // STREAM's flags (see the usage), and -i / -t where WITH_IO.
  struct StreamFlags {
    bool stdin = false;
    bool tty = false;
    std::string input;
    std::string until;
    int64_t seconds = 30;
  };
  static Result<StreamFlags> ParseStreamFlags(Args& args, bool with_io) {
    StreamFlags flags;
    std::string value;
    while (!args.Done()) {
      bool stdin_flag = with_io && args.Word("-i");
      if (stdin_flag) flags.stdin = true;
      bool tty = with_io && args.Word("-t");
      if (tty) flags.tty = true;
      BBX_ASSIGN_OR_RETURN(bool input, args.Flag("--input", &flags.input));
      BBX_ASSIGN_OR_RETURN(bool until, args.Flag("--until", &flags.until));
      BBX_ASSIGN_OR_RETURN(bool seconds, args.Flag("--for", &value));
      if (seconds) {
        BBX_ASSIGN_OR_RETURN(flags.seconds, ParseSeconds("--for", value));
      }
      if (!(stdin_flag || tty || input || until || seconds)) break;
    }
    if (!flags.input.empty() && with_io && !flags.stdin) {
      return Usage("--input wants -i (the stream's stdin)");
    }
    return flags;
  }

  // The exit code in a v4.channel.k8s.io error channel's message (a Kubernetes Status
  // as JSON): 0 for Success, the ExitCode cause's number for a non-zero exit; any
  // other failure is the tool's error with the Status's message.
  static Result<int> ExitCodeOf(const std::string& json) {
    google::protobuf::Struct status;
    if (!google::protobuf::util::JsonStringToMessage(json, &status).ok()) {
      return MakeError(ErrorCode::kInvalidArgument, "the error channel sent no Status JSON: '" +
                                                        OneLine(json.substr(0, 200)) + "'");
    }
    const auto& fields = status.fields();
    auto text = [&](const google::protobuf::Struct& in, const char* key) {
      auto it = in.fields().find(key);
      return it == in.fields().end() ? std::string() : it->second.string_value();
    };
    if (text(status, "status") == "Success") return 0;
    auto details = fields.find("details");
    if (details != fields.end() && details->second.has_struct_value()) {
      auto causes = details->second.struct_value().fields().find("causes");
      if (causes != details->second.struct_value().fields().end()) {
        for (const auto& cause : causes->second.list_value().values()) {
          if (text(cause.struct_value(), "reason") != "ExitCode") continue;
          std::string number = text(cause.struct_value(), "message");
          char* end = nullptr;
          long code = std::strtol(number.c_str(), &end, 10);
          if (!number.empty() && *end == '\0' && code > 0 && code < 256) {
            return code < kToolFailure ? static_cast<int>(code) : kToolFailure - 1;
          }
        }
      }
    }
    return MakeError(ErrorCode::kUnavailable,
                     "the stream failed: " + OneLine(text(status, "message").substr(0, 300)));
  }

  // Connects to URL with PROTOCOL, sends FLAGS.input on channel INPUT_CHANNEL, and
  // writes what arrives on OUT_CHANNEL to stdout and on ERR_CHANNEL to stderr until
  // FLAGS.until is in that output (0), the server closes (the exit code of
  // STATUS_CHANNEL's Status, 0 without one) or FLAGS.seconds pass (an error).
  // PORT_PREFIX: each channel's first two bytes are the port, little-endian
  // (port-forward); they are checked and dropped.
  Result<int> Stream(const std::string& url, std::string query, const StreamFlags& flags,
                     int input_channel, int out_channel, int err_channel, int status_channel,
                     int port_prefix) {
    BBX_ASSIGN_OR_RETURN(StreamUrl target, ParseStreamUrl(url));
    target.target += query;
    int64_t deadline = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now().time_since_epoch())
                           .count() +
                       flags.seconds * 1000;
    auto left_ms = [&] {
      int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count();
      return static_cast<int>(std::max<int64_t>(deadline - now, 1));
    };
    BBX_ASSIGN_OR_RETURN(WebSocket socket,
                         WebSocket::Connect(target, "v4.channel.k8s.io", left_ms()));
    if (!flags.input.empty()) {
      std::string message(1, static_cast<char>(input_channel));
      BBX_RETURN_IF_ERROR(socket.SendBinary(message + flags.input));
    }
    std::string output, status_json;
    std::map<int, size_t> prefix_left;
    if (port_prefix > 0) prefix_left = {{out_channel, 2}, {status_channel, 2}};
    std::string prefix_bytes[2];
    while (true) {
      auto message = socket.Receive(left_ms());
      if (!message.ok()) {
        if (message.error().code == ErrorCode::kTimeout) {
          socket.Close();
          return MakeError(ErrorCode::kTimeout,
                           "no '" + OneLine(flags.until) + "' in the stream's output after " +
                               std::to_string(flags.seconds) + " s; it said '" +
                               OneLine(output.substr(0, 300)) + "'");
        }
        return message.error();
      }
      if (!message->has_value()) break;
      std::string& data = **message;
      if (data.empty()) continue;
      int channel = static_cast<uint8_t>(data[0]);
      data.erase(0, 1);
      auto prefix = prefix_left.find(channel);
      if (prefix != prefix_left.end() && prefix->second > 0) {
        size_t take = std::min(prefix->second, data.size());
        prefix_bytes[channel == out_channel ? 0 : 1] += data.substr(0, take);
        data.erase(0, take);
        prefix->second -= take;
        const std::string& got = prefix_bytes[channel == out_channel ? 0 : 1];
        if (prefix->second == 0 &&
            (static_cast<uint8_t>(got[0]) | (static_cast<uint8_t>(got[1]) << 8)) != port_prefix) {
          return MakeError(ErrorCode::kInvalidArgument,
                           "port-forward channel " + std::to_string(channel) +
                               " began with another port than " + std::to_string(port_prefix));
        }
      }
      if (data.empty()) continue;
      if (channel == status_channel) {
        status_json += data;
        if (port_prefix > 0) {
          socket.Close();
          return MakeError(ErrorCode::kUnavailable,
                           "port-forward to port " + std::to_string(port_prefix) +
                               " failed: " + OneLine(status_json.substr(0, 1000)));
        }
        continue;
      }
      if (channel != out_channel && channel != err_channel) continue;
      std::fwrite(data.data(), 1, data.size(), channel == out_channel ? stdout : stderr);
      std::fflush(channel == out_channel ? stdout : stderr);
      output += data;
      if (output.size() > WebSocket::kMaxMessage) output.erase(0, output.size() / 2);
      if (!flags.until.empty() && output.find(flags.until) != std::string::npos) {
        socket.Close();
        return 0;
      }
    }
    socket.Close();
    if (!flags.until.empty()) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "the stream ended without '" + OneLine(flags.until) + "' in its output: '" +
                           OneLine(output.substr(0, 300)) + "'");
    }
    if (status_json.empty()) return 0;
    return ExitCodeOf(status_json);
  }

  // The channels of v4.channel.k8s.io for exec and attach.
  static constexpr int kStdin = 0, kStdout = 1, kStderr = 2, kError = 3;

  Result<int> ExecStream(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string id, args.Positional("ID"));
    BBX_ASSIGN_OR_RETURN(StreamFlags flags, ParseStreamFlags(args, true));
    args.Word("--");
    cri::ExecRequest request;
    request.set_container_id(id);
    for (std::string& word : args.Rest()) request.add_cmd(std::move(word));
    if (request.cmd().empty()) return Usage("exec-stream wants a command");
    request.set_stdin(flags.stdin);
    request.set_tty(flags.tty);
    request.set_stdout(true);
    request.set_stderr(!flags.tty);  // a tty has one output stream
    cri::ExecResponse response;
    BBX_RETURN_IF_ERROR(RpcStatus("Exec", runtime_->Exec(Context().get(), request, &response)));
    return Stream(response.url(), "", flags, kStdin, kStdout, kStderr, kError, 0);
  }

  Result<int> Attach(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string id, args.Positional("ID"));
    BBX_ASSIGN_OR_RETURN(StreamFlags flags, ParseStreamFlags(args, true));
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::AttachRequest request;
    request.set_container_id(id);
    request.set_stdin(flags.stdin);
    request.set_tty(flags.tty);
    request.set_stdout(true);
    request.set_stderr(!flags.tty);
    cri::AttachResponse response;
    BBX_RETURN_IF_ERROR(RpcStatus("Attach", runtime_->Attach(Context().get(), request, &response)));
    return Stream(response.url(), "", flags, kStdin, kStdout, kStderr, kError, 0);
  }

  Result<int> PortForward(Args& args) {
    BBX_ASSIGN_OR_RETURN(std::string pod, args.Positional("POD"));
    BBX_ASSIGN_OR_RETURN(std::string port_text, args.Positional("PORT"));
    char* end = nullptr;
    long port = std::strtol(port_text.c_str(), &end, 10);
    if (port_text.empty() || *end != '\0' || port < 1 || port > 65535) {
      return Usage("port-forward PORT wants 1 to 65535, not '" + port_text + "'");
    }
    BBX_ASSIGN_OR_RETURN(StreamFlags flags, ParseStreamFlags(args, false));
    BBX_RETURN_IF_ERROR(args.NoMore());
    cri::PortForwardRequest request;
    request.set_pod_sandbox_id(pod);
    request.add_port(static_cast<int32_t>(port));
    cri::PortForwardResponse response;
    BBX_RETURN_IF_ERROR(
        RpcStatus("PortForward", runtime_->PortForward(Context().get(), request, &response)));
    // Over WebSocket the ports are the query's `port` values; per port a data channel
    // (2N) and an error channel (2N+1), each beginning with the port.
    std::string query = (response.url().find('?') == std::string::npos ? "?" : "&") +
                        std::string("port=") + std::to_string(port);
    return Stream(response.url(), query, flags, 0, 0, -1, 1, static_cast<int>(port));
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<cri::RuntimeService::Stub> runtime_;
  std::unique_ptr<cri::ImageService::Stub> images_;
  int64_t timeout_seconds_;
};

Result<int> Main(std::vector<std::string> words) {
  int64_t timeout_seconds = 120;
  if (!words.empty() && (words[0] == "--help" || words[0] == "-h")) {
    std::cout << kUsage;
    return 0;
  }
  if (words.size() >= 2 && words[0] == "--timeout") {
    BBX_ASSIGN_OR_RETURN(timeout_seconds, ParseSeconds("--timeout", words[1]));
    words.erase(words.begin(), words.begin() + 2);
  }
  if (words.size() < 2) return Usage("wants SOCKET COMMAND");
  std::string socket = words[0], command = words[1];
  if (socket.empty() || socket.front() != '/') {
    return Usage("SOCKET '" + socket + "' is not an absolute path to containerd's socket");
  }
  words.erase(words.begin(), words.begin() + 2);
  Client client(socket, timeout_seconds);
  return client.Run(command, Args(std::move(words)));
}

}  // namespace
}  // namespace beaconbox::cri_client

int main(int argc, char** argv) {
  auto result = beaconbox::cri_client::Main(std::vector<std::string>(argv + 1, argv + argc));
  if (!result.ok()) {
    std::fprintf(stderr, "bbx-cri: %s\n", result.error().message.c_str());
    return beaconbox::cri_client::kToolFailure;
  }
  return *result;
}
