// A fixture for tests of a built plugin (<BEACONBOX_OUTPUT_DIR>/plugins/<name>.so)
// through its C ABI only, as the shim and beaconbox-ctl load it: dlopen, the entry's
// answer, Init and fini of one instance.
#ifndef BEACONBOX_TESTS_PLUGINS_COMMON_BUILT_PLUGIN_FIXTURE_H_
#define BEACONBOX_TESTS_PLUGINS_COMMON_BUILT_PLUGIN_FIXTURE_H_

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "beaconbox/plugin_abi.h"

namespace beaconbox::plugins::testing {

// `Base` is the fixture the test needs besides (e.g. one that enters a network
// namespace); its SetUp runs before LoadPlugin, its TearDown after the plugin is gone.
template <typename Base = ::testing::Test>
class BuiltPluginFixture : public Base {
 protected:
  // Loads the built plugin `file` and asks its entry; a fatal failure when it is not
  // there or is not of `kind` (callers return on HasFatalFailure()).
  void LoadPlugin(const std::string& file, bbx_plugin_kind kind) {
    const char* output_dir = std::getenv("BEACONBOX_OUTPUT_DIR");
    ASSERT_NE(output_dir, nullptr) << "run through ctest (BEACONBOX_OUTPUT_DIR)";
    const std::string path = std::string(output_dir) + "/plugins/" + file;
    handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(handle_, nullptr) << ::dlerror();
    auto entry = reinterpret_cast<bbx_plugin_entry_fn>(::dlsym(handle_, BBX_PLUGIN_ENTRY_SYMBOL));
    ASSERT_NE(entry, nullptr);
    bbx_entry_request request{sizeof(request), BBX_ABI_VERSION_CURRENT, BBX_ABI_VERSION_CURRENT};
    response_.struct_size = sizeof(response_);
    ASSERT_EQ(entry(&request, &response_, &error_), BBX_OK) << message_;
    ASSERT_EQ(response_.kind, kind);
    common_ = response_.common_ops;
    host_.struct_size = sizeof(host_);
    host_.abi_version = BBX_ABI_VERSION_CURRENT;
  }

  void TearDown() override {
    if (plugin_ != nullptr) common_->fini(plugin_);
    plugin_ = nullptr;
    if (handle_ != nullptr) ::dlclose(handle_);
    handle_ = nullptr;
    Base::TearDown();
  }

  // A new instance configured by `toml` (the one before it, if any, is finished).
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

}  // namespace beaconbox::plugins::testing

#endif  // BEACONBOX_TESTS_PLUGINS_COMMON_BUILT_PLUGIN_FIXTURE_H_
