#include "tests/plugins/vmm-cloudhypervisor/fake_cloud_hypervisor/schema_check.h"

#include <fstream>
#include <sstream>

namespace beaconbox::fakech {
namespace {

using nlohmann::json;

std::string Shown(const json& value) {
  std::string text = value.dump();
  return text.size() > 60 ? text.substr(0, 57) + "..." : text;
}

Error Bad(const std::string& path, const std::string& what) {
  return MakeError(ErrorCode::kInvalidArgument, path + ": " + what);
}

}  // namespace

Result<ApiSchema> ApiSchema::Load(const std::string& path) {
  std::ifstream file(path);
  if (!file) return MakeError(ErrorCode::kNotFound, "cannot read the schema " + path);
  std::stringstream text;
  text << file.rdbuf();
  json document = json::parse(text.str(), nullptr, false);
  if (document.is_discarded()) {
    return MakeError(ErrorCode::kInvalidArgument, "the schema " + path + " is not JSON");
  }
  return FromJson(std::move(document));
}

Result<ApiSchema> ApiSchema::FromJson(json document) {
  if (!document.is_object() || !document.contains("calls") || !document["calls"].is_object() ||
      !document.contains("types") || !document["types"].is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "the schema needs objects calls and types");
  }
  ApiSchema schema;
  schema.document_ = std::move(document);
  for (const auto& [call, spec] : schema.document_["calls"].items()) {
    std::string body = schema.BodyTypeOf(call);
    if (!body.empty() && !schema.document_["types"].contains(body)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "the schema's call " + call + " names the unknown type " + body);
    }
  }
  return schema;
}

bool ApiSchema::Serves(const std::string& call) const { return document_["calls"].contains(call); }

std::string ApiSchema::MethodOf(const std::string& call) const {
  return Serves(call) ? document_["calls"][call].value("method", "") : "";
}

std::string ApiSchema::BodyTypeOf(const std::string& call) const {
  return Serves(call) ? document_["calls"][call].value("body", "") : "";
}

Status ApiSchema::Check(const std::string& type_name, const json& body) const {
  if (!document_["types"].contains(type_name)) {
    return MakeError(ErrorCode::kInternal, "no schema type " + type_name);
  }
  return CheckValue(json(type_name), body, type_name, 0);
}

Status ApiSchema::CheckValue(const json& type, const json& value, const std::string& path,
                             int depth) const {
  if (depth > 16) return Bad(path, "nested too deeply");
  if (type.is_object() && type.contains("array")) {
    if (!value.is_array()) return Bad(path, "want an array, got " + Shown(value));
    for (size_t i = 0; i < value.size(); ++i) {
      BBX_RETURN_IF_ERROR(
          CheckValue(type["array"], value[i], path + "[" + std::to_string(i) + "]", depth + 1));
    }
    return Status::Ok();
  }
  if (type.is_object() && type.contains("enum")) {
    for (const auto& allowed : type["enum"]) {
      if (value == allowed) return Status::Ok();
    }
    return Bad(path, "want one of " + type["enum"].dump() + ", got " + Shown(value));
  }
  if (type.is_object() && type.contains("type")) {
    BBX_RETURN_IF_ERROR(CheckValue(type["type"], value, path, depth + 1));
    if (type.contains("minimum") && value.is_number() &&
        value.get<double>() < type["minimum"].get<double>()) {
      return Bad(path, "must be at least " + type["minimum"].dump() + ", got " + Shown(value));
    }
    return Status::Ok();
  }
  if (!type.is_string()) return MakeError(ErrorCode::kInternal, path + ": bad schema entry");
  const std::string name = type.get<std::string>();
  if (name == "string") {
    return value.is_string() ? Status::Ok() : Bad(path, "want a string, got " + Shown(value));
  }
  if (name == "boolean") {
    return value.is_boolean() ? Status::Ok() : Bad(path, "want a boolean, got " + Shown(value));
  }
  if (name == "integer") {
    return value.is_number_integer() ? Status::Ok()
                                     : Bad(path, "want an integer, got " + Shown(value));
  }
  if (name == "uint") {
    return value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0)
               ? Status::Ok()
               : Bad(path, "want an unsigned integer, got " + Shown(value));
  }
  if (name == "object") {
    return value.is_object() ? Status::Ok() : Bad(path, "want an object, got " + Shown(value));
  }
  if (!document_["types"].contains(name)) {
    return MakeError(ErrorCode::kInternal, path + ": unknown schema type " + name);
  }
  const json& object_type = document_["types"][name];
  if (!value.is_object()) return Bad(path, "want a " + name + " object, got " + Shown(value));
  const json properties = object_type.value("properties", json::object());
  for (const auto& required : object_type.value("required", json::array())) {
    if (!value.contains(required.get<std::string>())) {
      return Bad(path, "missing field `" + required.get<std::string>() + "`");
    }
  }
  for (const auto& [field, field_value] : value.items()) {
    if (!properties.contains(field)) {
      return Bad(path, "unknown field `" + field + "` (not in " + name + ")");
    }
    BBX_RETURN_IF_ERROR(CheckValue(properties[field], field_value, path + "." + field, depth + 1));
  }
  return Status::Ok();
}

}  // namespace beaconbox::fakech
