#include "gateway/gateway_metrics.h"

#include <gtest/gtest.h>

namespace ck {
namespace {

TEST(GatewayMetrics, Labels) {
  EXPECT_EQ(request_kind_label(RequestKind::workspace), "workspace");
  EXPECT_EQ(request_kind_label(RequestKind::static_files), "static");
  EXPECT_EQ(request_kind_label(RequestKind::monitor), "monitor");
  EXPECT_EQ(request_kind_label(RequestKind::home), "home");
  EXPECT_EQ(request_kind_label(RequestKind::other), "other");
  EXPECT_EQ(status_class_label(101), "1xx");
  EXPECT_EQ(status_class_label(200), "2xx");
  EXPECT_EQ(status_class_label(304), "3xx");
  EXPECT_EQ(status_class_label(499), "4xx");
  EXPECT_EQ(status_class_label(503), "5xx");
  EXPECT_EQ(status_class_label(0), "5xx");
  EXPECT_EQ(status_class_label(999), "5xx");
}

TEST(GatewayMetrics, CountsByKindAndClassAndTimesAllButUpgrades) {
  metrics::Registry reg;
  GatewayMetrics m(reg);
  using namespace std::chrono_literals;
  m.request(RequestKind::static_files, 200, 2ms);
  m.request(RequestKind::static_files, 404, 30ms);
  m.request(RequestKind::workspace, 502, 1s);
  m.request(RequestKind::monitor, 101, 10min);  // a /monitor/ws session: counted, not timed
  auto& requests = reg.counter("cloudyknight_http_requests_total", "", {"kind", "code_class"});
  EXPECT_EQ(requests.with({"static", "2xx"}).value(), 1u);
  EXPECT_EQ(requests.with({"static", "4xx"}).value(), 1u);
  EXPECT_EQ(requests.with({"workspace", "5xx"}).value(), 1u);
  EXPECT_EQ(requests.with({"monitor", "1xx"}).value(), 1u);
  EXPECT_EQ(requests.with({"monitor", "2xx"}).value(), 0u);
  auto& durations = reg.histogram("cloudyknight_http_request_duration_seconds", "", {"kind"}, {});
  auto st = durations.with({"static"}).sample();
  EXPECT_EQ(st.count(), 2u);
  EXPECT_NEAR(st.sum, 0.032, 1e-12);
  EXPECT_EQ(durations.with({"workspace"}).sample().count(), 1u);
  EXPECT_EQ(durations.with({"monitor"}).sample().count(), 0u);
  // Every kind x class exists from the start: a scrape shows zeros, not gaps.
  auto text = reg.text();
  EXPECT_NE(text.find("cloudyknight_http_requests_total{kind=\"home\",code_class=\"3xx\"} 0\n"),
            std::string::npos);
  m.upstream_errors.inc();
  m.events_clients.inc();
  EXPECT_NE(reg.text().find("cloudyknight_upstream_errors_total 1\n"), std::string::npos);
  EXPECT_NE(reg.text().find("cloudyknight_events_clients 1\n"), std::string::npos);
}

}  // namespace
}  // namespace ck
