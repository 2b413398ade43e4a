// FAKE cloud-hypervisor's request checks: a body against the schema data file
// (ch_api_schema.json, written from CH's API description). Unknown fields, wrong
// types, values below a minimum and missing required fields are refused with one
// line naming the field's path -- stricter than CH on unknown fields (CH's serde
// types ignore them), so a misspelt field in the plugin fails here instead of being
// silently dropped by a real CH.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/base/result.h"

namespace beaconbox::fakech {

class ApiSchema {
 public:
  // Reads the schema data file; an error names what is malformed in it.
  static Result<ApiSchema> Load(const std::string& path);
  static Result<ApiSchema> FromJson(nlohmann::json document);

  // Whether `call` is served, and with which method and body type ("" none).
  bool Serves(const std::string& call) const;
  std::string MethodOf(const std::string& call) const;
  std::string BodyTypeOf(const std::string& call) const;

  // Checks `body` against the named type; the error is "<path>: <what is wrong>",
  // e.g. "VmConfig.cpus.boot_vcpus: want an unsigned integer, got \"2\"".
  Status Check(const std::string& type_name, const nlohmann::json& body) const;

 private:
  Status CheckValue(const nlohmann::json& type, const nlohmann::json& value,
                    const std::string& path, int depth) const;
  nlohmann::json document_;
};

}  // namespace beaconbox::fakech
