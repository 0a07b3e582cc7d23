#include "gateway/gateway_metrics.h"

namespace ck {

std::string_view request_kind_label(RequestKind k) {
  switch (k) {
    case RequestKind::workspace:
      return "workspace";
    case RequestKind::static_files:
      return "static";
    case RequestKind::monitor:
      return "monitor";
    case RequestKind::home:
      return "home";
    case RequestKind::other:
      return "other";
  }
  return "other";
}

std::string_view status_class_label(int status) {
  static constexpr std::array<std::string_view, 5> kClasses = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  int c = status / 100 - 1;
  return kClasses[c >= 0 && c < 5 ? static_cast<std::size_t>(c) : 4];
}

GatewayMetrics& GatewayMetrics::get() {
  static GatewayMetrics* m = new GatewayMetrics(metrics::global());  // used until exit
  return *m;
}

GatewayMetrics::GatewayMetrics(metrics::Registry& registry)
    : upstream_errors(registry
                          .counter("cloudyknight_upstream_errors_total",
                                   "Proxied requests whose app failed to answer (connection "
                                   "refused or reset, invalid response, timeout).")
                          .get()),
      events_clients(
          registry.gauge("cloudyknight_events_clients", "Open /monitor/ws connections.").get()),
      worker_connections_(registry.gauge("cloudyknight_gateway_worker_connections",
                                         "Open client connections per gateway worker thread (a worker "
                                         "hands a new one to another that serves two fewer).",
                                         {"worker"})) {
  auto& requests =
      registry.counter("cloudyknight_http_requests_total",
                       "HTTP requests answered by the gateway, by route kind and status class.",
                       {"kind", "code_class"});
  auto& durations = registry.histogram("cloudyknight_http_request_duration_seconds",
                                       "Time from a request's headers to the end of its response, "
                                       "by route kind (upgrades excluded).",
                                       {"kind"}, metrics::latency_buckets());
  for (std::size_t k = 0; k < kRequestKinds; ++k) {
    auto kind = request_kind_label(static_cast<RequestKind>(k));
    for (std::size_t c = 0; c < 5; ++c) {
      requests_[k][c] = &requests.with({kind, status_class_label(static_cast<int>(c + 1) * 100)});
    }
    durations_[k] = &durations.with({kind});
  }
}

metrics::Gauge& GatewayMetrics::worker_connections(std::size_t i) {
  return worker_connections_.with({std::to_string(i)});
}

}  // namespace ck
