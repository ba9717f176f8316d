// blockctl status: /metrics text → per-volume counters, and two samples → rates.
#include "tools/status_rates.h"

#include <gtest/gtest.h>

#include "tools/status_command.h"

namespace blockd::tools {
namespace {

constexpr const char* kMetrics = R"(# HELP blockd_requests_total NBD requests answered, by volume and operation.
# TYPE blockd_requests_total counter
blockd_requests_total{volume="db",op="read"} 10
blockd_requests_total{volume="db",op="write"} 100
blockd_requests_total{volume="db",op="flush"} 3
blockd_requests_total{volume="logs",op="read"} 0
blockd_requests_total{volume="logs",op="write"} 0
# TYPE blockd_request_errors_total counter
blockd_request_errors_total{volume="db",op="write",error="EIO"} 2
blockd_request_errors_total{volume="db",op="read",error="EINVAL"} 1
# TYPE blockd_bytes_total counter
blockd_bytes_total{volume="db",direction="read"} 40960
blockd_bytes_total{volume="db",direction="write"} 4.096e+05
blockd_bytes_total{volume="logs",direction="read"} 0
blockd_bytes_total{volume="logs",direction="write"} 0
blockd_request_duration_seconds_bucket{volume="db",op="read",le="0.001"} 7
blockd_uptime_seconds 12
blockd_requests_total{volume="odd\"name",op="read"} 5 1700000000000
not a metric line
blockd_requests_total{volume="broken",op="read"}
)";

TEST(StatusRatesTest, ParsesTheCountersOfEveryVolume) {
  const CounterSample s = parse_metrics(kMetrics);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s.at("db"), (VolumeCounters{10, 100, 40960, 409600, 3}));
  EXPECT_EQ(s.at("logs"), VolumeCounters{});
  EXPECT_EQ(s.at("odd\"name").reads, 5u);  // an escaped quote, and a timestamp after the value
  EXPECT_EQ(s.count("broken"), 0u);
}

TEST(StatusRatesTest, EmptyOrForeignTextGivesNothing) {
  EXPECT_TRUE(parse_metrics("").empty());
  EXPECT_TRUE(parse_metrics("# only comments\nup 1\r\n").empty());
  EXPECT_EQ(parse_metrics("blockd_requests_total{volume=\"a\",op=\"write\"} 7\r\n").at("a").writes, 7u);
}

TEST(StatusRatesTest, RatesAreTheDifferenceOverTheInterval) {
  const CounterSample before = {{"db", {10, 100, 40960, 409600, 3}}, {"gone", {1, 1, 1, 1, 0}}};
  const CounterSample after = {{"db", {30, 500, 122880, 2048000, 5}}, {"new", {9, 9, 9, 9, 9}}};
  const RateResult r = compute_rates(before, after, 2.0);
  ASSERT_TRUE(r.valid);
  ASSERT_EQ(r.rates.size(), 1u);  // "new" has no previous sample, "gone" no current one
  const VolumeRates& db = r.rates.at("db");
  EXPECT_DOUBLE_EQ(db.reads_per_second, 10);
  EXPECT_DOUBLE_EQ(db.writes_per_second, 200);
  EXPECT_DOUBLE_EQ(db.read_bytes_per_second, 40960);
  EXPECT_DOUBLE_EQ(db.write_bytes_per_second, 819200);
  EXPECT_EQ(db.errors, 2u);
}

TEST(StatusRatesTest, NoIoIsAZeroRate) {
  const CounterSample s = {{"db", {10, 100, 40960, 409600, 0}}};
  const RateResult r = compute_rates(s, s, 5);
  ASSERT_TRUE(r.valid);
  EXPECT_DOUBLE_EQ(r.rates.at("db").writes_per_second, 0);
  EXPECT_DOUBLE_EQ(r.rates.at("db").write_bytes_per_second, 0);
}

TEST(StatusRatesTest, ACounterThatWentDownMeansARestart) {
  const CounterSample before = {{"db", {10, 100, 40960, 409600, 0}}, {"b", {0, 0, 0, 0, 0}}};
  EXPECT_FALSE(compute_rates(before, {{"db", {1, 100, 40960, 409600, 0}}, {"b", {5, 5, 5, 5, 0}}}, 1).valid);
  EXPECT_FALSE(compute_rates(before, {{"db", {10, 100, 40960, 4096, 0}}}, 1).valid);
  EXPECT_TRUE(compute_rates(before, {{"db", {10, 100, 40960, 409600, 0}}}, 1).rates.empty() == false);
}

TEST(StatusRatesTest, NoPreviousSampleOrABadIntervalGivesNoRates) {
  const CounterSample s = {{"db", {1, 2, 3, 4, 0}}};
  EXPECT_FALSE(compute_rates({}, s, 1).valid);
  EXPECT_FALSE(compute_rates(s, s, 0).valid);
  EXPECT_FALSE(compute_rates(s, s, -3).valid);
  EXPECT_FALSE(compute_rates(s, s, kMaxSampleAgeSeconds + 1).valid);
  EXPECT_TRUE(compute_rates(s, s, kMaxSampleAgeSeconds).valid);
}

TEST(StatusRatesTest, TableShowsHoldersAndRatesOrDashes) {
  v1::StatusResponse status;
  status.set_version("1.0");
  v1::Volume* db = status.add_volumes();
  db->set_name("db");
  db->set_size_bytes(1 << 30);
  db->mutable_status()->set_connections(1);
  db->mutable_status()->mutable_lease()->add_holders()->set_holder("node-a");
  v1::Volume* idle = status.add_volumes();
  idle->set_name("idle");
  StatusRates rates;
  rates.seconds = 2;
  rates.result = compute_rates({{"db", {0, 0, 0, 0, 0}}}, {{"db", {0, 200, 0, 2000000, 1}}}, 2);
  const std::string text = render_status_with_rates(status, rates, 0);
  EXPECT_NE(text.find("HOLDER(S)"), std::string::npos) << text;
  EXPECT_NE(text.find("node-a"), std::string::npos) << text;
  EXPECT_NE(text.find("100.0"), std::string::npos) << text;  // WRITE/s
  EXPECT_NE(text.find("1.00"), std::string::npos) << text;   // WRITE MB/s
  EXPECT_NE(text.find("over the 2.0s since the last call"), std::string::npos) << text;

  StatusRates none;
  none.why_none = "first call";
  const std::string first = render_status_with_rates(status, none, 0);
  EXPECT_NE(first.find("rates from the next call on"), std::string::npos) << first;
  EXPECT_EQ(first.find("rates from the next call on"), first.rfind("rates from the next call on"));

  const std::string json = status_json_with_rates(status, rates);
  EXPECT_NE(json.find("\"writesPerSecond\": 100"), std::string::npos) << json;
  EXPECT_NE(json.find("\"rates\": null"), std::string::npos) << json;  // "idle": no previous sample
}

}  // namespace
}  // namespace blockd::tools
