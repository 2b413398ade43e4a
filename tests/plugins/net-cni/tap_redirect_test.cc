// The TAP coupled to a CNI interface (tap_redirect.h) and beaconbox's tc-redirect-tap
// binary: the TAP's owner (TC_REDIRECT_TAP_UID / _GID), and a CHECK that fails when
// the TAP, its owner or either redirect is not as ADD left it. Each test in a network
// namespace of its own (needs root); the CNI interface is a second TAP there.
#include "plugins/net-cni/tap_redirect.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/base/unique_fd.h"
#include "plugins/common/child_process.h"
#include "plugins/common/netns.h"
#include "tests/plugins/net-cni/netns_fixture.h"

namespace beaconbox::cni {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

template <typename T>
Status StatusOf(const Result<T>& result) {
  return result.ok() ? Status::Ok() : Status(result.error());
}

class TapRedirectTest : public NetnsFixture {
 protected:
  TapRedirectTest() : NetnsFixture("net-cni-tap-") {}
  void SetUp() override {
    NetnsFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // The "CNI interface": any device works for the redirect, a persistent TAP here.
    ASSERT_TRUE(In([] { return MakePersistentTap("eth0"); }).ok());
  }
  static Status MakePersistentTap(const std::string& name) {
    UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!tun) return MakeError(ErrorCode::kNotFound, "/dev/net/tun");
    ifreq request{};
    std::strncpy(request.ifr_name, name.c_str(), IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (::ioctl(tun.get(), TUNSETIFF, &request) != 0 || ::ioctl(tun.get(), TUNSETPERSIST, 1) != 0) {
      return MakeError(ErrorCode::kInternal, "TUNSETIFF " + name);
    }
    return Status::Ok();
  }
  // Runs beaconbox's tc-redirect-tap binary as a runtime would.
  plugins::CapturedRun Plugin(const std::string& command, const json& config,
                              const std::string& cni_args = "") {
    plugins::CapturedRunOptions options;
    options.env = {"CNI_COMMAND=" + command, "CNI_CONTAINERID=c1",   "CNI_NETNS=" + netns_,
                   "CNI_IFNAME=eth0",        "CNI_ARGS=" + cni_args, "CNI_PATH=/nonexistent"};
    options.stdin_text = config.dump();
    auto run = plugins::RunCaptured({TC_REDIRECT_TAP_BINARY}, options);
    EXPECT_TRUE(run.ok());
    return run.ok() ? *run : plugins::CapturedRun{};
  }
};

TEST_F(TapRedirectTest, TheTapIsOwnedAsAskedAndRedirectsBothWays) {
  ASSERT_TRUE(In([] {
                return StatusOf(CreateRedirectedTap("eth0", "tap0", TapOwner{1234, 5678}));
              }).ok());
  TapOwnership ownership;
  ASSERT_TRUE(In([&]() -> Status {
                BBX_ASSIGN_OR_RETURN(ownership, TapOwnershipOf("tap0"));
                return Status::Ok();
              }).ok());
  EXPECT_EQ(ownership.uid, std::optional<uid_t>(1234));
  EXPECT_EQ(ownership.gid, std::optional<gid_t>(5678));
  EXPECT_TRUE(In([] { return CheckRedirectedTap("eth0", "tap0", TapOwner{1234, 5678}); }).ok());

  Status other = In([] { return CheckRedirectedTap("eth0", "tap0", TapOwner{0, 0}); });
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().message, "TAP tap0 is owned by 1234:5678, not 0:0");

  // A retried ADD with another owner re-owns the TAP it reuses.
  ASSERT_TRUE(In([] {
                return StatusOf(CreateRedirectedTap("eth0", "tap0", TapOwner{42, 43}));
              }).ok());
  EXPECT_TRUE(In([] { return CheckRedirectedTap("eth0", "tap0", TapOwner{42, 43}); }).ok());
}

TEST_F(TapRedirectTest, CheckNamesTheRedirectThatIsMissing) {
  ASSERT_TRUE(In([] { return StatusOf(CreateRedirectedTap("eth0", "tap0")); }).ok());
  const TapOwner me = ProcessTapOwner();
  ASSERT_TRUE(In([&] { return CheckRedirectedTap("eth0", "tap0", me); }).ok());

  ASSERT_EQ(Shell("tc qdisc del dev eth0 ingress"), 0);
  Status inward = In([&] { return CheckRedirectedTap("eth0", "tap0", me); });
  ASSERT_FALSE(inward.ok());
  EXPECT_EQ(inward.error().message, "no tc redirect from eth0 to tap0");

  ASSERT_TRUE(In([] { return StatusOf(CreateRedirectedTap("eth0", "tap0")); }).ok());
  ASSERT_EQ(Shell("tc qdisc del dev tap0 ingress"), 0);
  Status outward = In([&] { return CheckRedirectedTap("eth0", "tap0", me); });
  ASSERT_FALSE(outward.ok());
  EXPECT_EQ(outward.error().message, "no tc redirect from tap0 to eth0");

  ASSERT_TRUE(In([] { return DeleteRedirectedTap("eth0", "tap0"); }).ok());
  Status missing = In([&] { return CheckRedirectedTap("eth0", "tap0", me); });
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message, "TAP tap0 is missing");
  // A device that is not a TAP has no TAP owner.
  Status not_tap = In([] { return StatusOf(TapOwnershipOf("lo")); });
  ASSERT_FALSE(not_tap.ok());
  EXPECT_EQ(not_tap.error().message, "device lo is not a TAP");
}

TEST_F(TapRedirectTest, TheBinaryHonoursUidAndGidAndChecksWhatItMade) {
  const json prev = {{"cniVersion", "1.0.0"},
                     {"interfaces", json::array({{{"name", "eth0"}, {"sandbox", netns_}}})},
                     {"ips", json::array({{{"address", "10.9.0.2/24"}, {"interface", 0}}})}};
  json config = {
      {"cniVersion", "1.0.0"}, {"name", "test"}, {"type", "tc-redirect-tap"}, {"prevResult", prev}};
  const std::string args = "IgnoreUnknown=1;TC_REDIRECT_TAP_UID=2001;TC_REDIRECT_TAP_GID=2002";
  plugins::CapturedRun add = Plugin("ADD", config, args);
  ASSERT_EQ(add.exit_code, 0) << add.stdout_text;
  json result = json::parse(add.stdout_text);
  ASSERT_EQ(result["interfaces"].size(), 2u);
  EXPECT_EQ(result["interfaces"][1]["name"], "tap0");
  EXPECT_EQ(result["interfaces"][1]["sandbox"], netns_);
  EXPECT_TRUE(In([] { return CheckRedirectedTap("eth0", "tap0", TapOwner{2001, 2002}); }).ok());

  config["prevResult"] = result;
  plugins::CapturedRun check = Plugin("CHECK", config, args);
  EXPECT_EQ(check.exit_code, 0) << check.stdout_text;
  // CHECK with another owner than ADD's fails, naming it.
  check = Plugin("CHECK", config, "TC_REDIRECT_TAP_UID=2001;TC_REDIRECT_TAP_GID=7");
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.stdout_text.find("TAP tap0 is owned by 2001:2002, not 2001:7"), std::string::npos)
      << check.stdout_text;
  // CHECK fails once a redirect is gone.
  ASSERT_EQ(Shell("tc qdisc del dev eth0 ingress"), 0);
  check = Plugin("CHECK", config, args);
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.stdout_text.find("no tc redirect from eth0 to tap0"), std::string::npos)
      << check.stdout_text;
  // CHECK of a result that does not list the TAP.
  json unlisted = config;
  unlisted["prevResult"] = prev;
  check = Plugin("CHECK", unlisted, args);
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.stdout_text.find("does not list TAP tap0"), std::string::npos);

  // A uid that is not a number: code 4, one line naming the argument.
  plugins::CapturedRun bad = Plugin("ADD", config, "TC_REDIRECT_TAP_UID=alice");
  EXPECT_EQ(bad.exit_code, 1);
  json error = json::parse(bad.stdout_text);
  EXPECT_EQ(error["code"], 4);
  EXPECT_EQ(error["msg"],
            "tc-redirect-tap: CNI_ARGS TC_REDIRECT_TAP_UID=\"alice\" is not a numeric id: give a "
            "decimal uid or gid");
  bad = Plugin("ADD", config, "TC_REDIRECT_TAP_GID=4294967295");
  EXPECT_EQ(bad.exit_code, 1);

  plugins::CapturedRun del = Plugin("DEL", config, args);
  EXPECT_EQ(del.exit_code, 0) << del.stdout_text;
  Status gone = In([] { return StatusOf(TapOwnershipOf("tap0")); });
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace beaconbox::cni
