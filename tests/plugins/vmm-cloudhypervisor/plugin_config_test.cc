// The built plugins/vmm-cloudhypervisor.so through its C ABI: the values Init refuses
// (ranges only: the host checks each value's type against the declared keys before Init).
#include <gtest/gtest.h>

#include <string>

#include "beaconbox/plugin_abi.h"
#include "tests/plugins/common/built_plugin_fixture.h"

namespace beaconbox::cloudhv {
namespace {

class VmmCloudHypervisorPluginConfigTest : public plugins::testing::BuiltPluginFixture<> {
 protected:
  void SetUp() override { LoadPlugin("vmm-cloudhypervisor.so", BBX_PLUGIN_KIND_VMM); }
};

TEST_F(VmmCloudHypervisorPluginConfigTest, AcceptsTheDefaults) {
  EXPECT_EQ(Init(""), BBX_OK) << message_;
}

// Numeric keys outside their range are refused with one line naming key and range, not
// silently clamped.
TEST_F(VmmCloudHypervisorPluginConfigTest, RefusesNumbersOutOfRangeNamingKeyAndRange) {
  struct Case {
    const char* toml;
    const char* line;
  };
  for (const Case& bad : {
           Case{"api_socket_timeout_ms = 99\n", "api_socket_timeout_ms = 99: use 100 to 600000"},
           Case{"api_socket_timeout_ms = 600001\n",
                "api_socket_timeout_ms = 600001: use 100 to 600000"},
           Case{"api_socket_timeout_ms = -5\n", "api_socket_timeout_ms = -5: use 100 to 600000"},
           Case{"api_call_timeout_ms = 0\n", "api_call_timeout_ms = 0: use 100 to 600000"},
           Case{"api_call_timeout_ms = 600001\n",
                "api_call_timeout_ms = 600001: use 100 to 600000"},
           Case{"console_log_max_bytes = -1\n",
                "console_log_max_bytes = -1: use 65536 to 1073741824"},
           Case{"console_log_max_bytes = 65535\n",
                "console_log_max_bytes = 65535: use 65536 to 1073741824"},
           Case{"console_log_max_bytes = 1073741825\n",
                "console_log_max_bytes = 1073741825: use 65536 to 1073741824"},
       }) {
    EXPECT_EQ(Init(bad.toml), BBX_ERR_INVALID_ARGUMENT) << bad.toml;
    EXPECT_EQ(std::string(message_), bad.line);
  }
  for (const char* good :
       {"api_socket_timeout_ms = 100\n", "api_socket_timeout_ms = 600000\n",
        "api_call_timeout_ms = 100\n", "api_call_timeout_ms = 600000\n",
        "console_log_max_bytes = 65536\n", "console_log_max_bytes = 1073741824\n"}) {
    EXPECT_EQ(Init(good), BBX_OK) << good << message_;
  }
}

}  // namespace
}  // namespace beaconbox::cloudhv
