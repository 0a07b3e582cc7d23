#pragma once
// Backups of workspaces to S3 destinations (issue 17; format in src/backup/README.md).
//
// Every function here is blocking and thread-safe per call: each call builds its own S3 client
// from the Destination, so the CLI calls them directly and the daemon from a worker thread (one
// job per destination). Nothing is shared between calls except the local cache folder, which
// only speeds things up and is never trusted beyond "this blob id was listed by an index".
//
// A destination is either `incremental` (content-addressed, deduplicated, optionally encrypted
// snapshots: packs, index, snapshots) or `mirror` (a plain one-way copy of each workspace at
// PREFIX/<workspace>/, readable by any S3 tool, keeping only the latest state).

#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "storage/ignore.h"
#include "storage/s3/client.h"
#include "storage/s3/credentials.h"
#include "storage/sync.h"

namespace ck::backup {

enum class DestinationMode { incremental, mirror };
std::string_view mode_name(DestinationMode m);  // "incremental" | "mirror"

/// One configured destination, credentials resolved (as for storage: explicit, environment,
/// profile).
struct Destination {
  std::string name;
  DestinationMode mode = DestinationMode::incremental;
  bool encrypt = false;
  s3::ClientOptions client;
  std::string bucket;
  std::string prefix;       // without leading/trailing '/'; may be empty
  std::string url() const;  // "s3://bucket/prefix"
};

/// backup.keep: how many snapshots prune keeps per workspace (restic `forget` semantics: the
/// newest snapshot of each of the last N hours / days / ISO weeks / months; the newest snapshot
/// overall is always kept). All zero: keep everything.
struct Keep {
  int last = 0;
  int hourly = 24;
  int daily = 7;
  int weekly = 4;
  int monthly = 12;
};

struct BackupConfig {
  std::vector<Destination> destinations;
  std::chrono::milliseconds schedule = std::chrono::hours(1);
  Keep keep;
  std::string key;  // backup.key or CK_BACKUP_KEY; "" = none
};

/// The config's `backup:` section with every destination's credentials resolved. Fails with a
/// message naming the destination on a bad URL, a missing key for an encrypted destination is
/// NOT an error here (only when that destination is used).
Result<BackupConfig> backup_config(const Config& config, const s3::EnvFn& env);

/// The destination called `name`; an unknown name fails with the configured names listed.
Result<const Destination*> find_destination(const BackupConfig& config, std::string_view name);

/// Progress of one call, reported from the calling thread or a worker, one at a time per call;
/// backup_all() runs one call per destination, so its callback must be thread-safe.
struct Progress {
  std::string destination;
  std::string workspace;
  std::string phase;  // "scan", "upload", "index", "snapshot", "download", "write", "check", ...
  std::uint64_t files_done = 0, files_total = 0;
  std::uint64_t bytes_done = 0, bytes_total = 0;
};
using ProgressFn = std::function<void(const Progress&)>;

/// Options shared by every call that reads a destination.
struct RepoOptions {
  std::string key;                  // passphrase of encrypted destinations
  std::filesystem::path cache_dir;  // "" = default_cache_dir()
  ProgressFn progress;              // may be empty
  int concurrency = 8;              // transfers in flight
  /// Polled between files and between transfers; true makes the call stop and fail with
  /// Errc::unavailable "cancelled" (nothing half-written: a backup leaves no snapshot, a
  /// restore stops before it changes the target or between whole files). May be empty.
  std::function<bool()> cancelled;
};

/// $XDG_CACHE_HOME (or ~/.cache)/cloudyknight/backup; the daemon passes DATA/backup-cache.
std::filesystem::path default_cache_dir();

struct BackupOptions : RepoOptions {
  bool dry_run = false;  // scan and compare only: nothing is written to the destination
  IgnoreOptions ignore;  // which files are source (the same rules as sync)
  std::string host;      // recorded in the snapshot; "" = gethostname()
};

struct BackupReport {
  std::string destination;
  std::string workspace;
  std::string snapshot_id;  // "" for a dry run; mirror destinations: "latest"
  std::uint64_t files = 0;
  std::uint64_t bytes = 0;            // sum of the files' sizes
  std::uint64_t added_files = 0;      // files whose content the destination did not have
  std::uint64_t added_bytes = 0;      // bytes of those (before encryption)
  std::uint64_t objects_written = 0;  // PUTs (packs, blobs, index, snapshot, marker)
  std::vector<std::string> warnings;  // unreadable folders skipped
  std::chrono::milliseconds elapsed{0};
};

/// Backs up one workspace folder to one destination. Incremental: new content goes into packs
/// (or standalone blobs >= 1 MiB), then one index object, then the snapshot object, each written
/// only after everything before it was confirmed, so a crash never leaves a snapshot pointing at
/// missing data. Mirror: sync::push with delete_extra plus the marker object.
Result<BackupReport> backup_workspace(const Destination& dest, const std::string& workspace,
                                      const std::filesystem::path& dir, const BackupOptions& opts);

struct WorkspaceSource {
  std::string name;
  std::filesystem::path dir;
};

struct DestinationResult {
  std::string destination;
  bool ok = true;
  std::string error;                  // the first failure, naming the workspace ("" when ok)
  std::vector<BackupReport> reports;  // one per workspace backed up
};

/// Every workspace to every destination, one thread per destination; a destination that fails
/// never holds back the others. One result per destination, in config order.
std::vector<DestinationResult> backup_all(const std::vector<Destination>& destinations,
                                          const std::vector<WorkspaceSource>& workspaces,
                                          const BackupOptions& opts);

struct SnapshotInfo {
  std::string destination;
  std::string workspace;
  std::string id;        // mirror destinations: "latest"
  std::time_t time = 0;  // UTC seconds
  std::string host;
  std::uint64_t files = 0, bytes = 0, added_bytes = 0;
};

/// Snapshots of `workspace` ("" = every workspace) on the destination, oldest first.
Result<std::vector<SnapshotInfo>> list_snapshots(const Destination& dest,
                                                 const std::string& workspace,
                                                 const RepoOptions& opts);

enum class RestoreMode { mirror, merge };

struct RestoreOptions : RepoOptions {
  std::string snapshot;                      // an id; "" = latest (or point_in_time)
  std::optional<std::time_t> point_in_time;  // the last snapshot at or before it
  RestoreMode mode = RestoreMode::merge;     // mirror also deletes source files the snapshot lacks
  std::filesystem::path target;              // the folder to restore into (created if missing)
  bool dry_run = false;                      // report what would change, change nothing
  IgnoreOptions ignore;  // mirror mode deletes only files these rules count as source
};

struct RestoreChange {
  enum class Op { write, remove } op = Op::write;
  std::string path;
  std::uint64_t size = 0;
};

struct RestoreReport {
  std::string snapshot_id;
  std::vector<RestoreChange> changes;  // done (dry run: planned), in path order
  std::uint64_t unchanged = 0;
  std::uint64_t bytes_written = 0;
  std::chrono::milliseconds elapsed{0};
};

/// Restores one workspace's snapshot into opts.target. Every blob is downloaded and verified
/// (its id recomputed) into a staging folder beside the target before anything in the target
/// changes; a tampered or missing blob, or a snapshot path that would escape the target, fails
/// the call with the target untouched.
Result<RestoreReport> restore(const Destination& dest, const std::string& workspace,
                              const RestoreOptions& opts);

/// Restores into a workspace kept in a bucket (S3 storage) at `where`: its objects are pulled
/// into a temporary folder, the snapshot is restored there (opts.target is ignored), what the
/// restore wrote is uploaded and exactly the objects it removed are deleted, so objects the
/// ignore rules skip (a dist/ another tool uploaded) are never touched. The CLI and the daemon
/// both restore S3 storage through this.
Result<RestoreReport> restore_to_bucket(const Destination& dest, const std::string& workspace,
                                        RestoreOptions opts, const sync::Location& where);

/// "YYYY-MM-DD HH:MM:SS" (or "YYYY-MM-DD HH:MM", "YYYY-MM-DD") in the local time zone (TZ).
Result<std::time_t> parse_point_in_time(std::string_view text);

struct SnapshotCheck {
  std::string workspace;
  std::string id;
  std::vector<std::string> problems;  // empty: every blob present and verified
};

struct CheckReport {
  std::vector<SnapshotCheck> snapshots;
  std::vector<std::string> problems;  // repository-wide (unreadable index, ...)
  std::uint64_t blobs_checked = 0;
  std::uint64_t bytes_read = 0;
  bool ok() const;
};

/// Verifies every snapshot: it parses, every blob it needs is listed, and (read_data) every
/// needed pack/blob is downloaded and each blob's id recomputed. Problems are in the report; the
/// Result fails only when the destination cannot be read at all (or the key is wrong).
struct CheckOptions : RepoOptions {
  bool read_data = true;
};
Result<CheckReport> check(const Destination& dest, const CheckOptions& opts);

struct PruneReport {
  std::vector<SnapshotInfo> kept;
  std::vector<SnapshotInfo> removed;
  std::uint64_t objects_deleted = 0;  // snapshots, packs, blobs, old index objects
  std::uint64_t bytes_freed = 0;
};

struct PruneOptions : RepoOptions {
  bool dry_run = false;
};

/// Applies `keep` per workspace, then deletes the packs and blobs no remaining snapshot needs
/// (packs younger than 1 h that no index lists are left alone: a backup may be writing them)
/// and rewrites the index as one object. Mirror destinations: nothing to prune (an empty report).
Result<PruneReport> prune(const Destination& dest, const Keep& keep, const PruneOptions& opts);

/// Which snapshots `keep` retains, given their UTC times in id order (equal times: the later
/// one is the newer). Buckets are UTC hours, days, ISO weeks and months. Pure; exposed for tests.
std::vector<bool> keep_mask(const std::vector<std::time_t>& times, const Keep& keep);

}  // namespace ck::backup
