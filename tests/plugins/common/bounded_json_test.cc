// common/base/bounded_json.h: JSON from outside the process is refused, with one line,
// when it nests too deep or is too large, before nlohmann's recursion sees it.
#include "common/base/bounded_json.h"

#include <gtest/gtest.h>

#include <string>

namespace beaconbox {
namespace {

std::string Nested(size_t depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}

TEST(BoundedJsonTest, ParsesOrdinaryDocuments) {
  auto parsed = ParseBoundedJson(R"({"a":[1,{"b":"[[[{{{\"]]"}],"c":null})", "test document");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ((*parsed)["a"][1]["b"], "[[[{{{\"]]");
  EXPECT_TRUE(ParseBoundedJson(Nested(64), "x").ok());
}

TEST(BoundedJsonTest, NestingCountsArraysAndObjectsButNotStrings) {
  EXPECT_EQ(JsonNestingDepth("[]", 100), 1u);
  EXPECT_EQ(JsonNestingDepth(R"({"a":[{}],"b":[]})", 100), 3u);
  EXPECT_EQ(JsonNestingDepth(R"(["[[[[\"[[["])", 100), 1u);
  EXPECT_EQ(JsonNestingDepth("", 100), 0u);
  EXPECT_EQ(JsonNestingDepth(Nested(1000), 10), 11u);  // stops counting early
}

// 100,000 levels crash an unbounded nlohmann parse/destroy; here it is one line.
TEST(BoundedJsonTest, RefusesDeepNestingWithOneLine) {
  for (auto [open, close] : {std::pair{'[', ']'}, std::pair{'{', '}'}}) {
    std::string deep = open == '[' ? Nested(100000) : "";
    if (open == '{') {
      for (int i = 0; i < 100000; ++i) deep += "{\"a\":";
      deep += "1" + std::string(100000, '}');
    }
    auto parsed = ParseBoundedJson(deep, "config.json in the bundle");
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(parsed.error().message,
              "config.json in the bundle nests arrays/objects deeper than 64 levels: refused");
  }
  EXPECT_FALSE(ParseBoundedJson(Nested(65), "x").ok());
  JsonLimits deeper;
  deeper.max_depth = 200;
  EXPECT_TRUE(ParseBoundedJson(Nested(200), "x", deeper).ok());
}

TEST(BoundedJsonTest, RefusesTooLargeAndInvalidDocuments) {
  JsonLimits small;
  small.max_bytes = 16;
  auto parsed = ParseBoundedJson(R"({"key":"a long value"})", "state file", small);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message, "state file is larger than 16 bytes (22): refused");
  parsed = ParseBoundedJson("{not json", "QMP reply");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message, "QMP reply is not valid JSON");
}

}  // namespace
}  // namespace beaconbox
