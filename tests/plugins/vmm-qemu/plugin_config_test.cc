// The built plugins/vmm-qemu.so through its C ABI: the config keys it declares and
// the values Init refuses (the memory keys of issue 16).
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "beaconbox/plugin_abi.h"
#include "tests/plugins/common/built_plugin_fixture.h"

namespace beaconbox::qemu {
namespace {

class VmmQemuPluginConfigTest : public plugins::testing::BuiltPluginFixture<> {
 protected:
  void SetUp() override { LoadPlugin("vmm-qemu.so", BBX_PLUGIN_KIND_VMM); }
};

TEST_F(VmmQemuPluginConfigTest, DeclaresTheMemoryKeys) {
  std::set<std::string> keys;
  for (size_t i = 0; i < response_.config_key_count; ++i) {
    keys.insert(response_.config_keys[i].name);
  }
  EXPECT_TRUE(keys.count("tcg_tb_size_mib"));
  EXPECT_TRUE(keys.count("free_page_reporting"));
  EXPECT_TRUE(keys.count("guest_swiotlb"));
}

TEST_F(VmmQemuPluginConfigTest, AcceptsMemoryKeysInRange) {
  EXPECT_EQ(Init(""), BBX_OK) << message_;
  EXPECT_EQ(Init("tcg_tb_size_mib = 0\nfree_page_reporting = false\n"), BBX_OK) << message_;
  EXPECT_EQ(Init("tcg_tb_size_mib = 4096\nfree_page_reporting = true\nguest_swiotlb = true\n"),
            BBX_OK)
      << message_;
}

TEST_F(VmmQemuPluginConfigTest, RefusesBadMemoryKeysNamingThem) {
  for (const char* bad :
       {"tcg_tb_size_mib = -1\n", "tcg_tb_size_mib = 4097\n", "tcg_tb_size_mib = \"32\"\n"}) {
    EXPECT_EQ(Init(bad), BBX_ERR_INVALID_ARGUMENT) << bad;
    EXPECT_NE(std::string(message_).find("tcg_tb_size_mib"), std::string::npos) << message_;
  }
  EXPECT_EQ(Init("guest_swiotlb = 1\n"), BBX_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(message_).find("guest_swiotlb"), std::string::npos) << message_;
  EXPECT_EQ(Init("free_page_reporting = \"yes\"\n"), BBX_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(message_).find("free_page_reporting"), std::string::npos) << message_;
}

}  // namespace
}  // namespace beaconbox::qemu
