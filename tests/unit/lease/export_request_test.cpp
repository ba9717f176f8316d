// The export-name grammar (server/lease/export_request.h): every valid form, and every
// way to get it wrong, each refused with a message that states the grammar.
#include "server/lease/export_request.h"

#include <gtest/gtest.h>

#include <string>

namespace blockd::server::lease {
namespace {

ExportRequest parse_ok(const std::string& name) {
  std::string error;
  const auto request = ExportRequest::parse(name, error);
  EXPECT_TRUE(request.has_value()) << name << ": " << error;
  return request.value_or(ExportRequest{});
}

std::string parse_error(const std::string& name) {
  std::string error;
  const auto request = ExportRequest::parse(name, error);
  EXPECT_FALSE(request.has_value()) << name << " was accepted";
  EXPECT_NE(error.find(kExportNameGrammar), std::string::npos) << "no grammar in: " << error;
  EXPECT_NE(error.find("\"" + name + "\""), std::string::npos) << "export name not quoted in: " << error;
  return error;
}

TEST(ExportRequest, PlainVolumeName) {
  const auto request = parse_ok("db");
  EXPECT_EQ(request.volume, "db");
  EXPECT_FALSE(request.holder.has_value());
  EXPECT_EQ(request.mode, LeaseMode::kReadWrite);
}

TEST(ExportRequest, EmptyNameIsLeftToTheHandshake) {
  // The NBD default export: not the grammar's business.
  EXPECT_EQ(parse_ok("").volume, "");
}

TEST(ExportRequest, Holder) {
  const auto request = parse_ok("db?holder=node-a");
  EXPECT_EQ(request.volume, "db");
  EXPECT_EQ(request.holder, "node-a");
  EXPECT_EQ(request.mode, LeaseMode::kReadWrite);
}

TEST(ExportRequest, ModeReadOnly) {
  const auto request = parse_ok("db?mode=ro");
  EXPECT_EQ(request.volume, "db");
  EXPECT_FALSE(request.holder.has_value());
  EXPECT_EQ(request.mode, LeaseMode::kReadOnly);
}

TEST(ExportRequest, HolderAndModeInEitherOrder) {
  const auto first = parse_ok("db?holder=node-a&mode=rw");
  EXPECT_EQ(first.holder, "node-a");
  EXPECT_EQ(first.mode, LeaseMode::kReadWrite);
  const auto second = parse_ok("pg-data-01?mode=ro&holder=node-b");
  EXPECT_EQ(second.volume, "pg-data-01");
  EXPECT_EQ(second.holder, "node-b");
  EXPECT_EQ(second.mode, LeaseMode::kReadOnly);
}

TEST(ExportRequest, HolderCharacterSet) {
  EXPECT_EQ(parse_ok("db?holder=Node_1.example:x-Z9").holder, "Node_1.example:x-Z9");
  EXPECT_EQ(parse_ok("db?holder=fd00::5").holder, "fd00::5");
  EXPECT_EQ(parse_ok("db?holder=10.0.0.5").holder, "10.0.0.5");
  EXPECT_EQ(parse_ok("db?holder=3f2b8c1e-8a4d-4b9e-9d3c-1a2b3c4d5e6f").holder, "3f2b8c1e-8a4d-4b9e-9d3c-1a2b3c4d5e6f");
  const std::string longest(kMaxHolderLength, 'h');
  EXPECT_EQ(parse_ok("db?holder=" + longest).holder, longest);
}

TEST(ExportRequest, EmptyParameters) {
  EXPECT_NE(parse_error("db?").find("empty parameter"), std::string::npos);
  EXPECT_NE(parse_error("db?&mode=ro").find("empty parameter"), std::string::npos);
  EXPECT_NE(parse_error("db?mode=ro&").find("empty parameter"), std::string::npos);
  EXPECT_NE(parse_error("db?mode=ro&&holder=a").find("empty parameter"), std::string::npos);
}

TEST(ExportRequest, ParameterWithoutValue) {
  EXPECT_NE(parse_error("db?holder").find("has no '='"), std::string::npos);
  EXPECT_NE(parse_error("db?ro").find("has no '='"), std::string::npos);
}

TEST(ExportRequest, InvalidHolders) {
  for (const std::string bad : {"", "a b", "node%2Da", "a/b", "a=b", "a?b", "[::1]", "a,b", "\xc3\xa9", "a@b"}) {
    EXPECT_NE(parse_error("db?holder=" + bad).find("invalid holder"), std::string::npos) << bad;
  }
  EXPECT_NE(parse_error("db?holder=" + std::string(kMaxHolderLength + 1, 'h')).find("invalid holder"),
            std::string::npos);
}

TEST(ExportRequest, InvalidModes) {
  for (const std::string bad : {"", "RW", "RO", "rx", "readonly", "r", "rw "}) {
    EXPECT_NE(parse_error("db?mode=" + bad).find("invalid mode"), std::string::npos) << bad;
  }
}

TEST(ExportRequest, UnknownKeys) {
  EXPECT_NE(parse_error("db?foo=1").find("unknown key \"foo\""), std::string::npos);
  EXPECT_NE(parse_error("db?Holder=a").find("unknown key \"Holder\""), std::string::npos);
  EXPECT_NE(parse_error("db?holder=a&ttl=5").find("unknown key \"ttl\""), std::string::npos);
  EXPECT_NE(parse_error("db?=a").find("unknown key \"\""), std::string::npos);
}

TEST(ExportRequest, DuplicateKeys) {
  EXPECT_NE(parse_error("db?holder=a&holder=b").find("holder given twice"), std::string::npos);
  EXPECT_NE(parse_error("db?holder=a&holder=a").find("holder given twice"), std::string::npos);
  EXPECT_NE(parse_error("db?mode=ro&mode=rw").find("mode given twice"), std::string::npos);
}

TEST(ExportRequest, MissingVolumeOrQuestionMark) {
  EXPECT_NE(parse_error("?holder=a").find("no volume name"), std::string::npos);
  EXPECT_NE(parse_error("db&mode=ro").find("must follow a '?'"), std::string::npos);
  EXPECT_NE(parse_error("db&holder=a").find("must follow a '?'"), std::string::npos);
}

TEST(ExportRequest, AValueCannotContainASecondQuery) {
  EXPECT_NE(parse_error("db?holder=a?mode=ro").find("invalid holder"), std::string::npos);
}

TEST(ExportRequest, ValidHolderRule) {
  EXPECT_TRUE(is_valid_holder("node-a"));
  EXPECT_FALSE(is_valid_holder(""));
  EXPECT_FALSE(is_valid_holder(std::string(254, 'a')));
  EXPECT_TRUE(is_valid_holder(std::string(253, 'a')));
}

TEST(DefaultHolder, IsThePeerAddressWithoutThePort) {
  EXPECT_EQ(default_holder("10.0.0.5:51234"), "10.0.0.5");
  EXPECT_EQ(default_holder("127.0.0.1:1"), "127.0.0.1");
  EXPECT_EQ(default_holder("[fd00::5]:4000"), "fd00::5");
  EXPECT_EQ(default_holder("[::1]:10809"), "::1");
  EXPECT_EQ(default_holder("[fe80::1%eth0]:4000"), "fe80::1");
  EXPECT_EQ(default_holder("unix"), "unix");
  EXPECT_EQ(default_holder(""), "unknown");
  EXPECT_EQ(default_holder("a b"), "unknown");
  EXPECT_TRUE(is_valid_holder(default_holder("[::ffff:10.1.2.3]:99")));
}

}  // namespace
}  // namespace blockd::server::lease
