#include "guest/vminitd/guest_logic.h"

#include <arpa/inet.h>
#include <sys/mount.h>

#include <charconv>
#include <functional>

namespace beaconbox::guest {
namespace {

std::vector<std::string_view> SplitWords(std::string_view text) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n')) ++i;
    if (i >= text.size()) break;
    size_t start = i;
    bool quoted = false;
    while (i < text.size() && (quoted || (text[i] != ' ' && text[i] != '\t' && text[i] != '\n'))) {
      if (text[i] == '"') quoted = !quoted;
      ++i;
    }
    words.push_back(text.substr(start, i - start));
  }
  return words;
}

std::string StripQuotes(std::string_view s) {
  std::string out;
  for (char c : s)
    if (c != '"') out += c;
  return out;
}

}  // namespace

std::map<std::string, std::string> ParseCmdline(std::string_view cmdline) {
  std::map<std::string, std::string> params;
  for (std::string_view word : SplitWords(cmdline)) {
    size_t eq = word.find('=');
    if (eq == std::string_view::npos) {
      params[StripQuotes(word)] = "";
    } else {
      params[StripQuotes(word.substr(0, eq))] = StripQuotes(word.substr(eq + 1));
    }
  }
  return params;
}

Result<ChannelSpec> ParseChannelSpec(std::string_view value) {
  ChannelSpec spec;
  constexpr std::string_view kSerial = "virtio-serial:";
  constexpr std::string_view kVsock = "vsock:";
  if (value.starts_with(kSerial)) {
    spec.kind = ChannelSpec::Kind::kVirtioSerial;
    spec.port_name = std::string(value.substr(kSerial.size()));
    if (spec.port_name.empty() || spec.port_name.size() > 128 ||
        spec.port_name.find('/') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "beaconbox.channel=" + std::string(value) + ": bad virtio-serial port name");
    }
    return spec;
  }
  if (value.starts_with(kVsock)) {
    spec.kind = ChannelSpec::Kind::kVsock;
    std::string_view port = value.substr(kVsock.size());
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), spec.vsock_port);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() ||
        spec.vsock_port == 0) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "beaconbox.channel=" + std::string(value) + ": bad vsock port");
    }
    return spec;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "beaconbox.channel=" + std::string(value) +
                       ": expected virtio-serial:<port name> or vsock:<port>");
}

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

Status ValidateRelativePath(std::string_view path) {
  if (path.empty() || path.size() > 1024 || path.front() == '/') {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "mount target \"" + std::string(path.substr(0, 64)) + "\" is not a relative path");
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") {
      return MakeError(ErrorCode::kInvalidArgument, "mount target \"" +
                                                        std::string(path.substr(0, 64)) +
                                                        "\" has an empty, . or .. component");
    }
    if (part.find('\0') != std::string_view::npos) {
      return MakeError(ErrorCode::kInvalidArgument, "mount target holds a NUL byte");
    }
    start = slash + 1;
  }
  return Status::Ok();
}

MountOptions ParseMountOptions(const std::vector<std::string>& options) {
  struct Flag {
    std::string_view name;
    bool clear;
    unsigned long flag;
  };
  static constexpr Flag kFlags[] = {
      {"ro", false, MS_RDONLY},
      {"rw", true, MS_RDONLY},
      {"nosuid", false, MS_NOSUID},
      {"suid", true, MS_NOSUID},
      {"nodev", false, MS_NODEV},
      {"dev", true, MS_NODEV},
      {"noexec", false, MS_NOEXEC},
      {"exec", true, MS_NOEXEC},
      {"sync", false, MS_SYNCHRONOUS},
      {"async", true, MS_SYNCHRONOUS},
      {"noatime", false, MS_NOATIME},
      {"atime", true, MS_NOATIME},
      {"nodiratime", false, MS_NODIRATIME},
      {"relatime", false, MS_RELATIME},
      {"strictatime", false, MS_STRICTATIME},
      {"dirsync", false, MS_DIRSYNC},
      {"remount", false, MS_REMOUNT},
  };
  static constexpr Flag kPropagation[] = {
      {"shared", false, MS_SHARED},         {"rshared", false, MS_SHARED | MS_REC},
      {"private", false, MS_PRIVATE},       {"rprivate", false, MS_PRIVATE | MS_REC},
      {"slave", false, MS_SLAVE},           {"rslave", false, MS_SLAVE | MS_REC},
      {"unbindable", false, MS_UNBINDABLE}, {"runbindable", false, MS_UNBINDABLE | MS_REC},
  };
  MountOptions out;
  for (const std::string& option : options) {
    if (option == "bind") {
      out.bind = true;
      out.flags |= MS_BIND;
      continue;
    }
    if (option == "rbind") {
      out.bind = true;
      out.flags |= MS_BIND | MS_REC;
      continue;
    }
    if (option == "defaults" || option.empty()) continue;
    bool matched = false;
    for (const Flag& f : kFlags) {
      if (option == f.name) {
        if (f.clear) {
          out.flags &= ~f.flag;
        } else {
          out.flags |= f.flag;
        }
        matched = true;
        break;
      }
    }
    for (const Flag& f : kPropagation) {
      if (!matched && option == f.name) {
        out.propagation |= f.flag;
        matched = true;
      }
    }
    if (matched) continue;
    if (!out.data.empty()) out.data += ',';
    out.data += option;
  }
  // The kernel ignores MS_RDONLY on the first bind mount; it takes a remount.
  out.remount_readonly = out.bind && (out.flags & MS_RDONLY);
  return out;
}

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

Result<Cidr4> ParseCidr4(std::string_view text) {
  auto bad = [&] {
    return MakeError(ErrorCode::kInvalidArgument, "address \"" + std::string(text.substr(0, 64)) +
                                                      "\" is not an IPv4 CIDR like 10.88.0.2/16");
  };
  size_t slash = text.find('/');
  if (slash == std::string_view::npos || text.size() > 18) return bad();
  std::string address(text.substr(0, slash));
  std::string_view prefix_text = text.substr(slash + 1);
  Cidr4 cidr;
  auto [end, ec] =
      std::from_chars(prefix_text.data(), prefix_text.data() + prefix_text.size(), cidr.prefix);
  if (prefix_text.empty() || ec != std::errc() || end != prefix_text.data() + prefix_text.size() ||
      cidr.prefix > 32) {
    return bad();
  }
  struct in_addr parsed {};
  if (::inet_pton(AF_INET, address.c_str(), &parsed) != 1) return bad();
  cidr.address = parsed.s_addr;
  cidr.netmask = cidr.prefix == 0 ? 0 : htonl(~uint32_t(0) << (32 - cidr.prefix));
  return cidr;
}

Result<std::string> RenderResolvConf(const std::vector<std::string>& servers,
                                     const std::vector<std::string>& search) {
  if (servers.size() > 16 || search.size() > 16) {
    return MakeError(ErrorCode::kInvalidArgument, "more than 16 DNS servers or search domains");
  }
  auto clean = [](const std::string& word) {
    if (word.empty() || word.size() > 253) return false;
    for (unsigned char c : word)
      if (c <= ' ' || c >= 0x7f) return false;
    return true;
  };
  std::string text;
  for (const std::string& server : servers) {
    struct in_addr v4 {};
    struct in6_addr v6 {};
    if (!clean(server) || (::inet_pton(AF_INET, server.c_str(), &v4) != 1 &&
                           ::inet_pton(AF_INET6, server.c_str(), &v6) != 1)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "DNS server \"" + server.substr(0, 64) + "\" is not an IP address");
    }
    text += "nameserver " + server + "\n";
  }
  if (!search.empty()) {
    text += "search";
    for (const std::string& domain : search) {
      if (!clean(domain)) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "DNS search domain \"" + domain.substr(0, 64) + "\" is invalid");
      }
      text += " " + domain;
    }
    text += "\n";
  }
  return text;
}

}  // namespace beaconbox::guest
