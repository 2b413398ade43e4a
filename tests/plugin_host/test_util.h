// Helpers for the plugin host tests: a temporary directory removed on scope exit,
// environment variables restored on scope exit, and config text builders.
#pragma once

#include <optional>
#include <string>

namespace beaconbox::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  // Writes `text` to path()/name and returns the full path.
  std::string Write(const std::string& name, const std::string& text) const;

 private:
  std::string path_;
};

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value);  // value nullptr: unset
  ~ScopedEnv();

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// A config choosing vmm/fake, storage/fake and network/fake, declaring the three
// good fixtures, followed by `extra` (more tables).
std::string GoodConfig(const std::string& extra = "");

// A [plugins.<kind>.<name>] table with `path` and optional config lines.
std::string PluginTable(const std::string& kind, const std::string& name, const std::string& path,
                        const std::string& config_lines = "");

}  // namespace beaconbox::testing
