#pragma once
// Cleanup (issue 19, part 1): nothing the daemon leaves behind accumulates. A `cleanup` job of
// the monitor's queue (MonitorOptions::job_handlers) runs at start and every
// runtime.cleanup_interval, and on demand (POST /monitor/api/v1/cleanup, `cloudyknight gc`):
// - the runtime's own leftovers (Runtime::collect_garbage; docker: dependency volumes unused
//   for runtime.deps_keep or beyond runtime.deps_max_size, images it built that nothing uses;
//   process: the app copies of deleted workspaces);
// - DATA/trash entries older than data.trash_keep;
// - workspace logs (DATA/logs/<name>.log) over log.max_size: copied to <name>.log.1 and
//   truncated (the runtime keeps appending to the same file), older rotations shifted, at most
//   log.keep rotated files kept;
// - state.db: closed sessions and status history older than state.keep_history, then a VACUUM
//   at most once a day when the deletes left free pages.
// Each run's report (what went, bytes) is the state.db setting "cleanup.last", a `cleanup`
// event and the metrics cloudyknight_cleanup_reclaimed_bytes_total{kind} and
// cloudyknight_cleanup_runs_total{result}.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/config.h"
#include "events/events.h"
#include "monitor/monitor.h"
#include "runtime/runtime.h"
#include "state/state.h"

namespace ck {

/// The cleanup's limits, from the configuration.
struct CleanupSettings {
  Duration interval = std::chrono::hours(1);
  Duration deps_keep = std::chrono::hours(24 * 7);
  std::uint64_t deps_max_size = 0;
  Duration trash_keep = std::chrono::hours(24 * 7);
  Duration keep_history = std::chrono::hours(24 * 30);
  std::uint64_t log_max_size = 10ull << 20;
  int log_keep = 3;
};
CleanupSettings cleanup_settings(const Config& config);

/// One run's outcome.
struct CleanupReport {
  bool dry_run = false;
  std::int64_t started_ms = 0, finished_ms = 0;
  std::vector<Reclaimed> items;
  std::vector<std::string> errors;  // steps that could not run (the others still did)
  std::uint64_t bytes() const;      // reclaimed (dry run: would be)
};
nlohmann::json cleanup_report_json(const CleanupReport& r);
/// For people: one line per item and a total ("would remove" in a dry run).
std::string cleanup_report_text(const CleanupReport& r);

// The steps on DATA and state.db (blocking; the daemon and `cloudyknight gc` both use them).
/// DATA/trash entries moved there more than `keep` ago (their ctime: the move).
std::vector<Reclaimed> clean_trash(const std::filesystem::path& trash, Duration keep, bool dry_run);
/// Rotates every DATA/logs/*.log over `max_size` and drops rotated files past `keep`.
std::vector<Reclaimed> rotate_logs(const std::filesystem::path& logs, std::uint64_t max_size, int keep,
                                   bool dry_run);
/// Old closed sessions and status history; a VACUUM when `vacuum` and the file has free pages.
Result<std::vector<Reclaimed>> clean_state(StateDb& db, Duration keep, bool vacuum, bool dry_run);
/// All three, with the daemon's once-a-day VACUUM rule (state.db setting "cleanup.vacuum_ms").
void clean_data(const CleanupSettings& s, const std::filesystem::path& data, StateDb* db, bool dry_run,
                CleanupReport& report);

/// `cloudyknight gc [--dry-run]` without a server: the same steps on this host's Docker engine
/// (this DATA folder's control plane only), DATA and DATA/state.db. Prints what went and the
/// bytes (JSON with `json`); exit code 0, or 1 when a step failed.
int gc_command(const Config& config, bool dry_run, bool json);

class CleanupService {
 public:
  /// `workspaces` answers the workspaces that exist now (their images stay), or an error when
  /// that is unknown (storage could not be listed: images are then left alone); called on the
  /// control-plane thread.
  CleanupService(net::io_context& io, Runtime& runtime, StateDb& db, EventBus& events,
                 std::filesystem::path data, CleanupSettings settings,
                 std::function<Result<std::set<std::string>>()> workspaces);
  ~CleanupService();
  CleanupService(const CleanupService&) = delete;
  CleanupService& operator=(const CleanupService&) = delete;

  /// The "cleanup" job kind, for MonitorOptions::job_handlers.
  void add_job_handlers(MonitorOptions& opts);
  /// Queues a scheduled run now (replacing whatever cleanup a previous run left queued); each
  /// scheduled run queues the next one runtime.cleanup_interval after it ends. Before
  /// Monitor::start().
  void schedule();
  /// POST /cleanup: a run now (an unfinished run that is due or running is returned instead).
  Result<Job> request();
  /// POST /cleanup {"dry_run": true}: what a run would remove now. `done` on any thread.
  void plan(std::function<void(Result<CleanupReport>)> done);
  /// GET /cleanup: the last run's report ({} before the first).
  nlohmann::json last() const;
  /// Waits for the work of a running cleanup to end.
  void stop();

 private:
  void run(bool dry_run, std::function<void(CleanupReport)> done);
  net::awaitable<void> run_runtime(bool dry_run, std::function<void(CleanupReport)> done);
  void record(const CleanupReport& r);

  net::io_context& io_;
  Runtime& runtime_;
  StateDb& db_;
  EventBus& events_;
  std::filesystem::path data_;
  CleanupSettings settings_;
  std::function<Result<std::set<std::string>>()> workspaces_;
  mutable std::mutex mu_;
  std::condition_variable idle_;
  int threads_ = 0;
  bool running_ = false;  // a real (not dry) run: one at a time
};

}  // namespace ck
