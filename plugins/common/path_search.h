// Finding a helper program (a VMM, a daemon) the way a shell would.
#pragma once

#include <string>

namespace beaconbox::plugins {

// `name` itself when it holds a '/'; else the first executable `<dir>/<name>` for the
// directories of `search_path` (PATH's syntax; PATH when null, "/usr/bin:/bin" when
// PATH is unset too); else "/usr/bin/<name>", so that the error about a missing
// program names a path.
std::string FindInPath(const std::string& name, const char* search_path = nullptr);

}  // namespace beaconbox::plugins
