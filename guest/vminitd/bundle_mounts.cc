#include "guest/vminitd/bundle_mounts.h"

#include <string_view>

#include "guest/vminitd/validation.h"

namespace beaconbox::guest {
namespace {

Result<std::string> InBundle(const std::string& bundle, std::string_view path,
                             std::string_view what) {
  if (path.starts_with("/")) return std::string(path);
  BBX_RETURN_IF_ERROR(ValidateRelativePath(path, what));
  return bundle + "/" + std::string(path);
}

}  // namespace

Result<OverlayMount> ResolveOverlayOptions(const std::string& bundle,
                                           const std::vector<std::string>& options) {
  OverlayMount out;
  for (const std::string& option : options) {
    const size_t equals = option.find('=');
    const std::string key = option.substr(0, equals);
    if (equals == std::string::npos ||
        (key != "lowerdir" && key != "upperdir" && key != "workdir")) {
      out.options.push_back(option);
      continue;
    }
    const std::string_view value = std::string_view(option).substr(equals + 1);
    std::string resolved;
    if (key == "lowerdir") {
      size_t start = 0;
      while (start <= value.size()) {
        size_t colon = value.find(':', start);
        if (colon == std::string_view::npos) colon = value.size();
        BBX_ASSIGN_OR_RETURN(std::string layer, InBundle(bundle, value.substr(start, colon - start),
                                                         "overlay lowerdir"));
        if (!resolved.empty()) resolved += ':';
        resolved += layer;
        start = colon + 1;
      }
    } else {
      BBX_ASSIGN_OR_RETURN(resolved, InBundle(bundle, value, "overlay " + key));
      out.directories.push_back(resolved);
    }
    out.options.push_back(key + "=" + resolved);
  }
  return out;
}

}  // namespace beaconbox::guest
