// The built plugins/vmm-qemu.so through its C ABI: the config keys it declares and
// the values Init refuses: ranges only (the host checks each value's type against the
// declared keys before Init: beaconbox_ctl_test CtlTest.ValidateRefusesVmmQemuKeysOfTheWrongType).
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

TEST_F(VmmQemuPluginConfigTest, RefusesATbSizeOutOfRangeNamingTheKey) {
  for (const char* bad : {"tcg_tb_size_mib = -1\n", "tcg_tb_size_mib = 4097\n"}) {
    EXPECT_EQ(Init(bad), BBX_ERR_INVALID_ARGUMENT) << bad;
    EXPECT_NE(std::string(message_).find("tcg_tb_size_mib"), std::string::npos) << message_;
    EXPECT_NE(std::string(message_).find("0 (QEMU's default) to 4096"), std::string::npos)
        << message_;
  }
}

// Timeouts outside their range are refused, not silently clamped.
TEST_F(VmmQemuPluginConfigTest, RefusesTimeoutsOutOfRangeNamingKeyAndRange) {
  struct Case {
    const char* toml;
    const char* line;
  };
  for (const Case& bad : {
           Case{"kvm_probe_timeout_ms = 99\n", "kvm_probe_timeout_ms = 99: use 100 to 600000"},
           Case{"kvm_probe_timeout_ms = 600001\n",
                "kvm_probe_timeout_ms = 600001: use 100 to 600000"},
           Case{"kvm_probe_timeout_ms = -5\n", "kvm_probe_timeout_ms = -5: use 100 to 600000"},
           Case{"template_boot_timeout_ms = 0\n",
                "template_boot_timeout_ms = 0: use 1000 to 3600000"},
           Case{"template_boot_timeout_ms = 3600001\n",
                "template_boot_timeout_ms = 3600001: use 1000 to 3600000"},
           // Named as given (a negative value was clamped to 0 before its range check).
           Case{"console_log_max_bytes = -1\n",
                "console_log_max_bytes = -1: use 65536 to 1073741824"},
       }) {
    EXPECT_EQ(Init(bad.toml), BBX_ERR_INVALID_ARGUMENT) << bad.toml;
    EXPECT_EQ(std::string(message_), bad.line);
  }
  for (const char* good :
       {"kvm_probe_timeout_ms = 100\n", "kvm_probe_timeout_ms = 600000\n",
        "template_boot_timeout_ms = 1000\n", "template_boot_timeout_ms = 3600000\n",
        "console_log_max_bytes = 65536\n", "console_log_max_bytes = 1073741824\n"}) {
    EXPECT_EQ(Init(good), BBX_OK) << good << message_;
  }
}

}  // namespace
}  // namespace beaconbox::qemu
