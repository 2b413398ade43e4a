#include "plugins/common/path_search.h"

#include <unistd.h>

#include <cstdlib>

namespace beaconbox::plugins {

std::string FindInPath(const std::string& name, const char* search_path) {
  if (name.find('/') != std::string::npos) return name;
  if (search_path == nullptr) search_path = std::getenv("PATH");
  const std::string dirs = search_path != nullptr ? search_path : "/usr/bin:/bin";
  size_t start = 0;
  while (!name.empty() && start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    // An empty entry is the current directory, as for a shell.
    const std::string dir = end > start ? dirs.substr(start, end - start) : ".";
    const std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "/usr/bin/" + name;
}

}  // namespace beaconbox::plugins
