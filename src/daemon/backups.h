#pragma once
// Backups in the daemon (issue 17, part 5): the schedule runs as jobs of the monitor's job queue
// (kind "backup", one per destination, so a destination that fails is retried with backoff and
// never holds the others back), restores run as "restore" jobs, and every run leaves its outcome
// in state.db (settings "backup.dest.<name>" and "backup.ws.<workspace>"), in events ("backup")
// and in metrics. The work itself is src/backup's, on a thread per running job.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "backup/backup.h"
#include "core/error.h"
#include "events/events.h"
#include "monitor/monitor.h"
#include "state/state.h"

namespace ck {

/// What a restore job does (POST /workspaces/{name}/restore).
struct RestoreRequest {
  std::string workspace;
  std::string destination;  // "" = the first configured one
  std::string snapshot;     // "" = latest (or point_in_time)
  std::optional<std::time_t> point_in_time;
  backup::RestoreMode mode = backup::RestoreMode::merge;
};

class BackupService {
 public:
  /// S3 storage: where the workspaces' objects are (a restore writes there, through
  /// backup::restore_to_bucket) and what to call once it did (a pass of the mirror, which brings
  /// the change to the monitor). Folder storage has none: a restore writes into the workspace's
  /// folder itself (the watcher sees it, the monitor restarts it).
  struct Bucket {
    s3::Client* client = nullptr;
    std::string bucket, prefix;
    std::function<void()> changed;
  };

  BackupService(backup::BackupConfig config, std::filesystem::path workspaces_root,
                std::filesystem::path data, StateDb& db, EventBus& events,
                std::optional<Bucket> bucket = std::nullopt);
  ~BackupService();
  BackupService(const BackupService&) = delete;
  BackupService& operator=(const BackupService&) = delete;

  /// The job kinds this service runs, for MonitorOptions::job_handlers.
  void add_job_handlers(MonitorOptions& opts);
  /// Queues the first scheduled run of each destination that has none queued (right away when its
  /// last success is older than backup.schedule, else when it falls due). Before Monitor::start().
  void schedule();
  /// Waits for running jobs to end (a job that is cancelled stops between files).
  void stop();

  bool configured() const { return !config_.destinations.empty(); }

  /// GET /backups: the schedule, every destination with its last run and whether one runs now,
  /// and, per workspace that `visible` lets through, its last snapshot on each destination.
  nlohmann::json status(const std::function<bool(const std::string& workspace)>& visible) const;
  /// The snapshots of `workspace` on every destination (or the one named), oldest first; blocks on
  /// S3 (call it off the gateway).
  Result<nlohmann::json> snapshots(const std::string& workspace, const std::string& destination) const;
  /// POST /backups: queues a run now on `destination` ("" = all) for `workspace` ("" = every
  /// workspace). Returns the jobs queued (an unfinished run of the same destination and
  /// workspace is returned instead of a second one).
  Result<std::vector<Job>> request(const std::string& destination, const std::string& workspace);
  /// POST /workspaces/{name}/restore: queues a restore job.
  Result<Job> restore(const RestoreRequest& req);
  /// A dry run of a restore into the workspace: what would change. Blocks on S3.
  Result<backup::RestoreReport> plan_restore(const RestoreRequest& req) const;
  /// Runs `work` (which may block on S3) on a thread of this service: the API's slow answers.
  void run_off_thread(std::function<void()> work) { launch(std::move(work)); }

 private:
  void run_backup(const Job& job, std::function<void(Result<void>)> done);
  void run_restore(const Job& job, std::function<void(Result<void>)> done);
  void after_backup(const Job& job);
  /// After a scheduled run: backup.keep applied to the destination, at most once a day.
  void prune_daily(const backup::Destination& d);
  /// Runs `work` on a thread of its own, counted so stop() can wait for it.
  void launch(std::function<void()> work);
  Result<const backup::Destination*> destination(const std::string& name) const;
  backup::RepoOptions repo_options() const;
  std::vector<backup::WorkspaceSource> workspaces(const std::string& only) const;
  void record(const std::string& dest, const std::vector<backup::BackupReport>& reports, bool ok,
              const std::string& error, std::chrono::milliseconds took);

  backup::BackupConfig config_;
  std::filesystem::path root_;
  std::filesystem::path cache_;
  StateDb& db_;
  EventBus& events_;
  std::optional<Bucket> bucket_;
  mutable std::mutex mu_;
  std::condition_variable idle_;
  int running_ = 0;
  std::vector<std::string> busy_;  // destinations with a backup running now
  std::map<std::string, std::unique_ptr<std::mutex>> dest_locks_;  // one run per destination
  std::atomic<bool> stopping_{false};
};

}  // namespace ck
