#include "guest/vminitd/validation.h"

namespace beaconbox::guest {
Status ValidateId(std::string_view id, std::string_view what) {
  auto bad = [&](std::string_view why) {
    std::string shown(id.substr(0, 64));
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(what) + " \"" + shown + "\" " + std::string(why));
  };
  if (id.empty()) return bad("is empty");
  if (id.size() > 128) return bad("is longer than 128 characters");
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(id[0])) return bad("must start with a letter or digit");
  for (char c : id) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return bad("may only hold [A-Za-z0-9_.-]");
  }
  return Status::Ok();
}

Status ValidateRelativePath(std::string_view path, std::string_view what) {
  if (path.empty() || path.size() > 1024 || path.front() == '/') {
    return MakeError(
        ErrorCode::kInvalidArgument,
        std::string(what) + " \"" + std::string(path.substr(0, 64)) + "\" is not a relative path");
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") {
      return MakeError(ErrorCode::kInvalidArgument, std::string(what) + " \"" +
                                                        std::string(path.substr(0, 64)) +
                                                        "\" has an empty, . or .. component");
    }
    if (part.find('\0') != std::string_view::npos) {
      return MakeError(ErrorCode::kInvalidArgument, std::string(what) + " holds a NUL byte");
    }
    start = slash + 1;
  }
  return Status::Ok();
}

}  // namespace beaconbox::guest
