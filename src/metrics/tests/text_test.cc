#include "metrics/text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace ck::metrics {
namespace {

TEST(Text, EscapesLabelValues) {
  EXPECT_EQ(escape_label_value("plain"), "plain");
  EXPECT_EQ(escape_label_value(R"(a\b)"), R"(a\\b)");
  EXPECT_EQ(escape_label_value(R"(say "hi")"), R"(say \"hi\")");
  EXPECT_EQ(escape_label_value("two\nlines"), R"(two\nlines)");
  EXPECT_EQ(escape_label_value("\\\"\n"), R"(\\\"\n)");
  EXPECT_EQ(escape_label_value("tab\there ünï"), "tab\there ünï");  // only \ " and newline
}

TEST(Text, EscapesHelpButNotQuotes) {
  EXPECT_EQ(escape_help("a \"quoted\" \\ word\nnext"), R"(a "quoted" \\ word\nnext)");
}

TEST(Text, FormatsValues) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(1), "1");
  EXPECT_EQ(format_value(0.0005), "0.0005");
  EXPECT_EQ(format_value(2.5), "2.5");
  EXPECT_EQ(format_value(-3.25), "-3.25");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::nan("")), "NaN");
  // Round-trips exactly.
  for (double v : {0.1, 1.0 / 3, 1e-9, 123456789.125, 1e300}) {
    EXPECT_EQ(std::stod(format_value(v)), v) << format_value(v);
  }
}

TEST(Text, ValidatesNames) {
  EXPECT_TRUE(valid_metric_name("cloudyknight_http_requests_total"));
  EXPECT_TRUE(valid_metric_name("a:b_c9"));
  EXPECT_TRUE(valid_metric_name(":colon_first"));
  EXPECT_FALSE(valid_metric_name(""));
  EXPECT_FALSE(valid_metric_name("9lives"));
  EXPECT_FALSE(valid_metric_name("has-dash"));
  EXPECT_FALSE(valid_metric_name("has space"));
  EXPECT_TRUE(valid_label_name("code_class"));
  EXPECT_TRUE(valid_label_name("_x"));
  EXPECT_FALSE(valid_label_name("__reserved"));
  EXPECT_FALSE(valid_label_name("a:b"));
  EXPECT_FALSE(valid_label_name("1a"));
  EXPECT_FALSE(valid_label_name(""));
}

TEST(Text, WritesFamiliesAndSamples) {
  TextWriter w;
  w.family("ck_things", "Things seen.\nSecond \\ line", Type::counter);
  std::vector<Label> labels = {{"kind", "a\"b"}, {"where", "x\ny"}};
  w.sample("ck_things", labels, std::uint64_t{42});
  w.family("ck_level", "A level.", Type::gauge);
  w.sample("ck_level", {}, std::int64_t{-3});
  w.sample("ck_level", std::vector<Label>{{"k", "v"}}, 0.25);
  EXPECT_EQ(w.text(),
            "# HELP ck_things Things seen.\\nSecond \\\\ line\n"
            "# TYPE ck_things counter\n"
            "ck_things{kind=\"a\\\"b\",where=\"x\\ny\"} 42\n"
            "# HELP ck_level A level.\n"
            "# TYPE ck_level gauge\n"
            "ck_level -3\n"
            "ck_level{k=\"v\"} 0.25\n");
}

TEST(Text, WritesHistogramSeries) {
  TextWriter w;
  w.family("ck_seconds", "Durations.", Type::histogram);
  std::vector<double> bounds = {0.5, 1};
  std::vector<std::uint64_t> cumulative = {1, 3, 4};
  w.histogram("ck_seconds", std::vector<Label>{{"kind", "x"}}, bounds, cumulative, 7.5);
  EXPECT_EQ(w.text(),
            "# HELP ck_seconds Durations.\n"
            "# TYPE ck_seconds histogram\n"
            "ck_seconds_bucket{kind=\"x\",le=\"0.5\"} 1\n"
            "ck_seconds_bucket{kind=\"x\",le=\"1\"} 3\n"
            "ck_seconds_bucket{kind=\"x\",le=\"+Inf\"} 4\n"
            "ck_seconds_sum{kind=\"x\"} 7.5\n"
            "ck_seconds_count{kind=\"x\"} 4\n");
}

TEST(Text, TypeNames) {
  EXPECT_EQ(type_name(Type::counter), "counter");
  EXPECT_EQ(type_name(Type::gauge), "gauge");
  EXPECT_EQ(type_name(Type::histogram), "histogram");
}

}  // namespace
}  // namespace ck::metrics
