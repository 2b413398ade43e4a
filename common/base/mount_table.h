// The mounts of this process's mount namespace, for removing a directory tree that may
// still hold mounts: a recursive delete that walks into a bind mount deletes what is
// behind it (a container's rootfs, a volume's host directory). Header-only.
#pragma once

#include <sys/mount.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/result.h"

namespace beaconbox {

// mountinfo escapes space, tab, newline and backslash in paths as \ooo.
inline std::string UnescapeMountinfoPath(std::string_view field) {
  std::string path;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && field[i + 1] >= '0' && field[i + 1] <= '3' &&
        field[i + 2] >= '0' && field[i + 2] <= '7' && field[i + 3] >= '0' && field[i + 3] <= '7') {
      path.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                       (field[i + 3] - '0')));
      i += 3;
    } else {
      path.push_back(field[i]);
    }
  }
  return path;
}

// The mount points at `dir` or below it, deepest first (so that unmounting them in
// this order never meets a busy parent). `mountinfo` is the text of
// /proc/self/mountinfo; its fifth field is the mount point.
inline std::vector<std::string> MountPointsUnder(const std::string& dir,
                                                 std::string_view mountinfo) {
  const std::string prefix = dir.ends_with('/') ? dir : dir + "/";
  std::vector<std::string> points;
  size_t line_start = 0;
  while (line_start < mountinfo.size()) {
    size_t line_end = mountinfo.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = mountinfo.size();
    std::string_view line = mountinfo.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    size_t field_start = 0;
    for (int field = 0; field < 4 && field_start != std::string_view::npos; ++field) {
      field_start = line.find(' ', field_start);
      if (field_start != std::string_view::npos) ++field_start;
    }
    if (field_start == std::string_view::npos) continue;
    std::string point =
        UnescapeMountinfoPath(line.substr(field_start, line.find(' ', field_start) - field_start));
    if (point == dir || point.starts_with(prefix)) points.push_back(std::move(point));
  }
  std::sort(points.begin(), points.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  points.erase(std::unique(points.begin(), points.end()), points.end());
  return points;
}

// Removes the tree at `dir` without ever deleting through a mount: mounts left below
// it (a release that failed to unmount) are detached first; when one cannot be, the
// tree stays and the error names it.
inline Status RemoveTreeDetachingMounts(const std::string& dir) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    BBX_ASSIGN_OR_RETURN(std::string mountinfo, ReadSmallFile("/proc/self/mountinfo", 64 << 20));
    std::vector<std::string> points = MountPointsUnder(dir, mountinfo);
    if (points.empty()) {
      std::error_code error;
      std::filesystem::remove_all(dir, error);
      if (error) return MakeError(ErrorCode::kInternal, "removing " + dir + ": " + error.message());
      return Status::Ok();
    }
    if (attempt == 1) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "not removing " + dir + ": " + points.front() +
                           " is still mounted below it (unmount it, then delete again)");
    }
    for (const std::string& point : points) ::umount2(point.c_str(), MNT_DETACH);
  }
  return Status::Ok();
}

}  // namespace beaconbox
