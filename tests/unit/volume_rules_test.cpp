// Volume attribute rules (server/catalog/volume_rules.h): size parsing and rounding,
// names, descriptions, labels, access modes; and UUID formatting (server/catalog/uuid.h).
#include "server/catalog/volume_rules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "server/catalog/catalog_error.h"
#include "server/catalog/uuid.h"

namespace {

using blockd::server::catalog::CatalogError;
using blockd::server::catalog::format_uuid_v4;
using blockd::server::catalog::generate_uuid_v4;
using blockd::server::catalog::kMaxVolumeSize;
using blockd::server::catalog::normalize_access_modes;
using blockd::server::catalog::parse_volume_size;
using blockd::server::catalog::round_volume_size;
using blockd::server::catalog::validate_description;
using blockd::server::catalog::validate_labels;
using blockd::server::catalog::validate_volume_name;
using testing::HasSubstr;
namespace v1 = blockd::v1;

std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const CatalogError& e) {
    return e.what();
  }
  return "";
}

TEST(VolumeRulesSize, UnitsAreBinary) {
  EXPECT_EQ(parse_volume_size("512"), 512U);
  EXPECT_EQ(parse_volume_size("64KiB"), 64U << 10);
  EXPECT_EQ(parse_volume_size("10GiB"), 10ULL << 30);
  EXPECT_EQ(parse_volume_size("10G"), 10ULL << 30);
  EXPECT_EQ(parse_volume_size("10GB"), 10ULL << 30);
  EXPECT_EQ(parse_volume_size("10 GiB"), 10ULL << 30);
  EXPECT_EQ(parse_volume_size("1TiB"), 1ULL << 40);
  EXPECT_EQ(parse_volume_size("64TiB"), kMaxVolumeSize);
  EXPECT_EQ(parse_volume_size("1073741824"), 1ULL << 30);
}

TEST(VolumeRulesSize, RoundedUpToAMultipleOf512) {
  EXPECT_EQ(parse_volume_size("1"), 512U);
  EXPECT_EQ(parse_volume_size("511"), 512U);
  EXPECT_EQ(parse_volume_size("513"), 1024U);
  EXPECT_EQ(parse_volume_size("1000"), 1024U);
  EXPECT_EQ(round_volume_size(kMaxVolumeSize - 1), kMaxVolumeSize);
  EXPECT_EQ(round_volume_size(4096), 4096U);
}

TEST(VolumeRulesSize, BadSizesAreExplained) {
  for (const char* text : {"", "ten", "-1", "1.5G", "10XB", "G", "0x10", "99999999999999999999", "16EiB"}) {
    EXPECT_THAT(error_of([&] { parse_volume_size(text); }),
                HasSubstr(std::string("size '") + text + "' is not a size; write a whole number"))
        << text;
  }
  EXPECT_THAT(error_of([] { parse_volume_size("0"); }), HasSubstr("the size must be positive"));
  EXPECT_THAT(error_of([] { parse_volume_size("0GiB"); }), HasSubstr("the size must be positive"));
  EXPECT_THAT(error_of([] { parse_volume_size("65TiB"); }),
              HasSubstr("the size 65 TiB is more than the largest volume blockd makes (64 TiB)"));
  EXPECT_THAT(error_of([] { round_volume_size(kMaxVolumeSize + 1); }), HasSubstr("largest volume"));
}

TEST(VolumeRulesName, DnsLabels) {
  EXPECT_EQ(error_of([] { validate_volume_name("pg-data-0"); }), "");
  EXPECT_THAT(error_of([] { validate_volume_name("PG"); }),
              HasSubstr("volume name 'PG' must be 1-63 lowercase letters, digits or '-'"));
}

TEST(VolumeRulesDescription, Rules) {
  EXPECT_EQ(error_of([] { validate_description(""); }), "");
  EXPECT_EQ(error_of([] { validate_description("Postgres — primary 本番 🚀"); }), "");
  EXPECT_EQ(error_of([] { validate_description(std::string(1024, 'x')); }), "");
  EXPECT_THAT(error_of([] { validate_description(std::string(1025, 'x')); }), HasSubstr("at most 1024"));
  EXPECT_THAT(error_of([] { validate_description("tab\there"); }), HasSubstr("control character"));
  EXPECT_THAT(error_of([] { validate_description(std::string("nul\0", 4)); }), HasSubstr("control character"));
  for (const char* bad : {"\xff", "\xc3", "\xc0\x80", "\xe0\x80\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\x80"}) {
    EXPECT_THAT(error_of([&] { validate_description(bad); }), HasSubstr("not valid UTF-8")) << bad;
  }
}

TEST(VolumeRulesLabels, KubernetesSyntax) {
  auto check = [](const std::string& key, const std::string& value) {
    google::protobuf::Map<std::string, std::string> labels;
    labels[key] = value;
    return error_of([&] { validate_labels(labels); });
  };
  EXPECT_EQ(check("app", "db"), "");
  EXPECT_EQ(check("app.kubernetes.io/name", "postgres"), "");
  EXPECT_EQ(check("Tier_1.x", "Gold-2"), "");
  EXPECT_EQ(check("empty", ""), "");
  EXPECT_EQ(check(std::string(63, 'k'), std::string(63, 'v')), "");
  for (const std::string& key : std::vector<std::string>{"", "-a", "a-", "a b", "/name", "prefix/", "UPPER.com/x", "a/b/c", std::string(64, 'k')})
    EXPECT_THAT(check(key, "v"), HasSubstr("label key '" + key + "' is not valid")) << key;
  for (const std::string& value : std::vector<std::string>{"-v", "v-", "a b", "é", std::string(64, 'v')})
    EXPECT_THAT(check("k", value), HasSubstr("label k='" + value + "'")) << value;

  google::protobuf::Map<std::string, std::string> many;
  for (int i = 0; i < 65; ++i) many["k" + std::to_string(i)] = "v";
  EXPECT_THAT(error_of([&] { validate_labels(many); }), HasSubstr("at most 64"));
}

TEST(VolumeRulesAccessModes, DefaultDeduplicatedAndSorted) {
  google::protobuf::RepeatedField<int> modes;
  EXPECT_EQ(normalize_access_modes(modes), std::vector<v1::AccessMode>{v1::READ_WRITE_ONCE});
  modes.Add(v1::READ_ONLY_MANY);
  modes.Add(v1::READ_WRITE_ONCE);
  modes.Add(v1::READ_ONLY_MANY);
  EXPECT_EQ(normalize_access_modes(modes), (std::vector<v1::AccessMode>{v1::READ_WRITE_ONCE, v1::READ_ONLY_MANY}));
  modes.Add(v1::ACCESS_MODE_UNSPECIFIED);
  EXPECT_THAT(error_of([&] { normalize_access_modes(modes); }), HasSubstr("access mode 0 is not one blockd knows"));
}

TEST(Uuid, FormatSetsVersionAndVariant) {
  std::array<std::uint8_t, 16> zeros{};
  EXPECT_EQ(format_uuid_v4(zeros), "00000000-0000-4000-8000-000000000000");
  std::array<std::uint8_t, 16> ones;
  ones.fill(0xff);
  EXPECT_EQ(format_uuid_v4(ones), "ffffffff-ffff-4fff-bfff-ffffffffffff");
  std::array<std::uint8_t, 16> counting{};
  for (std::size_t i = 0; i < counting.size(); ++i) counting[i] = static_cast<std::uint8_t>(i * 17);
  EXPECT_EQ(format_uuid_v4(counting), "00112233-4455-4677-8899-aabbccddeeff");
}

TEST(Uuid, GeneratedAreV4AndDistinct) {
  const std::regex v4("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string uuid = generate_uuid_v4();
    EXPECT_TRUE(std::regex_match(uuid, v4)) << uuid;
    seen.insert(uuid);
  }
  EXPECT_EQ(seen.size(), 1000U);
}

}  // namespace
