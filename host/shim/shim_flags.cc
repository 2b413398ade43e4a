#include "host/shim/shim_flags.h"

#include <map>

namespace beaconbox::shim {

Result<ShimFlags> ParseShimFlags(const std::vector<std::string>& args) {
  ShimFlags flags;
  const std::map<std::string, std::string*> string_flags = {
      {"namespace", &flags.namespace_name},
      {"id", &flags.id},
      {"address", &flags.containerd_address},
      {"publish-binary", &flags.publish_binary},
      {"bundle", &flags.bundle},
      {"socket", &flags.socket},
  };
  const std::map<std::string, bool*> bool_flags = {{"debug", &flags.debug}, {"v", &flags.version}};
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') break;  // first positional argument
    if (arg == "--") {
      ++i;
      break;
    }
    std::string name = arg.substr(arg[1] == '-' ? 2 : 1);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    if (auto it = bool_flags.find(name); it != bool_flags.end()) {
      *it->second = !has_value || value == "true" || value == "1";
      continue;
    }
    auto it = string_flags.find(name);
    if (it == string_flags.end()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "unknown flag -" + name + ": see containerd's shim v2 command line");
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return MakeError(ErrorCode::kInvalidArgument, "flag -" + name + " needs a value");
      }
      value = args[++i];
    }
    *it->second = value;
  }
  if (i < args.size()) flags.action = args[i++];
  if (i < args.size()) {
    return MakeError(ErrorCode::kInvalidArgument, "unexpected argument '" + args[i] + "'");
  }
  if (!flags.action.empty() && flags.action != "start" && flags.action != "delete") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "unknown action '" + flags.action + "': expected start or delete");
  }
  return flags;
}

}  // namespace beaconbox::shim
