#include "host/shim/oci_hooks.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"

namespace beaconbox::shim {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class OciHooksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/bbx-oci-hooks-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    root_ = dir;
  }
  void TearDown() override { fs::remove_all(root_); }
  // An executable shell script at root_/name.
  std::string Script(const std::string& name, const std::string& body) {
    const std::string path = root_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    fs::permissions(path, fs::perms::owner_all);
    return path;
  }
  std::string root_;
};

TEST_F(OciHooksTest, AHookGetsTheStateOnStdinItsArgsAndItsEnv) {
  OciHook hook;
  hook.path = Script("record", "cat > \"$1/state\"; echo \"$0 $FOO\" > \"$1/argv-env\"");
  hook.args = {"hook-name", root_};
  hook.has_env = true;
  hook.env = {"FOO=bar"};
  const std::string state = OciStateJson("c1", "creating", 4242, "/bundle", {{"a", "b"}});
  ASSERT_TRUE(RunOciHook(hook, state).ok());
  json got = json::parse(*ReadSmallFile(root_ + "/state"));
  EXPECT_EQ(got["id"], "c1");
  EXPECT_EQ(got["status"], "creating");
  EXPECT_EQ(got["pid"], 4242);
  EXPECT_EQ(got["bundle"], "/bundle");
  EXPECT_EQ(got["annotations"]["a"], "b");
  EXPECT_EQ(got["ociVersion"], "1.0.2");
  // $0 is the script's path for sh; the env is exactly the hook's.
  EXPECT_EQ(*ReadSmallFile(root_ + "/argv-env"), hook.path + " bar\n");
}

TEST_F(OciHooksTest, AFailingOrHangingHookIsAnErrorWithItsOutput) {
  OciHook failing;
  failing.path = Script("fail", "echo 'no GPU here' >&2; exit 3");
  failing.args = {failing.path};
  auto failed = RunOciHook(failing, "{}");
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().message.find("exited with status 3: no GPU here"), std::string::npos)
      << failed.error().message;

  OciHook hanging;
  hanging.path = Script("hang", "exec sleep 600");
  hanging.args = {hanging.path};
  hanging.timeout_seconds = 1;
  auto hung = RunOciHook(hanging, "{}");
  ASSERT_FALSE(hung.ok());
  EXPECT_NE(hung.error().message.find("did not exit within its timeout of 1 s"), std::string::npos)
      << hung.error().message;

  OciHook absent;
  absent.path = root_ + "/absent";
  absent.args = {absent.path};
  EXPECT_FALSE(RunOciHook(absent, "{}").ok());
}

TEST_F(OciHooksTest, CreateStopsAtTheFirstFailureAndLaterKindsOnlyLog) {
  OciHook ok;
  ok.path = Script("ok", "cat >> \"$1/ran\"; echo >> \"$1/ran\"");
  ok.args = {ok.path, root_};
  OciHook failing;
  failing.path = Script("fail", "exit 1");
  failing.args = {failing.path};
  OciHooks hooks;
  hooks.prestart = {ok};
  hooks.create_runtime = {failing, ok};
  hooks.poststart = {failing, ok};
  hooks.poststop = {ok};
  ContainerHooks container(hooks, "c1", "/bundle", {});
  EXPECT_FALSE(container.RunCreate(7).ok());
  container.RunPoststart(7);
  container.RunPoststop(7);
  std::string ran = *ReadSmallFile(root_ + "/ran");
  EXPECT_NE(ran.find("\"status\":\"creating\""), std::string::npos);
  EXPECT_NE(ran.find("\"status\":\"running\""), std::string::npos);
  EXPECT_NE(ran.find("\"status\":\"stopped\""), std::string::npos);
  // prestart's ok, not createRuntime's second (after the failure), poststart's, poststop's.
  EXPECT_EQ(std::count(ran.begin(), ran.end(), '\n'), 3);
}

}  // namespace
}  // namespace beaconbox::shim
