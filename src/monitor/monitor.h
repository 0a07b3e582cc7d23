#pragma once
// The monitor: the control plane's reconciler. Desired state is what storage holds, actual
// state is what the runtime runs; the monitor makes them match, one operation at a time per
// workspace, driven by file-change batches (inotify, debounced) with a periodic full pass as a
// safety net. Per workspace: creating → initializing → running → stopping → stopped, plus
// failed with a reason. Starts run as persistent jobs (state.db): they survive a restart of
// the daemon, retry with exponential backoff and end dead after jobs.max_attempts. The idle
// policy freezes workspaces nobody uses and then stops them; wake() brings them back.
// Everything it decides is published as a Snapshot (for the gateway and API) and as events
// (for /monitor/ws). Runs on the control-plane io_context (one thread); wake() and
// on_changes() must be called on it too (post to it).

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "core/public_url.h"
#include "events/events.h"
#include "http/asio.h"
#include "monitor/snapshot.h"
#include "runtime/runtime.h"
#include "state/state.h"
#include "storage/storage.h"
#include "workspace/workspace.h"

namespace ck {

struct WatchBatch;

struct MonitorOptions {
  Duration scan_interval = std::chrono::seconds(2);
  Duration ready_timeout = std::chrono::seconds(60);
  Duration stop_grace = std::chrono::seconds(5);
  IdlePolicy idle;
  int install_concurrency = 0;  // 0: one per core
  JobPolicy start_jobs;
  std::uint64_t memory = 512ull << 20;
  std::uint64_t install_memory = 1ull << 30;
  double cpus = 1;
  int pids = 256;
  // Ceilings for workspace.json "resources" (limits.max_*); 0: the same as memory/cpus/pids.
  std::uint64_t max_memory = 0;
  double max_cpus = 0;
  int max_pids = 0;
  /// Called on the monitor's thread before every start of a workspace that runs an app (a git
  /// workspace pulls here); must not block. `done` (callable from any thread, once) says the
  /// source is ready. The start waits for it at most `before_start_timeout`, then goes on with
  /// what the folder holds. Unset: starts do not wait.
  std::function<void(const std::string& name, std::function<void()> done)> before_start;
  Duration before_start_timeout = std::chrono::seconds(30);
  /// Job kinds run by someone else (a backup's "backup" and "restore"): the monitor's job
  /// runner claims a due job of such a kind, publishes it, and hands it over; the handler is
  /// called on the monitor's thread, must not block, and calls `done` once (from any thread)
  /// with the outcome: success completes the job, an error fails it (state.db retries it with
  /// the job's backoff, or marks it dead after its last attempt). Either way `after` (if set)
  /// runs on the monitor's thread with the job's new record.
  struct JobHandler {
    std::function<void(const Job& job, std::function<void(Result<void>)> done)> run;
    std::function<void(const Job& job)> after;
  };
  std::map<std::string, JobHandler> job_handlers;
  /// Where the gateway is reached: each app's BASE_URL, and gateway.domain for the Traefik
  /// Host rule.
  PublicAddress address;
};

/// What the runtime is asked to run for a workspace folder: its detected spec plus the
/// configured limits (the monitor and `cloudyknight workspace compose` both use it).
/// workspace.json "resources" never exceed the operator's ceilings (max_memory, max_cpus,
/// max_pids): a value above is capped, with a log line. Every app gets CK_BASE_PATH (its
/// path prefix, "/<name>/", "/" for www) and BASE_URL (workspace_url(): its full external URL;
/// workspace.json "env" may set BASE_URL, never CK_BASE_PATH).
RunSpec make_run_spec(const std::string& name, const std::filesystem::path& dir,
                      const WorkspaceSpec& spec, const MonitorOptions& opts);

/// The configured idle policy with a workspace's own overrides (workspace.json "idle").
IdlePolicy effective_policy(const IdlePolicy& base, const WorkspaceSpec& spec);

class Monitor {
 public:
  Monitor(net::io_context& io, Storage& storage, Runtime& runtime, SnapshotHolder& out,
          EventBus& events, StateDb& db, MonitorOptions opts);
  ~Monitor();

  /// Resumes the jobs a previous run left unfinished, runs the first pass, and starts the
  /// periodic pass, the idle policy, the job runner and the log tailer.
  void start();
  /// Stops every workspace (gracefully, then by force) and the loops.
  net::awaitable<void> shutdown();
  /// Lists storage and reconciles every workspace, now.
  void scan_now();
  /// Acts on a batch of file changes (from the storage watcher).
  void on_changes(const WatchBatch& batch);
  /// Compares every workspace's file tree with the last pass (for storage without change
  /// notifications, or a watcher that hit its limit).
  void set_polling(bool on) { polling_ = on; }
  /// A request arrived for a frozen or stopped workspace: resume or start it.
  void wake(const std::string& name);
  /// The API's start/stop/restart. stop holds the workspace stopped (state.db setting
  /// "workspace.held.<name>", so it survives a restart of the daemon; requests do not wake it)
  /// until start or restart. Unknown names and workspaces without an app are ignored.
  void act(const std::string& name, WorkspaceAction action);
  /// The public address once the gateway's port is known; before the io_context runs.
  void set_address(PublicAddress address) { opts_.address = std::move(address); }

 private:
  struct Record;
  net::awaitable<void> scan_loop();
  net::awaitable<void> idle_loop();
  net::awaitable<void> job_loop();
  net::awaitable<void> log_loop();
  net::awaitable<void> supervise(std::shared_ptr<Record> rec);
  net::awaitable<void> source_ready(std::shared_ptr<Record> rec);
  // Freezes or thaws it unless one is in flight (marked at once, so a burst of requests
  // thaws it once, not once per request queued before the first thaw ran).
  void start_freeze(const std::shared_ptr<Record>& rec, bool frozen);
  net::awaitable<void> freeze(std::shared_ptr<Record> rec, bool frozen);
  void stop_async(const std::shared_ptr<Record>& rec, const char* what);
  net::awaitable<void> stop_tracked(std::shared_ptr<Record> rec);
  net::awaitable<void> restart_when_settled(std::shared_ptr<Record> rec);
  net::awaitable<void> hot_update(std::shared_ptr<Record> rec, std::vector<std::string> paths);
  net::awaitable<void> run_cleanup(Job job);
  void run_handled(const MonitorOptions::JobHandler& handler, const Job& job);
  net::awaitable<void> acquire_start_slot();
  void release_start_slot();
  void reconcile(const std::vector<StorageEntry>& entries, const std::set<std::string>* only);
  void source_changed(const std::shared_ptr<Record>& rec, const std::set<std::string>& paths, bool all);
  void apply_spec(const std::shared_ptr<Record>& rec, WorkspaceSpec spec);
  void request_restart(const std::shared_ptr<Record>& rec);
  /// A restart for changed source: blue/green (replace_app) when the runtime can run the new
  /// version beside the old one, else request_restart.
  void restart_for_change(const std::shared_ptr<Record>& rec);
  net::awaitable<void> replace_app(std::shared_ptr<Record> rec);
  void publish();
  void job_event(const Job& job);
  RunSpec run_spec(const Record& rec) const;

  net::io_context& io_;
  Storage& storage_;
  Runtime& runtime_;
  SnapshotHolder& out_;
  EventBus& events_;
  StateDb& db_;
  MonitorOptions opts_;
  std::map<std::string, std::shared_ptr<Record>> records_;
  std::map<std::string, std::int64_t> saved_activity_;  // from state.db, for new records
  std::vector<InvalidFolder> invalid_;
  std::string storage_error_;
  bool shutting_down_ = false;
  bool polling_ = false;
  int supervisors_ = 0;
  int starts_running_ = 0;
  int start_limit_ = 1;
  net::steady_timer scan_timer_;
  net::steady_timer start_slot_freed_;
  net::steady_timer job_wake_;
};

}  // namespace ck
