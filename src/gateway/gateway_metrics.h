#pragma once
// The gateway's metrics, registered in the process registry (metrics::global()) with every
// label set the gateway knows resolved up front: recording a request costs two relaxed atomic
// adds in this thread's shard (a counter and a histogram bucket) plus the sum, no lock and no
// allocation. Used from every gateway worker thread.

#include <array>
#include <chrono>
#include <string_view>

#include "metrics/metrics.h"

namespace ck {

/// What a request was for, as the route decided: a proxied app, a static workspace, the
/// control plane under /monitor, the home page, or anything else (redirects, unknown
/// workspaces, requests that could not be read).
enum class RequestKind { workspace, static_files, monitor, home, other };
inline constexpr std::size_t kRequestKinds = 5;
std::string_view request_kind_label(RequestKind k);
/// "1xx" ... "5xx" (anything out of range counts as 5xx).
std::string_view status_class_label(int status);

class GatewayMetrics {
 public:
  /// The process's instance (in metrics::global()).
  static GatewayMetrics& get();
  explicit GatewayMetrics(metrics::Registry& registry);

  /// One request answered with `status` after `took` (from its headers to its last byte).
  /// An upgrade (1xx) is counted but not timed: a tunnel's life is not a latency.
  void request(RequestKind kind, int status, std::chrono::steady_clock::duration took) noexcept {
    auto k = static_cast<std::size_t>(kind);
    requests_[k][class_index(status)]->inc();
    if (status >= 200) durations_[k]->observe(std::chrono::nanoseconds(took));
  }

  /// Open client connections of gateway worker `i` (its thread).
  metrics::Gauge& worker_connections(std::size_t i);

  metrics::Counter& upstream_errors;  // an app failed to answer (connect, reset, timeout)
  metrics::Gauge& events_clients;     // open /monitor/ws connections

 private:
  static std::size_t class_index(int status) noexcept {
    int c = status / 100 - 1;
    return c >= 0 && c < 5 ? static_cast<std::size_t>(c) : 4;
  }
  std::array<std::array<metrics::Counter*, 5>, kRequestKinds> requests_{};
  std::array<metrics::Histogram*, kRequestKinds> durations_{};
  metrics::Family<metrics::Gauge>& worker_connections_;
};

}  // namespace ck
