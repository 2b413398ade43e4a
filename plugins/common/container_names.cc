#include "plugins/common/container_names.h"

#include <filesystem>

namespace beaconbox::plugins {

bool IsContainerKeyName(std::string_view name) {
  const size_t separator = name.find(kContainerKeySeparator);
  return separator != std::string_view::npos && IsContainerdName(name.substr(0, separator)) &&
         IsContainerdName(name.substr(separator + kContainerKeySeparator.size()));
}

bool IsAbsoluteClean(std::string_view path) {
  if (path.empty() || path[0] != '/' || path.find('\0') != std::string_view::npos) return false;
  for (const auto& part : std::filesystem::path(path)) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace beaconbox::plugins
