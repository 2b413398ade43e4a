#include "tests/plugin_host/test_util.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace beaconbox::testing {

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "bbx-host-test-XXXXXX").string();
  char* made = ::mkdtemp(pattern.data());
  path_ = made ? made : "";
}

TempDir::~TempDir() {
  std::error_code error;
  if (!path_.empty()) std::filesystem::remove_all(path_, error);
}

std::string TempDir::Write(const std::string& name, const std::string& text) const {
  std::string full = path_ + "/" + name;
  std::filesystem::create_directories(std::filesystem::path(full).parent_path());
  std::ofstream(full) << text;
  return full;
}

ScopedEnv::ScopedEnv(const char* name, const char* value) : name_(name) {
  if (const char* old = ::getenv(name)) old_ = old;
  if (value) {
    ::setenv(name, value, 1);
  } else {
    ::unsetenv(name);
  }
}

ScopedEnv::~ScopedEnv() {
  if (old_) {
    ::setenv(name_.c_str(), old_->c_str(), 1);
  } else {
    ::unsetenv(name_.c_str());
  }
}

std::string PluginTable(const std::string& kind, const std::string& name, const std::string& path,
                        const std::string& config_lines) {
  std::string text = "\n[plugins." + kind + "." + name + "]\npath = \"" + path + "\"\n";
  if (!config_lines.empty()) {
    text += "[plugins." + kind + "." + name + ".config]\n" + config_lines + "\n";
  }
  return text;
}

std::string GoodConfig(const std::string& extra) {
  return "[vm]\nvmm = \"fake\"\n[network]\nmode = \"fake\"\n[storage]\ndriver = \"fake\"\n" +
         PluginTable("vmm", "fake", FIXTURE_VMM) + PluginTable("network", "fake", FIXTURE_NETWORK) +
         PluginTable("storage", "fake", FIXTURE_STORAGE) + extra;
}

}  // namespace beaconbox::testing
