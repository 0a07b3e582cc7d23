#pragma once
// Inside the monitor (not for other modules): a workspace's record, and what its files share.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/log.h"
#include "core/units.h"
#include "metrics/metrics.h"
#include "monitor/monitor.h"
#include "storage/dir/watcher.h"

namespace ck {
namespace mon {

inline auto logger() {
  static auto l = log::get("monitor");
  return l;
}

inline bool runs_in_runtime(const WorkspaceSpec& spec) {
  return spec.error.empty() && spec.type != WorkspaceType::static_site;
}

// Compose and Dockerfile workspaces can only run where there is a container engine.
inline bool needs_docker(const WorkspaceSpec& spec, const Runtime& runtime) {
  return (spec.type == WorkspaceType::compose || spec.type == WorkspaceType::dockerfile) &&
         runtime.kind() == "process";
}

inline bool runnable(const WorkspaceSpec& spec, const Runtime& runtime) {
  return runs_in_runtime(spec) && !needs_docker(spec, runtime);
}

inline constexpr std::string_view kHeldReason = "stopped from the API";

inline std::string held_key(const std::string& name) { return "workspace.held." + name; }

inline std::string ago(std::int64_t ms) {
  return format_duration(std::chrono::seconds(std::max<std::int64_t>(ms, 0) / 1000));
}

inline constexpr auto kBackoffStart = std::chrono::seconds(1);
inline constexpr auto kBackoffCap = std::chrono::minutes(5);
inline constexpr auto kHealthyReset = std::chrono::minutes(10);
inline constexpr auto kForever = std::chrono::hours(24 * 365);

inline const std::vector<std::string>& skip_dirs() {
  static const std::vector<std::string> skip = WatcherOptions{}.skip;
  return skip;
}

// Waits on a record's wake timer: for `d`, or until someone cancels it.
inline net::awaitable<void> wait_on(net::steady_timer& t, Duration d) {
  t.expires_after(d);
  boost::system::error_code ec;
  co_await t.async_wait(net::redirect_error(net::use_awaitable, ec));
}

// Start outcomes and install times, in the process registry (metrics::global()).
struct StartMetrics {
  metrics::Counter& ok;
  metrics::Counter& failed;
  metrics::Histogram& install;
};

inline StartMetrics& start_metrics() {
  static StartMetrics m = [] {
    auto& g = metrics::global();
    auto& starts =
        g.counter("cloudyknight_workspace_starts_total",
                  "Workspace start attempts (copy, install, launch, readiness) by result.", {"result"});
    return StartMetrics{
        starts.with({"ok"}), starts.with({"failed"}),
        g.histogram("cloudyknight_install_duration_seconds",
                    "Time from claiming a start job to the app being ready (source copy, "
                    "dependency install, launch and readiness probe).",
                    {}, {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600})
            .get()};
  }();
  return m;
}

// What a start is doing, as the status's phase says it.
inline std::string_view phase_text(Phase phase) {
  return phase == Phase::preparing    ? "copying the source"
         : phase == Phase::installing ? "installing dependencies"
                                      : "starting the app";
}

}  // namespace mon

struct Monitor::Record {
  explicit Record(net::io_context& io) : wake(io) {}
  std::string name;
  std::filesystem::path path;
  WorkspaceSpec spec;
  std::string status = "creating";
  std::string phase;
  std::string error;
  std::string reason;
  std::string log_tail;
  RunningApp app;
  int restarts = 0;
  bool supervised = false;
  bool removed = false;
  bool restart_requested = false;
  bool asleep = false;           // stopped by the idle policy; wake() starts it
  bool held = false;             // stopped from the API: asleep, and wake() leaves it so
  bool sleep_requested = false;  // the idle policy is stopping it now
  bool wake_pending = false;     // a request came while it was being put to sleep
  bool frozen = false;
  bool freezing = false;         // a freeze or thaw is in flight
  bool freeze_failed = false;    // do not retry every tick
  bool restarting = false;       // coming back after it ran: the gateway holds requests
  bool replacing = false;        // blue/green: its new version starts beside it (replace_app)
  std::int64_t attempt_ms = 0;   // when its latest start (or new version) began
  std::uint64_t instance = 0;    // successful starts
  std::int64_t retry_at_ms = 0;  // failed: the next start (unix ms)
  bool change_pending = false;   // a restart for changed files waits for them to settle
  std::chrono::steady_clock::time_point last_change{}, pending_since{};
  int crash_streak = 0;
  int stops_in_flight = 0;
  Duration start_delay{0};
  std::string start_reason = "created";
  IdlePolicy policy;
  ActivityLevel level = ActivityLevel::active;
  std::uint64_t tree_sig = 0;
  std::int64_t saved_ms = 0;      // the activity time last written to state.db
  std::int64_t session_id = 0;    // open WebSocket session row, if any
  std::string pub_status, pub_reason, pub_phase;  // as last published (for events/history)
  bool pub_frozen = false;
  std::uint64_t log_offset = 0;
  bool log_offset_known = false;
  net::steady_timer wake;  // cut short a wait (backoff, sleep)
  std::shared_ptr<Activity> activity = std::make_shared<Activity>();
};

}  // namespace ck
