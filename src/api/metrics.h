#pragma once
// GET /monitor/metrics: the Prometheus text exposition (format 0.0.4).

#include <string>
#include <string_view>

#include "monitor/snapshot.h"
#include "state/state.h"

namespace ck {

namespace metrics {
class Registry;
}

/// The scrape's body (Content-Type metrics::kContentType): the registry's families (the
/// gateway's requests and latencies, the monitor's starts and install times), then what is
/// read now: workspaces by state and by activity level (every state and level, zeros
/// included, from `snap`), the job queue by state (from `db`, when there is one), the
/// process's CPU time, memory, descriptors and start time (/proc/self), and the build.
/// Runs on a gateway thread; the job counts are one SQLite query.
std::string render_metrics(const metrics::Registry& registry, const Snapshot& snap, StateDb* db,
                           std::string_view version);

}  // namespace ck
