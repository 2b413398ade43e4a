#include "guest/vminitd/kernel_modules.h"

#include <unistd.h>

#include <functional>

#include "common/base/file_util.h"
#include "guest/vminitd/kernel_cmdline.h"

namespace beaconbox::guest {
namespace {
bool IsModuleFileName(std::string_view path) {
  return path.ends_with(".ko") || path.ends_with(".ko.xz") || path.ends_with(".ko.zst") ||
         path.ends_with(".ko.gz");
}
}  // namespace

std::string ModuleName(std::string_view name_or_path) {
  size_t slash = name_or_path.rfind('/');
  if (slash != std::string_view::npos) name_or_path.remove_prefix(slash + 1);
  for (std::string_view ext : {".ko.xz", ".ko.zst", ".ko.gz", ".ko"}) {
    if (name_or_path.ends_with(ext)) {
      name_or_path.remove_suffix(ext.size());
      break;
    }
  }
  std::string name(name_or_path);
  for (char& c : name)
    if (c == '-') c = '_';
  return name;
}

std::map<std::string, ModuleDep> ParseModulesDep(std::string_view text) {
  std::map<std::string, ModuleDep> result;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    ModuleDep dep;
    dep.path = std::string(line.substr(0, colon));
    for (std::string_view word : SplitWords(line.substr(colon + 1))) dep.deps.emplace_back(word);
    result[ModuleName(dep.path)] = std::move(dep);
  }
  return result;
}

std::set<std::string> ParseModulesBuiltin(std::string_view text) {
  std::set<std::string> result;
  for (std::string_view word : SplitWords(text)) result.insert(ModuleName(word));
  return result;
}

Result<std::vector<std::string>> ResolveModuleOrder(const std::vector<std::string>& wanted,
                                                    const std::map<std::string, ModuleDep>& deps,
                                                    const std::set<std::string>& builtin) {
  std::vector<std::string> order;
  std::set<std::string> done;
  std::set<std::string> in_progress;
  std::function<Status(const std::string&, const std::string&)> visit =
      [&](const std::string& name, const std::string& needed_by) -> Status {
    if (done.count(name)) return Status::Ok();
    auto it = deps.find(name);
    if (it == deps.end()) {
      if (builtin.count(name)) return Status::Ok();
      return MakeError(ErrorCode::kNotFound,
                       "kernel module " + name +
                           (needed_by.empty() ? "" : " (needed by " + needed_by + ")") +
                           " is neither built in nor in modules.dep");
    }
    if (!in_progress.insert(name).second) {
      return MakeError(ErrorCode::kInvalidArgument, "kernel module dependency cycle at " + name);
    }
    for (const std::string& dep_path : it->second.deps) {
      BBX_RETURN_IF_ERROR(visit(ModuleName(dep_path), name));
    }
    in_progress.erase(name);
    done.insert(name);
    order.push_back(it->second.path);
    return Status::Ok();
  };
  for (const std::string& want : wanted) {
    std::string name = ModuleName(want);
    if (builtin.count(name) && !deps.count(name)) continue;
    BBX_RETURN_IF_ERROR(visit(name, ""));
  }
  return order;
}

int RemoveListedModuleFiles(const std::string& order_file) {
  auto list = ReadSmallFile(order_file);
  if (!list.ok()) return 0;
  int removed = 0;
  size_t start = 0;
  while (start < list->size()) {
    size_t end = list->find('\n', start);
    if (end == std::string::npos) end = list->size();
    const std::string path = list->substr(start, end - start);
    start = end + 1;
    if (path.empty() || path[0] != '/' || !IsModuleFileName(path)) continue;
    if (::unlink(path.c_str()) == 0) ++removed;
  }
  return removed;
}

bool IsValidModuleRequest(std::string_view name) {
  if (name.empty() || name.size() > 55 || name[0] == '-') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::string> ParseModprobeArgs(const std::vector<std::string>& args) {
  std::string name;
  bool options_done = false;
  for (const std::string& arg : args) {
    if (!options_done && arg == "--") {
      options_done = true;
    } else if (!options_done && (arg == "-q" || arg == "-b")) {
      continue;
    } else if (!name.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "modprobe: more than one module named (" +
                                                        name + ", then " + arg.substr(0, 64) +
                                                        "): the kernel asks for one at a time");
    } else {
      name = arg;
    }
  }
  if (name.empty()) return MakeError(ErrorCode::kInvalidArgument, "modprobe: no module named");
  if (!IsValidModuleRequest(name)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "modprobe: '" + name.substr(0, 64) +
                         "' is not a module name (1-55 characters of A-Z a-z 0-9 _ -)");
  }
  return name;
}

Result<std::vector<std::string>> OnDemandModuleFiles(std::string_view request,
                                                     std::string_view list_text) {
  if (!IsValidModuleRequest(request)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'" + std::string(request.substr(0, 64)) + "' is not a module name");
  }
  const std::string wanted = ModuleName(request);
  size_t start = 0;
  while (start < list_text.size()) {
    size_t end = list_text.find('\n', start);
    if (end == std::string_view::npos) end = list_text.size();
    std::string_view line = list_text.substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return MakeError(ErrorCode::kInvalidArgument, "on-demand module list: line without ':': " +
                                                        std::string(line.substr(0, 80)));
    }
    bool match = false;
    for (std::string_view name : SplitWords(line.substr(0, colon))) {
      if (IsValidModuleRequest(name) && ModuleName(name) == wanted) match = true;
    }
    if (!match) continue;
    std::vector<std::string> files;
    for (std::string_view path : SplitWords(line.substr(colon + 1))) {
      if (!path.starts_with('/') || !IsModuleFileName(path) ||
          path.find("/../") != std::string_view::npos) {
        return MakeError(ErrorCode::kInvalidArgument, "on-demand module list: '" +
                                                          std::string(path.substr(0, 120)) +
                                                          "' is not an absolute .ko path");
      }
      files.emplace_back(path);
    }
    if (files.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "on-demand module list: no files for " + wanted);
    }
    return files;
  }
  return MakeError(ErrorCode::kNotFound,
                   "module " + wanted + " is not on the guest's on-demand list");
}

}  // namespace beaconbox::guest
