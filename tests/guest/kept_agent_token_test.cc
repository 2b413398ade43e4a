// vminitd keeps the agent token between calls (guest/vminitd/kept_agent_token.h):
// fw_cfg is read once for any number of calls with the right token, again when a call
// presents another well-formed token (a clone restored from a template has its own),
// and a wrong token is still refused after that read.
#include "guest/vminitd/kept_agent_token.h"

#include <gtest/gtest.h>

#include <string>

#include "common/base/agent_token.h"

namespace beaconbox::guest {
namespace {

using Verdict = KeptAgentToken::Verdict;

// FAKE fw_cfg: the token it holds now, and how often it was read.
struct FakeFwCfg {
  std::string token;
  int reads = 0;
  std::function<std::string()> Reader() {
    return [this] {
      ++reads;
      return token;
    };
  }
};

std::string NewToken() {
  auto token = GenerateAgentToken();
  EXPECT_TRUE(token.ok());
  return token.ok() ? *token : std::string();
}

TEST(KeptAgentTokenTest, ReadsFwCfgOnceForManyCallsWithTheRightToken) {
  FakeFwCfg fw_cfg{NewToken()};
  KeptAgentToken kept(fw_cfg.Reader());
  EXPECT_EQ(fw_cfg.reads, 0);  // nothing read before the first call
  for (int call = 0; call < 100; ++call) {
    ASSERT_EQ(kept.Check({fw_cfg.token}), Verdict::kAccepted) << call;
  }
  EXPECT_EQ(fw_cfg.reads, 1);
}

TEST(KeptAgentTokenTest, AChangedTokenIsReadAgainAndTheOldOneRefused) {
  FakeFwCfg fw_cfg{NewToken()};
  KeptAgentToken kept(fw_cfg.Reader());
  const std::string template_token = fw_cfg.token;
  ASSERT_EQ(kept.Check({template_token}), Verdict::kAccepted);
  // Restored as a clone: fw_cfg now holds the clone's token.
  fw_cfg.token = NewToken();
  EXPECT_EQ(kept.Check({fw_cfg.token}), Verdict::kAccepted);
  EXPECT_EQ(fw_cfg.reads, 2);
  EXPECT_EQ(kept.Check({fw_cfg.token}), Verdict::kAccepted);
  EXPECT_EQ(fw_cfg.reads, 2);
  EXPECT_EQ(kept.Check({template_token}), Verdict::kRefused);
}

TEST(KeptAgentTokenTest, AWrongTokenIsRefusedAfterTheReread) {
  FakeFwCfg fw_cfg{NewToken()};
  KeptAgentToken kept(fw_cfg.Reader());
  const std::string wrong = NewToken();
  EXPECT_EQ(kept.Check({wrong}), Verdict::kRefused);
  EXPECT_EQ(fw_cfg.reads, 1);
  ASSERT_EQ(kept.Check({fw_cfg.token}), Verdict::kAccepted);
  EXPECT_EQ(kept.Check({wrong}), Verdict::kRefused);
  EXPECT_EQ(fw_cfg.reads, 2);  // a well-formed token that may be new is looked up
  std::string one_off = fw_cfg.token;
  one_off.back() = one_off.back() == '0' ? '1' : '0';
  EXPECT_EQ(kept.Check({one_off}), Verdict::kRefused);
  // The right token is still accepted, from the kept copy.
  EXPECT_EQ(kept.Check({fw_cfg.token}), Verdict::kAccepted);
  EXPECT_EQ(fw_cfg.reads, 3);
}

TEST(KeptAgentTokenTest, NoOrMalformedTokenIsRefusedWithoutARead) {
  FakeFwCfg fw_cfg{NewToken()};
  KeptAgentToken kept(fw_cfg.Reader());
  ASSERT_EQ(kept.Check({fw_cfg.token}), Verdict::kAccepted);
  EXPECT_EQ(kept.Check({}), Verdict::kRefused);
  EXPECT_EQ(kept.Check({""}), Verdict::kRefused);
  EXPECT_EQ(kept.Check({"not-a-token"}), Verdict::kRefused);
  EXPECT_EQ(kept.Check({fw_cfg.token.substr(1)}), Verdict::kRefused);
  EXPECT_EQ(fw_cfg.reads, 1);
}

TEST(KeptAgentTokenTest, OneRightValueAmongSeveralIsAccepted) {
  FakeFwCfg fw_cfg{NewToken()};
  KeptAgentToken kept(fw_cfg.Reader());
  EXPECT_EQ(kept.Check({"junk", fw_cfg.token}), Verdict::kAccepted);
}

TEST(KeptAgentTokenTest, WithoutATokenInFwCfgEveryCallIsRefusedAsUnsealed) {
  FakeFwCfg fw_cfg;  // the VMM delivered none
  KeptAgentToken kept(fw_cfg.Reader());
  EXPECT_EQ(kept.Check({NewToken()}), Verdict::kNoToken);
  EXPECT_EQ(kept.Check({}), Verdict::kNoToken);
  EXPECT_EQ(kept.Check({""}), Verdict::kNoToken);
}

}  // namespace
}  // namespace beaconbox::guest
