// containerd's names for the host: the shim and the plugins both check a namespace
// or container id before it goes into a path, and both key per-container files by
// "<ns>--<id>". Header-only like the rest of common/base.
#pragma once

#include <string>
#include <string_view>

namespace beaconbox {

// containerd's identifier rule (identifiers.Validate): runs of [A-Za-z0-9] joined by
// one of '.', '_', '-'; at most 76 characters. Such a name is one path component and
// never holds "--".
inline bool IsContainerdName(std::string_view name) {
  if (name.empty() || name.size() > 76) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  bool previous_separator = true;  // the first character must be alphanumeric
  for (char c : name) {
    if (alnum(c)) {
      previous_separator = false;
    } else if (c == '.' || c == '_' || c == '-') {
      if (previous_separator) return false;
      previous_separator = true;
    } else {
      return false;
    }
  }
  return !previous_separator;
}

inline constexpr std::string_view kContainerKeySeparator = "--";

// "<ns>--<id>": unique per (namespace, id) because neither holds "--". Callers check
// both with IsContainerdName first when the key goes into a path.
inline std::string ContainerKeyName(std::string_view namespace_name, std::string_view id) {
  std::string key;
  key.reserve(namespace_name.size() + kContainerKeySeparator.size() + id.size());
  key.append(namespace_name).append(kContainerKeySeparator).append(id);
  return key;
}

}  // namespace beaconbox
