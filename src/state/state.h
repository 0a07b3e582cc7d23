#pragma once
// The daemon's state store: one SQLite file in the data directory holding status history,
// dashboard/WebSocket sessions, activity times, settings and a persistent job queue (start,
// stop, cleanup... with retries, exponential backoff and a dead-letter state).
//
// Threads: one StateDb may be used from several threads; an internal mutex serialises every
// call, and every call blocks on disk I/O, so callers on an io_context post to a blocking pool.
// Several processes may open the same file (WAL mode, 5 s busy timeout), e.g. the CLI next to
// the daemon; the job queue's state transitions are atomic, so a job is claimed at most once.
//
// The database is never the truth about which workspaces exist: that is storage plus the
// runtime's labels. The `workspaces` table is only a cache of the last known type and status.
// Losing or deleting the file loses history, sessions, activity, settings and pending jobs,
// but no workspace.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace ck {

/// queued -> running (claim) -> done (complete) | queued again (fail, with backoff) | dead (fail
/// on the last attempt). Unfinished jobs (queued, running) may become cancelled.
enum class JobState { queued, running, done, dead, cancelled };

/// "queued", "running", "done", "dead", "cancelled".
std::string_view job_state_name(JobState s);
/// The inverse of job_state_name; nullopt for any other text.
std::optional<JobState> parse_job_state(std::string_view name);

struct Job {
  std::int64_t id = 0;
  std::string kind;       // "start", "stop", "cleanup"...
  std::string workspace;  // may be empty for global jobs
  std::string payload;    // JSON text, opaque to the store
  JobState state = JobState::queued;
  int attempts = 0;  // how many times it was claimed (started)
  int max_attempts = 5;
  std::int64_t next_run_ms = 0;  // unix epoch ms: not run before this
  std::string last_error;
  std::int64_t created_ms = 0, updated_ms = 0;
};

struct JobPolicy {
  int max_attempts = 5;
  // Delay after the 1st failure; it doubles with each further failure, up to backoff_cap.
  std::chrono::milliseconds backoff_base{1000};
  std::chrono::milliseconds backoff_cap{300000};
};

struct StatusChange {
  std::string workspace, status, reason;
  std::int64_t at_ms = 0;
};

struct JobFilter {
  std::optional<JobState> state;
  std::string workspace;       // empty = every workspace
  int limit = 100;             // 1..1000
  std::int64_t before_id = 0;  // 0 = newest; else only ids < before_id (pagination)
};

// Auth records: the rows behind src/auth (which owns the logic: hashing, scopes, expiry).
// No secret is ever stored: token and login-session ids only as SHA-256 (hex), passwords only as
// argon2id encoded strings. Times are unix epoch ms; 0 means "never" / "not".
struct TokenRecord {
  std::string id;      // "tok_..."; public, names the token in lists and the audit log
  std::string kind;    // "token" (an API token) or "admin" (the admin token)
  std::string name;    // what its creator called it
  std::string hash;    // hex SHA-256 of the plaintext; unique
  std::string scopes;  // "read", "deploy", "admin", comma-separated
  std::int64_t created_ms = 0, last_used_ms = 0, expires_ms = 0, revoked_ms = 0;
  std::string user_id;  // the user who made it ("" = the admin token or a token it made)
};

struct UserRecord {
  std::string id;             // "usr_..."
  std::string name;           // unique
  std::string password_hash;  // argon2id encoded string: $argon2id$v=19$m=..,t=..,p=..$salt$hash
  std::string role;           // "admin" or "member"
  std::int64_t created_ms = 0;
};

struct LoginSessionRecord {
  std::string hash;     // hex SHA-256 of the session id (the cookie value)
  std::string user_id;  // deleting the user deletes its sessions
  std::int64_t created_ms = 0, expires_ms = 0, last_seen_ms = 0;
};

struct AuditRecord {
  std::int64_t id = 0;  // assigned on append; increasing
  std::int64_t at_ms = 0;
  std::string principal;  // who: "admin", "token:tok_...", "user:alice", "" when anonymous
  std::string action;     // what: "workspace.delete", "login.failed"...
  std::string target;     // on what: a workspace, a user, a token id
  std::string detail;     // JSON object text
  std::string ip;
};

struct WorkspaceOwner {
  std::string owner;  // a user id; empty = no owner (admins only, if private)
  bool is_public = true;
};

/// The SQLite state store. Owned by the daemon (one per data directory); thread-safe.
class StateDb {
 public:
  /// Opens (creating if needed) the database file and its parent directory; sets
  /// journal_mode=WAL, synchronous=NORMAL, busy_timeout 5000, foreign_keys on; runs the schema
  /// migrations (PRAGMA user_version, one transaction per migration). A file that is not a
  /// database or is corrupt, or whose schema is newer than this binary knows, fails with a
  /// message naming the file and saying what to do. ":memory:" gives a private in-memory store.
  static Result<std::unique_ptr<StateDb>> open(const std::filesystem::path& file);
  ~StateDb();
  StateDb(const StateDb&) = delete;
  StateDb& operator=(const StateDb&) = delete;

  int schema_version() const;
  const std::filesystem::path& file() const;
  std::int64_t now_ms() const;  // unix epoch ms (system clock); tests may override via set_clock
  void set_clock(std::function<std::int64_t()> clock);  // for tests of backoff timing

  // Workspaces: the last known type/status of each (a cache for history and the API, not the
  // truth). remove_workspace also forgets its activity time; its history is kept.
  Result<void> upsert_workspace(const std::string& name, const std::string& type,
                                const std::string& status);
  Result<void> remove_workspace(const std::string& name);
  Result<std::vector<std::string>> workspace_names();  // sorted

  // Status history (append-only, pruned to the newest 200 rows per workspace on insert).
  Result<void> record_status(const std::string& name, const std::string& status,
                             const std::string& reason);
  Result<std::vector<StatusChange>> history(const std::string& name, int limit);  // newest first

  // Activity: last activity time per workspace (unix ms), so idle timers survive restarts.
  Result<void> save_activity(const std::string& name, std::int64_t last_activity_ms);
  Result<std::map<std::string, std::int64_t>> load_activity();

  // Sessions: WebSocket/dashboard sessions.
  Result<std::int64_t> open_session(const std::string& workspace, const std::string& kind,
                                    const std::string& client);
  /// Closing a closed session is a no-op; an unknown id is Errc::not_found.
  Result<void> close_session(std::int64_t id);
  /// At startup: sessions left open by a previous run are closed; returns how many.
  Result<int> close_all_sessions();
  Result<int> open_sessions(const std::string& workspace);

  // Settings (key/value text).
  Result<std::optional<std::string>> setting(const std::string& key);
  Result<void> set_setting(const std::string& key, const std::string& value);

  // Jobs.
  /// Adds a job that may run from now+delay. If an unfinished (queued or running) job of the
  /// same kind for the same workspace exists, returns that one unchanged instead (no duplicate);
  /// pass dedupe=false to always add. The policy is stored with the job.
  Result<Job> enqueue(const std::string& kind, const std::string& workspace,
                      const std::string& payload, const JobPolicy& policy,
                      std::chrono::milliseconds delay = {}, bool dedupe = true);
  /// Queued jobs with next_run_ms <= now, oldest next_run first then id; at most `limit`.
  Result<std::vector<Job>> due_jobs(int limit);
  /// The earliest next_run_ms among queued jobs, if any (the runner sleeps until then).
  Result<std::optional<std::int64_t>> next_due_ms();
  /// Marks a queued job running and counts the attempt (attempts+1). Fails with
  /// Errc::already_exists if it is already running (another runner claimed it),
  /// Errc::invalid_argument if it is finished, Errc::not_found if there is no such job.
  Result<Job> claim(std::int64_t id);
  /// running -> done. Fails with Errc::invalid_argument if the job is not running (e.g. it was
  /// cancelled meanwhile: the runner drops its result).
  Result<Job> complete(std::int64_t id);
  /// running -> queued with next_run = now + min(cap, base * 2^(attempts-1)) and last_error set;
  /// or -> dead when attempts >= max_attempts. Uses the policy stored at enqueue.
  Result<Job> fail(std::int64_t id, const std::string& error);
  /// Unfinished jobs of kind+workspace -> cancelled (e.g. the workspace was removed). Returns
  /// how many.
  Result<int> cancel(const std::string& kind, const std::string& workspace);
  /// At startup: jobs left `running` by a killed process go back to queued, runnable now,
  /// attempts kept (they resume); those returned. A job that was on its last attempt goes to
  /// dead instead (so a job that crashes the daemon cannot loop forever) and is not returned.
  Result<std::vector<Job>> requeue_running();
  /// Puts a dead job back to queued, runnable now, with attempts reset to 0 (an operator's
  /// "retry"). Fails with Errc::already_exists if an unfinished job of the same kind for the same
  /// workspace exists, Errc::invalid_argument if the job is not dead.
  Result<Job> retry(std::int64_t id);
  Result<std::optional<Job>> job(std::int64_t id);
  Result<std::vector<Job>> jobs(const JobFilter& filter);  // newest (highest id) first
  Result<std::map<std::string, int>> job_counts();  // state name -> count, every state present
  /// Deletes done/cancelled jobs last updated more than `age` ago, keeping the newest `keep`
  /// done/cancelled jobs whatever their age. Dead jobs are kept for an operator. Returns how many.
  Result<int> prune_jobs(std::chrono::milliseconds age, int keep);

  // Housekeeping (the daemon's cleanup jobs).
  struct HistoryPrune {
    int sessions = 0;  // closed sessions that closed before the cut
    int statuses = 0;  // status history rows recorded before the cut
  };
  /// Deletes closed sessions closed before `before_ms` and status history recorded before it
  /// (open sessions always stay); with dry_run only counts them.
  Result<HistoryPrune> prune_history(std::int64_t before_ms, bool dry_run);
  /// The file's pages that hold nothing (PRAGMA freelist_count × page_size): what vacuum()
  /// would give back.
  Result<std::uint64_t> free_bytes();
  /// VACUUM: rewrites the file without its free pages. Returns how many bytes the database
  /// shrank by.
  Result<std::uint64_t> vacuum();

  // Auth records (see the structs above; src/auth holds the rules).
  /// Errc::already_exists when the id or the hash is taken.
  Result<void> insert_token(const TokenRecord& t);
  Result<std::optional<TokenRecord>> token_by_hash(const std::string& hash);
  Result<std::optional<TokenRecord>> token_by_id(const std::string& id);
  Result<std::vector<TokenRecord>> tokens();  // oldest (then first inserted) first, revoked too
  /// Sets revoked_ms (once; revoking a revoked token keeps the first time). Errc::not_found.
  Result<void> revoke_token(const std::string& id, std::int64_t at_ms);
  Result<void> touch_token(const std::string& id, std::int64_t at_ms);  // last_used_ms
  /// Stores `t` (kind "admin") as the admin token, atomically: with replace=false only when no
  /// unrevoked admin token exists (returns false, storing nothing, otherwise); with replace=true
  /// every other admin token row is deleted first. Returns whether `t` was stored.
  Result<bool> put_admin_token(const TokenRecord& t, bool replace);
  /// Errc::already_exists when the name (or id) is taken.
  Result<void> insert_user(const UserRecord& u);
  Result<std::optional<UserRecord>> user_by_name(const std::string& name);
  Result<std::optional<UserRecord>> user_by_id(const std::string& id);
  Result<std::vector<UserRecord>> users();  // by name
  Result<void> insert_login_session(const LoginSessionRecord& s);
  Result<std::optional<LoginSessionRecord>> login_session(const std::string& hash);
  Result<void> extend_login_session(const std::string& hash, std::int64_t expires_ms,
                                    std::int64_t last_seen_ms);
  Result<bool> delete_login_session(const std::string& hash);      // false when there was none
  Result<int> delete_expired_login_sessions(std::int64_t now_ms);  // how many
  /// Appends a row (a.id is ignored) and returns its id.
  Result<std::int64_t> append_audit(const AuditRecord& a);
  /// Newest first; before_id 0 = from the newest, else only ids < before_id. limit 1..1000.
  Result<std::vector<AuditRecord>> audit_log(int limit, std::int64_t before_id);
  /// nullopt when nobody set one (the workspace is then public by default).
  Result<std::optional<WorkspaceOwner>> workspace_owner(const std::string& workspace);
  Result<void> set_workspace_owner(const std::string& workspace, const WorkspaceOwner& o);

  /// Test hook: caps the file at its current size (PRAGMA max_page_count) so that the next write
  /// that needs a new page fails as on a full disk.
  Result<void> simulate_full_disk_for_testing();

 private:
  struct Impl;
  explicit StateDb(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ck
