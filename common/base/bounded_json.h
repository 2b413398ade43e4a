// Parsing JSON that comes from outside the process (a bundle's config.json, a state
// file, QMP answers) with bounds. nlohmann::json parses and destroys nested values
// recursively: a document nested 100,000 levels deep overflows the stack and kills
// the process. ParseBoundedJson measures the nesting first (one pass, no recursion)
// and refuses a document that is too deep or too large, with one line naming it.
// Header-only; needs nlohmann/json (header-only too).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace beaconbox {

struct JsonLimits {
  // An OCI config.json nests about 8 levels; QMP answers fewer.
  size_t max_depth = 64;
  size_t max_bytes = 16u << 20;
};

// The deepest nesting of arrays and objects in `text` (strings and escapes skipped);
// stops counting once `stop_above` is exceeded. Malformed text gets a number too: the
// parser rejects it afterwards.
inline size_t JsonNestingDepth(std::string_view text, size_t stop_above) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, whatever it is
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest) deepest = depth;
      if (deepest > stop_above) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

// Parses `text`, named `what` in errors ("config.json in the bundle"). Errors:
// kInvalidArgument "<what> is not valid JSON" / "... nests deeper than N levels" /
// "... is larger than N bytes". Never throws.
inline Result<nlohmann::json> ParseBoundedJson(std::string_view text, std::string_view what,
                                               const JsonLimits& limits = {}) {
  if (text.size() > limits.max_bytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(what) + " is larger than " + std::to_string(limits.max_bytes) +
                         " bytes (" + std::to_string(text.size()) + "): refused");
  }
  if (JsonNestingDepth(text, limits.max_depth) > limits.max_depth) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(what) + " nests arrays/objects deeper than " +
                         std::to_string(limits.max_depth) + " levels: refused");
  }
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return MakeError(ErrorCode::kInvalidArgument, std::string(what) + " is not valid JSON");
  }
  return parsed;
}

}  // namespace beaconbox
