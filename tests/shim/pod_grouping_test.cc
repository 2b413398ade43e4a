// One shim per CRI pod (pod_grouping.h): the grouping id from the annotations, and
// the `start` / `delete` actions around a shim that already serves the pod. The
// serving shim is stood in for by a plain listening socket (FAKE: nothing answers
// on it); the real one is started by containerd in e2e_beaconbox_pod.
#include "host/shim/pod_grouping.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/base/file_util.h"
#include "common/base/unique_fd.h"
#include "host/shim/runtime_layout.h"
#include "host/shim/shim_actions.h"
#include "tests/shim/fake_backends.h"

namespace beaconbox::shim {
namespace {

namespace fs = std::filesystem;

constexpr char kAddress[] = "/run/containerd-test/containerd.sock";

TEST(GroupingIdTest, FollowsTheCriAndCrioAnnotations) {
  EXPECT_EQ(*GroupingIdOf("c1", {}), "c1");
  EXPECT_EQ(*GroupingIdOf("p1", {{kCriContainerType, "sandbox"}, {kCriSandboxId, "p1"}}), "p1");
  // A sandbox groups by its own id whatever sandbox id it names.
  EXPECT_EQ(*GroupingIdOf("p1", {{kCriContainerType, "sandbox"}, {kCriSandboxId, "zz"}}), "p1");
  EXPECT_EQ(*GroupingIdOf("a1", {{kCriContainerType, "container"}, {kCriSandboxId, "p1"}}), "p1");
  EXPECT_EQ(*GroupingIdOf("a1", {{kCrioContainerType, "container"}, {kCrioSandboxId, "p2"}}), "p2");
  // runc's shim groups by the sandbox id alone too.
  EXPECT_EQ(*GroupingIdOf("a1", {{kCriSandboxId, "p1"}}), "p1");

  auto no_pod = GroupingIdOf("a1", {{kCriContainerType, "container"}});
  ASSERT_FALSE(no_pod.ok());
  EXPECT_NE(no_pod.error().message.find("io.kubernetes.cri.sandbox-id"), std::string::npos);
  auto bad_type = GroupingIdOf("a1", {{kCriContainerType, "pod"}, {kCriSandboxId, "p1"}});
  ASSERT_FALSE(bad_type.ok());
  EXPECT_NE(bad_type.error().message.find("io.kubernetes.cri.container-type=pod"),
            std::string::npos);
  auto bad_id = GroupingIdOf("a1", {{kCriContainerType, "container"}, {kCriSandboxId, "../p1"}});
  ASSERT_FALSE(bad_id.ok());
  EXPECT_EQ(bad_id.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad_id.error().message.find('\n'), std::string::npos);
}

class PodShimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::MakeTestDir("bbx-pod-grouping-test");
    ASSERT_FALSE(root_.empty());
    fs::create_directories(root_ + "/run");
    fs::create_directories(root_ + "/log");
    config_ = root_ + "/config.toml";
    std::ofstream(config_) << "[paths]\nrun_dir = \"" << root_ << "/run\"\nlog_dir = \"" << root_
                           << "/log\"\nstate_dir = \"" << root_ << "/state\"\n";
    const char* previous = std::getenv("BEACONBOX_CONFIG");
    if (previous != nullptr) previous_config_ = previous;
    ::setenv("BEACONBOX_CONFIG", config_.c_str(), 1);
    // `start` reads containerd's options from stdin.
    saved_stdin_ = UniqueFd(::dup(STDIN_FILENO));
    UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ::dup2(null_fd.get(), STDIN_FILENO);
  }
  void TearDown() override {
    ::dup2(saved_stdin_.get(), STDIN_FILENO);
    std::cin.clear();
    if (previous_config_.empty()) {
      ::unsetenv("BEACONBOX_CONFIG");
    } else {
      ::setenv("BEACONBOX_CONFIG", previous_config_.c_str(), 1);
    }
    fs::remove_all(root_);
  }

  std::string Bundle(const std::string& id, const std::string& annotations) {
    std::string bundle = root_ + "/bundles/" + id;
    fs::create_directories(bundle);
    std::ofstream(bundle + "/config.json")
        << R"({"ociVersion":"1.0.2","root":{"path":"rootfs"},"annotations":{)" << annotations
        << "}}";
    return bundle;
  }

  ShimFlags Flags(const std::string& id, const std::string& bundle, const std::string& action) {
    ShimFlags flags;
    flags.namespace_name = "k8s.io";
    flags.id = id;
    flags.containerd_address = kAddress;
    flags.bundle = bundle;
    flags.action = action;
    return flags;
  }

  // A listening socket where the pod's shim would serve (FAKE: nobody accepts).
  UniqueFd ListenAt(const std::string& path) {
    fs::create_directories(fs::path(path).parent_path());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, path.size());
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd.get(), 16), 0);
    return fd;
  }

  std::string root_, config_, previous_config_;
  UniqueFd saved_stdin_;
};

TEST_F(PodShimTest, SocketAnswersOnlyWhileSomeoneListens) {
  const std::string path = root_ + "/run/s/probe";
  EXPECT_FALSE(ShimSocketAnswers(path));
  {
    UniqueFd listener = ListenAt(path);
    EXPECT_TRUE(ShimSocketAnswers(path));
  }
  EXPECT_TRUE(fs::exists(path));  // a dead shim's leftover
  EXPECT_FALSE(ShimSocketAnswers(path));
}

// An app container's `start` while its pod's shim serves: the pod's address, in the
// app's bundle and on stdout, and no second shim. Its `delete` (containerd runs it
// after every task Delete) leaves the pod's socket alone; once nothing serves it, a
// `delete` removes it.
TEST_F(PodShimTest, AnAppContainerGetsThePodsShimAddress) {
  const RuntimeLayout layout(root_ + "/run", root_ + "/log");
  const std::string pod_socket = *layout.ShimSocketPath(kAddress, {"k8s.io", "p1"});
  // The sandbox's own socket is the one of its grouping id, its id.
  EXPECT_NE(pod_socket, *layout.ShimSocketPath(kAddress, {"k8s.io", "a1"}));
  EXPECT_NE(pod_socket, *layout.ShimSocketPath(kAddress, {"other", "p1"}));
  UniqueFd pod_shim = ListenAt(pod_socket);

  const std::string app = Bundle("a1", R"("io.kubernetes.cri.container-type":"container",
                                           "io.kubernetes.cri.sandbox-id":"p1")");
  ::testing::internal::CaptureStdout();
  Status started = RunStart(Flags("a1", app, "start"), "containerd-shim-beaconbox-v1");
  const std::string printed = ::testing::internal::GetCapturedStdout();
  ASSERT_TRUE(started.ok()) << started.error().message;
  EXPECT_EQ(printed, "unix://" + pod_socket);
  EXPECT_EQ(*ReadSmallFile(app + "/address"), "unix://" + pod_socket);
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);  // no child: no second shim
  EXPECT_EQ(errno, ECHILD);
  EXPECT_TRUE(ShimSocketAnswers(pod_socket));

  ::testing::internal::CaptureStdout();
  Status deleted = RunDelete(Flags("a1", app, "delete"));
  (void)::testing::internal::GetCapturedStdout();
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_TRUE(ShimSocketAnswers(pod_socket)) << "the app's delete removed the pod's socket";

  pod_shim.Reset();  // the pod's shim died
  ::testing::internal::CaptureStdout();
  deleted = RunDelete(Flags("a1", app, "delete"));
  (void)::testing::internal::GetCapturedStdout();
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_FALSE(fs::exists(pod_socket));
}

// containerd 1.7 removes the bundle in its own task Delete while its cleanup of a dead
// shim may be running the `delete` action: without the bundle's address file the
// action still finds the socket `start` bound (derived from the same inputs) and
// removes it once nothing serves it; a live shim's socket stays.
TEST_F(PodShimTest, DeleteRemovesTheSocketOfADeadShimWhoseBundleIsGone) {
  const RuntimeLayout layout(root_ + "/run", root_ + "/log");
  const std::string socket = *layout.ShimSocketPath(kAddress, {"k8s.io", "c1"});
  const std::string bundle = root_ + "/gone-bundle";  // never made: containerd removed it
  {
    UniqueFd live_shim = ListenAt(socket);
    ::testing::internal::CaptureStdout();
    Status deleted = RunDelete(Flags("c1", bundle, "delete"));
    (void)::testing::internal::GetCapturedStdout();
    ASSERT_TRUE(deleted.ok()) << deleted.error().message;
    EXPECT_TRUE(ShimSocketAnswers(socket)) << "delete removed a live shim's socket";
  }
  ASSERT_TRUE(fs::exists(socket));  // the shim died: its socket file stays behind
  ::testing::internal::CaptureStdout();
  Status deleted = RunDelete(Flags("c1", bundle, "delete"));
  (void)::testing::internal::GetCapturedStdout();
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_FALSE(fs::exists(socket)) << "the dead shim's socket was left";
}

TEST_F(PodShimTest, StartRefusesAnAppContainerNamingNoPod) {
  const std::string app = Bundle("a1", R"("io.kubernetes.cri.container-type":"container")");
  ::testing::internal::CaptureStdout();
  Status started = RunStart(Flags("a1", app, "start"), "containerd-shim-beaconbox-v1");
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "");
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.error().message.find("io.kubernetes.cri.sandbox-id"), std::string::npos);
  EXPECT_FALSE(fs::exists(root_ + "/run/s"));
}

}  // namespace
}  // namespace beaconbox::shim
