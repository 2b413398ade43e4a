// The built plugins/vmm-qemu.so through its C ABI: the config keys it declares and
// the values Init refuses (the memory keys of issue 16).
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <string>

#include "beaconbox/plugin_abi.h"

namespace beaconbox::qemu {
namespace {

class VmmQemuPluginConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* output_dir = std::getenv("BEACONBOX_OUTPUT_DIR");
    ASSERT_NE(output_dir, nullptr) << "run through ctest (BEACONBOX_OUTPUT_DIR)";
    std::string path = std::string(output_dir) + "/plugins/vmm-qemu.so";
    handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(handle_, nullptr) << ::dlerror();
    auto entry = reinterpret_cast<bbx_plugin_entry_fn>(::dlsym(handle_, BBX_PLUGIN_ENTRY_SYMBOL));
    ASSERT_NE(entry, nullptr);
    bbx_entry_request request{sizeof(request), BBX_ABI_VERSION_CURRENT, BBX_ABI_VERSION_CURRENT};
    response_.struct_size = sizeof(response_);
    ASSERT_EQ(entry(&request, &response_, &error_), BBX_OK) << message_;
    ASSERT_EQ(response_.kind, BBX_PLUGIN_KIND_VMM);
    common_ = response_.common_ops;
    host_.struct_size = sizeof(host_);
    host_.abi_version = BBX_ABI_VERSION_CURRENT;
  }
  void TearDown() override {
    if (plugin_ != nullptr) common_->fini(plugin_);
    if (handle_ != nullptr) ::dlclose(handle_);
  }
  bbx_status Init(const std::string& toml) {
    if (plugin_ != nullptr) common_->fini(plugin_);
    plugin_ = nullptr;
    message_[0] = '\0';
    bbx_bytes config{reinterpret_cast<const uint8_t*>(toml.data()), toml.size()};
    return common_->init(&host_, config, &plugin_, &error_);
  }

  void* handle_ = nullptr;
  bbx_entry_response response_{};
  const bbx_plugin_common_ops* common_ = nullptr;
  bbx_host_services host_{};
  bbx_plugin* plugin_ = nullptr;
  char message_[512] = {};
  bbx_error error_{message_, sizeof(message_)};
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
