// StateDb on SQLite. Every value goes through a bound parameter of a prepared (and cached)
// statement; every SQLite failure becomes an Errc::io Result naming the file. Multi-statement
// operations run in BEGIN IMMEDIATE transactions, so they are atomic also against another
// process using the same file; single-statement transitions use UPDATE ... RETURNING.

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <mutex>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "state/state.h"

namespace ck {
namespace {

constexpr int kHistoryKeep = 200;  // status_history rows kept per workspace
constexpr int kMaxListLimit = 1000;
constexpr int kBusyTimeoutMs = 5000;

// Schema migrations: entry i brings user_version from i to i+1. Append only; never edit one
// that has shipped.
const std::vector<std::string_view>& migrations() {
  static const std::vector<std::string_view> m = {
      R"sql(
CREATE TABLE workspaces (
  name TEXT PRIMARY KEY NOT NULL,
  type TEXT NOT NULL,
  status TEXT NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE TABLE status_history (
  id INTEGER PRIMARY KEY,
  workspace TEXT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT NOT NULL,
  at_ms INTEGER NOT NULL
);
CREATE INDEX status_history_by_workspace ON status_history (workspace, id);
CREATE TABLE activity (
  workspace TEXT PRIMARY KEY NOT NULL,
  last_ms INTEGER NOT NULL
);
CREATE TABLE sessions (
  id INTEGER PRIMARY KEY,
  workspace TEXT NOT NULL,
  kind TEXT NOT NULL,
  client TEXT NOT NULL,
  opened_ms INTEGER NOT NULL,
  closed_ms INTEGER NULL
);
CREATE INDEX sessions_by_workspace ON sessions (workspace, closed_ms);
CREATE TABLE settings (
  key TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL
);
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  workspace TEXT NOT NULL,
  payload TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead', 'cancelled')),
  attempts INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  backoff_base_ms INTEGER NOT NULL,
  backoff_cap_ms INTEGER NOT NULL,
  next_run_ms INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, next_run_ms);
CREATE INDEX jobs_by_kind ON jobs (kind, workspace, state);
)sql",
      // 2: auth (src/auth). Secrets only as hashes; see state.h "Auth records".
      R"sql(
CREATE TABLE auth_tokens (
  id TEXT PRIMARY KEY NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('token', 'admin')),
  name TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  scopes TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  last_used_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  revoked_ms INTEGER NOT NULL
);
CREATE TABLE users (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('admin', 'member')),
  created_ms INTEGER NOT NULL
);
CREATE TABLE login_sessions (
  hash TEXT PRIMARY KEY NOT NULL,
  user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL
);
CREATE INDEX login_sessions_by_expiry ON login_sessions (expires_ms);
CREATE INDEX login_sessions_by_user ON login_sessions (user_id);
CREATE TABLE audit (
  id INTEGER PRIMARY KEY,
  at_ms INTEGER NOT NULL,
  principal TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL,
  ip TEXT NOT NULL
);
CREATE TABLE workspace_owners (
  workspace TEXT PRIMARY KEY NOT NULL,
  owner TEXT NOT NULL,
  public INTEGER NOT NULL
);
)sql",
      // 3: a token made by a user is bound to that user (issue 13): it acts as them.
      R"sql(
ALTER TABLE auth_tokens ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
CREATE INDEX auth_tokens_by_user ON auth_tokens (user_id);
)sql",
  };
  return m;
}

constexpr std::string_view kMoveAside =
    "move it aside (or delete it) and restart; it holds only history, sessions, jobs and "
    "settings, and workspaces are rebuilt from storage";

// What to do about a failure, by primary result code (the message already names the file).
std::string advice(int rc) {
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return "the disk (or quota) holding it is full; free some space, then retry";
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return fmt::format(
          "another process has held its lock for over {} s; check for a stuck cloudyknight "
          "using the same data directory",
          kBusyTimeoutMs / 1000);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return fmt::format("the file is corrupt or not a database; {}", kMoveAside);
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN:
    case SQLITE_AUTH:
      return "check that it is a regular file and that it and its directory are writable by "
             "this user";
    case SQLITE_IOERR:
      return "check the disk holding it (dmesg) and its free space";
    default:
      return "";
  }
}

constexpr std::string_view kJobColumns =
    "id, kind, workspace, payload, state, attempts, max_attempts, next_run_ms, last_error, "
    "created_ms, updated_ms";

std::int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// min(cap, base * 2^(attempts-1)) without overflow.
std::int64_t backoff_ms(std::int64_t base, std::int64_t cap, int attempts) {
  std::int64_t d = std::max<std::int64_t>(base, 0);
  for (int i = 1; i < attempts && d < cap; ++i) {
    d *= 2;
  }
  return std::min(d, cap);
}

}  // namespace

std::string_view job_state_name(JobState s) {
  switch (s) {
    case JobState::queued:
      return "queued";
    case JobState::running:
      return "running";
    case JobState::done:
      return "done";
    case JobState::dead:
      return "dead";
    case JobState::cancelled:
      return "cancelled";
  }
  return "queued";
}

std::optional<JobState> parse_job_state(std::string_view name) {
  for (auto s :
       {JobState::queued, JobState::running, JobState::done, JobState::dead, JobState::cancelled}) {
    if (job_state_name(s) == name) {
      return s;
    }
  }
  return std::nullopt;
}

// A cached prepared statement in use: bind, step, read; reset when it goes out of scope (so a
// read never keeps its snapshot open).
class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  Stmt(Stmt&& o) noexcept : s_(std::exchange(o.s_, nullptr)), bind_rc_(o.bind_rc_) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& operator=(Stmt&&) = delete;
  ~Stmt() {
    if (s_) {
      sqlite3_reset(s_);
      sqlite3_clear_bindings(s_);
    }
  }

  Stmt& bind(int i, std::int64_t v) { return check(sqlite3_bind_int64(s_, i, v)); }
  Stmt& bind(int i, int v) { return check(sqlite3_bind_int64(s_, i, v)); }
  Stmt& bind(int i, std::string_view v) {
    return check(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  Stmt& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Stmt& bind(int i, const char* v) { return bind(i, std::string_view(v)); }

  /// SQLITE_ROW, SQLITE_DONE or an error code (also a failed bind).
  int step() { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(s_); }

  std::int64_t i64(int col) const { return sqlite3_column_int64(s_, col); }
  bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col))) : "";
  }

 private:
  Stmt& check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) {
      bind_rc_ = rc;
    }
    return *this;
  }
  sqlite3_stmt* s_;
  int bind_rc_ = SQLITE_OK;
};

struct StateDb::Impl {
  sqlite3* db = nullptr;
  std::filesystem::path file;
  std::string name;  // file as text, for messages
  int version = 0;
  std::function<std::int64_t()> clock;
  mutable std::mutex mu;
  std::unordered_map<std::string, sqlite3_stmt*> cache;

  ~Impl() {
    for (auto& [sql, s] : cache) {
      sqlite3_finalize(s);
    }
    if (db) {
      if (version > 0) {  // opened fine: refresh the planner's statistics where useful
        sqlite3_exec(db, "PRAGMA optimize", nullptr, nullptr, nullptr);
      }
      sqlite3_close_v2(db);
    }
  }

  // BEGIN IMMEDIATE ... COMMIT; rolls back when left without commit().
  class Tx {
   public:
    explicit Tx(Impl& d) : d_(d) {}
    Tx(const Tx&) = delete;
    Tx& operator=(const Tx&) = delete;
    ~Tx() {
      if (open_ && !sqlite3_get_autocommit(d_.db)) {
        sqlite3_exec(d_.db, "ROLLBACK", nullptr, nullptr, nullptr);
      }
    }
    Result<void> begin() {
      BOOST_OUTCOME_TRY(d_.exec("BEGIN IMMEDIATE", "starting a transaction"));
      open_ = true;
      return outcome::success();
    }
    Result<void> commit() {
      BOOST_OUTCOME_TRY(d_.exec("COMMIT", "committing a transaction"));
      open_ = false;
      return outcome::success();
    }

   private:
    Impl& d_;
    bool open_ = false;
  };

  std::int64_t now() const { return clock ? clock() : system_now_ms(); }

  // The error for a failed call; reads sqlite3_errmsg, so call it right after the failure.
  Error error(int rc, std::string_view what) const {
    std::string detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    std::string msg = fmt::format("state database {}: {} failed: {}", name, what, detail);
    if (auto a = advice(rc); !a.empty()) {
      msg += "; " + a;
    }
    return Error{Errc::io, std::move(msg)};
  }

  Result<Stmt> prepare(const std::string& sql, std::string_view what = "preparing a statement") {
    auto it = cache.find(sql);
    if (it == cache.end()) {
      sqlite3_stmt* s = nullptr;
      int rc = sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()),
                                  SQLITE_PREPARE_PERSISTENT, &s, nullptr);
      if (rc != SQLITE_OK) {
        return outcome::failure(error(rc, what));
      }
      it = cache.emplace(sql, s).first;
    }
    return Stmt(it->second);
  }

  // Runs SQL without values (pragmas, DDL, transaction control).
  Result<void> exec(const char* sql, std::string_view what) {
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
      return outcome::failure(error(rc, what));
    }
    return outcome::success();
  }

  // Steps a statement that returns no rows (or ignores them).
  Result<void> run(Stmt& s, std::string_view what) {
    int rc = s.step();
    while (rc == SQLITE_ROW) {
      rc = s.step();
    }
    if (rc != SQLITE_DONE) {
      return outcome::failure(error(rc, what));
    }
    return outcome::success();
  }

  int changes() const { return sqlite3_changes(db); }

  Result<Job> read_job(const Stmt& s) const {
    Job j;
    j.id = s.i64(0);
    j.kind = s.text(1);
    j.workspace = s.text(2);
    j.payload = s.text(3);
    auto state_text = s.text(4);
    auto st = parse_job_state(state_text);
    if (!st) {
      return ck::fail(Errc::io, fmt::format("state database {}: job {} has unknown state '{}'; {}",
                                            name, j.id, state_text, kMoveAside));
    }
    j.state = *st;
    j.attempts = static_cast<int>(s.i64(5));
    j.max_attempts = static_cast<int>(s.i64(6));
    j.next_run_ms = s.i64(7);
    j.last_error = s.text(8);
    j.created_ms = s.i64(9);
    j.updated_ms = s.i64(10);
    return j;
  }

  // All rows of a statement selecting (or returning) kJobColumns.
  Result<std::vector<Job>> read_jobs(Stmt& s, std::string_view what) {
    std::vector<Job> out;
    int rc = s.step();
    for (; rc == SQLITE_ROW; rc = s.step()) {
      BOOST_OUTCOME_TRY(j, read_job(s));
      out.push_back(std::move(j));
    }
    if (rc != SQLITE_DONE) {
      return outcome::failure(error(rc, what));
    }
    return out;
  }

  Result<std::optional<Job>> read_one_job(Stmt& s, std::string_view what) {
    BOOST_OUTCOME_TRY(v, read_jobs(s, what));
    if (v.empty()) {
      return std::optional<Job>();
    }
    return std::optional<Job>(std::move(v.front()));
  }

  Result<std::optional<Job>> find_job(std::int64_t id) {
    BOOST_OUTCOME_TRY(s, prepare(fmt::format("SELECT {} FROM jobs WHERE id = ?", kJobColumns)));
    s.bind(1, id);
    return read_one_job(s, "reading a job");
  }

  // The error for a transition that matched no row: the job is missing or in another state.
  Result<Job> transition_error(std::int64_t id, JobState expected, std::string_view action) {
    BOOST_OUTCOME_TRY(j, find_job(id));
    if (!j) {
      return ck::fail(Errc::not_found,
                      fmt::format("job {} does not exist (pruned or never created); "
                                  "list jobs to find its id",
                                  id));
    }
    if (expected == JobState::queued && j->state == JobState::running) {
      return ck::fail(Errc::already_exists,
                      fmt::format("cannot {} job {} ({} {}): it is already running, claimed by "
                                  "another runner",
                                  action, id, j->kind, j->workspace));
    }
    return ck::fail(Errc::invalid_argument,
                    fmt::format("cannot {} job {} ({} {}): it is {}, not {}", action, id, j->kind,
                                j->workspace, job_state_name(j->state), job_state_name(expected)));
  }

  // The integer a PRAGMA such as "PRAGMA page_size" answers.
  Result<std::int64_t> pragma_value(const char* sql) {
    BOOST_OUTCOME_TRY(s, prepare(sql));
    int rc = s.step();
    if (rc != SQLITE_ROW) return outcome::failure(error(rc, std::string("reading ") + sql));
    return s.i64(0);
  }
};

namespace {

Result<void> check_name(std::string_view what, const std::string& v) {
  if (v.empty()) {
    return ck::fail(Errc::invalid_argument, fmt::format("{} must not be empty", what));
  }
  return outcome::success();
}

Result<void> check_limit(int limit) {
  if (limit < 1 || limit > kMaxListLimit) {
    return ck::fail(Errc::invalid_argument,
                    fmt::format("limit {} is out of range; use 1 to {}", limit, kMaxListLimit));
  }
  return outcome::success();
}

}  // namespace

StateDb::StateDb(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StateDb::~StateDb() = default;

Result<std::unique_ptr<StateDb>> StateDb::open(const std::filesystem::path& file) {
  auto d = std::make_unique<Impl>();
  d->file = file;
  d->name = file.string();
  const bool memory = d->name == ":memory:";
  if (!memory && file.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    if (ec) {
      return ck::fail(Errc::io, fmt::format("state database {}: cannot create its directory: {}; "
                                            "check the data directory setting and its permissions",
                                            d->name, ec.message()));
    }
  }
  int rc =
      sqlite3_open_v2(d->name.c_str(), &d->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    return outcome::failure(d->error(rc, "opening"));
  }
  sqlite3_extended_result_codes(d->db, 1);
  sqlite3_busy_timeout(d->db, kBusyTimeoutMs);

  // The first statement reads the header: a file that is not a database fails here.
  {
    BOOST_OUTCOME_TRY(s, d->prepare("PRAGMA journal_mode = WAL", "reading the file"));
    rc = s.step();
    if (rc != SQLITE_ROW) {
      return outcome::failure(d->error(rc, "switching to WAL mode"));
    }
    auto mode = s.text(0);
    if (mode != "wal" && !(memory && mode == "memory")) {
      return ck::fail(Errc::io,
                      fmt::format("state database {}: cannot use WAL mode (got '{}'); put "
                                  "the data directory on a local filesystem",
                                  d->name, mode));
    }
  }
  BOOST_OUTCOME_TRY(d->exec("PRAGMA synchronous = NORMAL", "setting synchronous"));
  BOOST_OUTCOME_TRY(d->exec("PRAGMA foreign_keys = ON", "enabling foreign keys"));

  const auto& m = migrations();
  const int known = static_cast<int>(m.size());
  auto read_version = [&]() -> Result<int> {
    BOOST_OUTCOME_TRY(s, d->prepare("PRAGMA user_version"));
    int r = s.step();
    if (r != SQLITE_ROW) {
      return outcome::failure(d->error(r, "reading the schema version"));
    }
    return static_cast<int>(s.i64(0));
  };
  auto too_new = [&](int v) {
    return ck::fail(
        Errc::io, fmt::format("state database {}: its schema version {} is newer than this "
                              "cloudyknight knows ({}); run the newer version that wrote it, or {}",
                              d->name, v, known, kMoveAside));
  };
  BOOST_OUTCOME_TRY(first_version, read_version());
  int version = first_version;
  if (version > known) {
    return too_new(version);
  }
  while (version < known) {
    // One transaction per migration; re-read the version inside it in case another process
    // migrated meanwhile.
    Impl::Tx tx(*d);
    BOOST_OUTCOME_TRY(tx.begin());
    BOOST_OUTCOME_TRY(current, read_version());
    version = current;
    if (version > known) {
      return too_new(version);
    }
    if (version == known) {
      break;
    }
    const std::string sql(m[static_cast<std::size_t>(version)]);
    BOOST_OUTCOME_TRY(d->exec(sql.c_str(), fmt::format("schema migration {}", version + 1)));
    // PRAGMA takes no parameters; the value is our own constant.
    const std::string set_version = fmt::format("PRAGMA user_version = {}", version + 1);
    BOOST_OUTCOME_TRY(d->exec(set_version.c_str(), "setting the schema version"));
    BOOST_OUTCOME_TRY(tx.commit());
    ++version;
  }
  d->version = version;
  return std::unique_ptr<StateDb>(new StateDb(std::move(d)));
}

int StateDb::schema_version() const { return impl_->version; }

const std::filesystem::path& StateDb::file() const { return impl_->file; }

std::int64_t StateDb::now_ms() const {
  std::lock_guard lock(impl_->mu);
  return impl_->now();
}

void StateDb::set_clock(std::function<std::int64_t()> clock) {
  std::lock_guard lock(impl_->mu);
  impl_->clock = std::move(clock);
}

Result<void> StateDb::simulate_full_disk_for_testing() {
  std::lock_guard lock(impl_->mu);
  // max_page_count cannot go below the current size, so 1 means "exactly as big as now".
  return impl_->exec("PRAGMA max_page_count = 1", "capping the file size");
}

// ---- workspaces ----

Result<void> StateDb::upsert_workspace(const std::string& name, const std::string& type,
                                       const std::string& status) {
  BOOST_OUTCOME_TRY(check_name("workspace name", name));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("INSERT INTO workspaces (name, type, status, updated_ms) "
                                 "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET "
                                 "type = excluded.type, status = excluded.status, "
                                 "updated_ms = excluded.updated_ms"));
  s.bind(1, name).bind(2, type).bind(3, status).bind(4, d.now());
  return d.run(s, fmt::format("saving workspace {}", name));
}

Result<void> StateDb::remove_workspace(const std::string& name) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  Impl::Tx tx(d);
  BOOST_OUTCOME_TRY(tx.begin());
  for (const char* sql : {"DELETE FROM workspaces WHERE name = ?",
                          "DELETE FROM activity WHERE "
                          "workspace = ?"}) {
    BOOST_OUTCOME_TRY(s, d.prepare(sql));
    s.bind(1, name);
    BOOST_OUTCOME_TRY(d.run(s, fmt::format("removing workspace {}", name)));
  }
  return tx.commit();
}

Result<std::vector<std::string>> StateDb::workspace_names() {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("SELECT name FROM workspaces ORDER BY name"));
  std::vector<std::string> out;
  int rc = s.step();
  for (; rc == SQLITE_ROW; rc = s.step()) {
    out.push_back(s.text(0));
  }
  if (rc != SQLITE_DONE) {
    return outcome::failure(d.error(rc, "listing workspaces"));
  }
  return out;
}

// ---- status history ----

Result<void> StateDb::record_status(const std::string& name, const std::string& status,
                                    const std::string& reason) {
  BOOST_OUTCOME_TRY(check_name("workspace name", name));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  Impl::Tx tx(d);
  BOOST_OUTCOME_TRY(tx.begin());
  {
    BOOST_OUTCOME_TRY(s, d.prepare("INSERT INTO status_history (workspace, status, reason, "
                                   "at_ms) VALUES (?, ?, ?, ?)"));
    s.bind(1, name).bind(2, status).bind(3, reason).bind(4, d.now());
    BOOST_OUTCOME_TRY(d.run(s, fmt::format("recording the status of {}", name)));
  }
  {
    // Everything at or below the kHistoryKeep-th newest id goes (nothing if there are fewer).
    BOOST_OUTCOME_TRY(s, d.prepare("DELETE FROM status_history WHERE workspace = ?1 AND "
                                   "id <= (SELECT id FROM status_history WHERE workspace = "
                                   "?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)"));
    s.bind(1, name).bind(2, kHistoryKeep);
    BOOST_OUTCOME_TRY(d.run(s, fmt::format("pruning the history of {}", name)));
  }
  return tx.commit();
}

Result<std::vector<StatusChange>> StateDb::history(const std::string& name, int limit) {
  BOOST_OUTCOME_TRY(check_limit(limit));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("SELECT workspace, status, reason, at_ms FROM "
                                 "status_history WHERE workspace = ? ORDER BY id DESC "
                                 "LIMIT ?"));
  s.bind(1, name).bind(2, limit);
  std::vector<StatusChange> out;
  int rc = s.step();
  for (; rc == SQLITE_ROW; rc = s.step()) {
    out.push_back(StatusChange{s.text(0), s.text(1), s.text(2), s.i64(3)});
  }
  if (rc != SQLITE_DONE) {
    return outcome::failure(d.error(rc, fmt::format("reading the history of {}", name)));
  }
  return out;
}

// ---- activity ----

Result<void> StateDb::save_activity(const std::string& name, std::int64_t last_activity_ms) {
  BOOST_OUTCOME_TRY(check_name("workspace name", name));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("INSERT INTO activity (workspace, last_ms) VALUES (?, ?) "
                                 "ON CONFLICT (workspace) DO UPDATE SET "
                                 "last_ms = excluded.last_ms"));
  s.bind(1, name).bind(2, last_activity_ms);
  return d.run(s, fmt::format("saving the activity of {}", name));
}

Result<std::map<std::string, std::int64_t>> StateDb::load_activity() {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("SELECT workspace, last_ms FROM activity"));
  std::map<std::string, std::int64_t> out;
  int rc = s.step();
  for (; rc == SQLITE_ROW; rc = s.step()) {
    out[s.text(0)] = s.i64(1);
  }
  if (rc != SQLITE_DONE) {
    return outcome::failure(d.error(rc, "loading activity times"));
  }
  return out;
}

// ---- sessions ----

Result<std::int64_t> StateDb::open_session(const std::string& workspace, const std::string& kind,
                                           const std::string& client) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("INSERT INTO sessions (workspace, kind, client, opened_ms) "
                                 "VALUES (?, ?, ?, ?) RETURNING id"));
  s.bind(1, workspace).bind(2, kind).bind(3, client).bind(4, d.now());
  int rc = s.step();
  if (rc != SQLITE_ROW) {
    return outcome::failure(d.error(rc, "recording a session"));
  }
  std::int64_t id = s.i64(0);
  BOOST_OUTCOME_TRY(d.run(s, "recording a session"));
  return id;
}

Result<void> StateDb::close_session(std::int64_t id) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  {
    BOOST_OUTCOME_TRY(s, d.prepare("UPDATE sessions SET closed_ms = ? WHERE id = ? AND "
                                   "closed_ms IS NULL"));
    s.bind(1, d.now()).bind(2, id);
    BOOST_OUTCOME_TRY(d.run(s, fmt::format("closing session {}", id)));
    if (d.changes() > 0) {
      return outcome::success();
    }
  }
  BOOST_OUTCOME_TRY(s, d.prepare("SELECT 1 FROM sessions WHERE id = ?"));
  s.bind(1, id);
  int rc = s.step();
  if (rc == SQLITE_ROW) {
    return outcome::success();  // already closed
  }
  if (rc != SQLITE_DONE) {
    return outcome::failure(d.error(rc, fmt::format("closing session {}", id)));
  }
  return ck::fail(Errc::not_found, fmt::format("session {} does not exist", id));
}

Result<int> StateDb::close_all_sessions() {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("UPDATE sessions SET closed_ms = ? WHERE closed_ms IS NULL"));
  s.bind(1, d.now());
  BOOST_OUTCOME_TRY(d.run(s, "closing the sessions of the previous run"));
  return d.changes();
}

Result<int> StateDb::open_sessions(const std::string& workspace) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("SELECT COUNT(*) FROM sessions WHERE workspace = ? AND "
                                 "closed_ms IS NULL"));
  s.bind(1, workspace);
  int rc = s.step();
  if (rc != SQLITE_ROW) {
    return outcome::failure(d.error(rc, fmt::format("counting the sessions of {}", workspace)));
  }
  return static_cast<int>(s.i64(0));
}

// ---- settings ----

Result<std::optional<std::string>> StateDb::setting(const std::string& key) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("SELECT value FROM settings WHERE key = ?"));
  s.bind(1, key);
  int rc = s.step();
  if (rc == SQLITE_ROW) {
    return std::optional<std::string>(s.text(0));
  }
  if (rc != SQLITE_DONE) {
    return outcome::failure(d.error(rc, fmt::format("reading setting {}", key)));
  }
  return std::optional<std::string>();
}

Result<void> StateDb::set_setting(const std::string& key, const std::string& value) {
  BOOST_OUTCOME_TRY(check_name("setting key", key));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("INSERT INTO settings (key, value) VALUES (?, ?) "
                                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value"));
  s.bind(1, key).bind(2, value);
  return d.run(s, fmt::format("saving setting {}", key));
}

// ---- jobs ----

Result<Job> StateDb::enqueue(const std::string& kind, const std::string& workspace,
                             const std::string& payload, const JobPolicy& policy,
                             std::chrono::milliseconds delay, bool dedupe) {
  BOOST_OUTCOME_TRY(check_name("job kind", kind));
  if (policy.max_attempts < 1 || policy.backoff_base.count() < 0 ||
      policy.backoff_cap.count() < 0 || delay.count() < 0) {
    return ck::fail(Errc::invalid_argument,
                    fmt::format("job {} {}: max_attempts must be at least 1 and backoff and delay "
                                "must not be negative",
                                kind, workspace));
  }
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  Impl::Tx tx(d);
  BOOST_OUTCOME_TRY(tx.begin());
  if (dedupe) {
    BOOST_OUTCOME_TRY(
        s, d.prepare(fmt::format("SELECT {} FROM jobs WHERE kind = ? AND workspace = ? AND "
                                 "state IN ('queued', 'running') ORDER BY id LIMIT 1",
                                 kJobColumns)));
    s.bind(1, kind).bind(2, workspace);
    BOOST_OUTCOME_TRY(existing, d.read_one_job(s, "looking for a duplicate job"));
    if (existing) {
      BOOST_OUTCOME_TRY(tx.commit());
      return std::move(*existing);
    }
  }
  const std::int64_t now = d.now();
  BOOST_OUTCOME_TRY(
      s, d.prepare(fmt::format("INSERT INTO jobs (kind, workspace, payload, state, attempts, "
                               "max_attempts, backoff_base_ms, backoff_cap_ms, next_run_ms, "
                               "last_error, created_ms, updated_ms) VALUES (?, ?, ?, 'queued', "
                               "0, ?, ?, ?, ?, '', ?, ?) RETURNING {}",
                               kJobColumns)));
  s.bind(1, kind)
      .bind(2, workspace)
      .bind(3, payload)
      .bind(4, policy.max_attempts)
      .bind(5, static_cast<std::int64_t>(policy.backoff_base.count()))
      .bind(6, static_cast<std::int64_t>(policy.backoff_cap.count()))
      .bind(7, now + static_cast<std::int64_t>(delay.count()))
      .bind(8, now)
      .bind(9, now);
  BOOST_OUTCOME_TRY(job, d.read_one_job(s, fmt::format("adding job {} {}", kind, workspace)));
  BOOST_OUTCOME_TRY(tx.commit());
  return std::move(*job);
}

Result<std::vector<Job>> StateDb::due_jobs(int limit) {
  BOOST_OUTCOME_TRY(check_limit(limit));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(
      s, d.prepare(fmt::format("SELECT {} FROM jobs WHERE state = 'queued' AND next_run_ms <= ? "
                               "ORDER BY next_run_ms, id LIMIT ?",
                               kJobColumns)));
  s.bind(1, d.now()).bind(2, limit);
  return d.read_jobs(s, "listing due jobs");
}

Result<std::optional<std::int64_t>> StateDb::next_due_ms() {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("SELECT MIN(next_run_ms) FROM jobs WHERE state = 'queued'"));
  int rc = s.step();
  if (rc != SQLITE_ROW) {
    return outcome::failure(d.error(rc, "finding the next due job"));
  }
  if (s.is_null(0)) {
    return std::optional<std::int64_t>();
  }
  return std::optional<std::int64_t>(s.i64(0));
}

Result<Job> StateDb::claim(std::int64_t id) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  // One statement, so atomic against every other connection too.
  BOOST_OUTCOME_TRY(
      s, d.prepare(fmt::format("UPDATE jobs SET state = 'running', attempts = attempts + 1, "
                               "updated_ms = ? WHERE id = ? AND state = 'queued' RETURNING {}",
                               kJobColumns)));
  s.bind(1, d.now()).bind(2, id);
  BOOST_OUTCOME_TRY(j, d.read_one_job(s, fmt::format("claiming job {}", id)));
  if (j) {
    return std::move(*j);
  }
  return d.transition_error(id, JobState::queued, "claim");
}

Result<Job> StateDb::complete(std::int64_t id) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(
      s, d.prepare(fmt::format("UPDATE jobs SET state = 'done', updated_ms = ? WHERE id = ? AND "
                               "state = 'running' RETURNING {}",
                               kJobColumns)));
  s.bind(1, d.now()).bind(2, id);
  BOOST_OUTCOME_TRY(j, d.read_one_job(s, fmt::format("completing job {}", id)));
  if (j) {
    return std::move(*j);
  }
  return d.transition_error(id, JobState::running, "complete");
}

Result<Job> StateDb::fail(std::int64_t id, const std::string& error) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  Impl::Tx tx(d);
  BOOST_OUTCOME_TRY(tx.begin());
  std::int64_t attempts = 0, max_attempts = 0, base = 0, cap = 0;
  {
    BOOST_OUTCOME_TRY(s, d.prepare("SELECT attempts, max_attempts, backoff_base_ms, "
                                   "backoff_cap_ms FROM jobs WHERE id = ? AND "
                                   "state = 'running'"));
    s.bind(1, id);
    int rc = s.step();
    if (rc == SQLITE_DONE) {
      return d.transition_error(id, JobState::running, "fail");
    }
    if (rc != SQLITE_ROW) {
      return outcome::failure(d.error(rc, fmt::format("failing job {}", id)));
    }
    attempts = s.i64(0);
    max_attempts = s.i64(1);
    base = s.i64(2);
    cap = s.i64(3);
  }
  const std::int64_t now = d.now();
  const bool dead = attempts >= max_attempts;
  const std::int64_t next = dead ? now : now + backoff_ms(base, cap, static_cast<int>(attempts));
  BOOST_OUTCOME_TRY(
      s, d.prepare(fmt::format("UPDATE jobs SET state = ?, next_run_ms = ?, last_error = ?, "
                               "updated_ms = ? WHERE id = ? RETURNING {}",
                               kJobColumns)));
  s.bind(1, job_state_name(dead ? JobState::dead : JobState::queued))
      .bind(2, next)
      .bind(3, error)
      .bind(4, now)
      .bind(5, id);
  BOOST_OUTCOME_TRY(j, d.read_one_job(s, fmt::format("failing job {}", id)));
  BOOST_OUTCOME_TRY(tx.commit());
  return std::move(*j);
}

Result<int> StateDb::cancel(const std::string& kind, const std::string& workspace) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("UPDATE jobs SET state = 'cancelled', updated_ms = ? "
                                 "WHERE kind = ? AND workspace = ? AND "
                                 "state IN ('queued', 'running')"));
  s.bind(1, d.now()).bind(2, kind).bind(3, workspace);
  BOOST_OUTCOME_TRY(d.run(s, fmt::format("cancelling {} jobs of {}", kind, workspace)));
  return d.changes();
}

Result<std::vector<Job>> StateDb::requeue_running() {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  const std::int64_t now = d.now();
  Impl::Tx tx(d);
  BOOST_OUTCOME_TRY(tx.begin());
  {
    BOOST_OUTCOME_TRY(s, d.prepare("UPDATE jobs SET state = 'dead', updated_ms = ?1, "
                                   "last_error = 'the daemon stopped during its last "
                                   "attempt (' || attempts || ' of ' || max_attempts || "
                                   "'); retry it once the cause is fixed' "
                                   "WHERE state = 'running' AND attempts >= max_attempts"));
    s.bind(1, now);
    BOOST_OUTCOME_TRY(d.run(s, "moving interrupted jobs on their last attempt to dead"));
  }
  BOOST_OUTCOME_TRY(s, d.prepare(fmt::format("UPDATE jobs SET state = 'queued', next_run_ms = ?1, "
                                             "updated_ms = ?1 WHERE state = 'running' RETURNING {}",
                                             kJobColumns)));
  s.bind(1, now);
  BOOST_OUTCOME_TRY(out, d.read_jobs(s, "requeueing interrupted jobs"));
  BOOST_OUTCOME_TRY(tx.commit());
  std::sort(out.begin(), out.end(), [](const Job& a, const Job& b) { return a.id < b.id; });
  return out;
}

Result<Job> StateDb::retry(std::int64_t id) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  Impl::Tx tx(d);
  BOOST_OUTCOME_TRY(tx.begin());
  BOOST_OUTCOME_TRY(j, d.find_job(id));
  if (!j || j->state != JobState::dead) {
    return d.transition_error(id, JobState::dead, "retry");
  }
  {
    BOOST_OUTCOME_TRY(s, d.prepare("SELECT id FROM jobs WHERE kind = ? AND workspace = ? "
                                   "AND state IN ('queued', 'running') LIMIT 1"));
    s.bind(1, j->kind).bind(2, j->workspace);
    int rc = s.step();
    if (rc == SQLITE_ROW) {
      return ck::fail(
          Errc::already_exists,
          fmt::format("cannot retry job {}: job {} ({} {}) is already pending; wait for "
                      "it instead",
                      id, s.i64(0), j->kind, j->workspace));
    }
    if (rc != SQLITE_DONE) {
      return outcome::failure(d.error(rc, fmt::format("retrying job {}", id)));
    }
  }
  const std::int64_t now = d.now();
  BOOST_OUTCOME_TRY(
      s, d.prepare(fmt::format("UPDATE jobs SET state = 'queued', attempts = 0, next_run_ms = ?1, "
                               "updated_ms = ?1 WHERE id = ?2 RETURNING {}",
                               kJobColumns)));
  s.bind(1, now).bind(2, id);
  BOOST_OUTCOME_TRY(out, d.read_one_job(s, fmt::format("retrying job {}", id)));
  BOOST_OUTCOME_TRY(tx.commit());
  return std::move(*out);
}

Result<std::optional<Job>> StateDb::job(std::int64_t id) {
  std::lock_guard lock(impl_->mu);
  return impl_->find_job(id);
}

Result<std::vector<Job>> StateDb::jobs(const JobFilter& filter) {
  BOOST_OUTCOME_TRY(check_limit(filter.limit));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  // The SQL text depends only on which filters are set; values are bound.
  std::string sql = fmt::format("SELECT {} FROM jobs WHERE 1", kJobColumns);
  if (filter.state) {
    sql += " AND state = :state";
  }
  if (!filter.workspace.empty()) {
    sql += " AND workspace = :workspace";
  }
  if (filter.before_id > 0) {
    sql += " AND id < :before";
  }
  sql += " ORDER BY id DESC LIMIT :limit";
  BOOST_OUTCOME_TRY(s, d.prepare(sql));
  int i = 1;
  if (filter.state) {
    s.bind(i++, job_state_name(*filter.state));
  }
  if (!filter.workspace.empty()) {
    s.bind(i++, filter.workspace);
  }
  if (filter.before_id > 0) {
    s.bind(i++, filter.before_id);
  }
  s.bind(i, filter.limit);
  return d.read_jobs(s, "listing jobs");
}

Result<std::map<std::string, int>> StateDb::job_counts() {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  std::map<std::string, int> out;
  for (auto st :
       {JobState::queued, JobState::running, JobState::done, JobState::dead, JobState::cancelled}) {
    out[std::string(job_state_name(st))] = 0;
  }
  BOOST_OUTCOME_TRY(s, d.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state"));
  int rc = s.step();
  for (; rc == SQLITE_ROW; rc = s.step()) {
    out[s.text(0)] = static_cast<int>(s.i64(1));
  }
  if (rc != SQLITE_DONE) {
    return outcome::failure(d.error(rc, "counting jobs"));
  }
  return out;
}

Result<int> StateDb::prune_jobs(std::chrono::milliseconds age, int keep) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("DELETE FROM jobs WHERE state IN ('done', 'cancelled') AND "
                                 "updated_ms < ?1 AND id NOT IN (SELECT id FROM jobs WHERE "
                                 "state IN ('done', 'cancelled') ORDER BY id DESC LIMIT ?2)"));
  s.bind(1, d.now() - static_cast<std::int64_t>(age.count())).bind(2, std::max(keep, 0));
  BOOST_OUTCOME_TRY(d.run(s, "pruning finished jobs"));
  return d.changes();
}

// ---- housekeeping ----

Result<StateDb::HistoryPrune> StateDb::prune_history(std::int64_t before_ms, bool dry_run) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  HistoryPrune out;
  auto count = [&](const char* sql, int& into) -> Result<void> {
    BOOST_OUTCOME_TRY(s, d.prepare(sql));
    s.bind(1, before_ms);
    int rc = s.step();
    if (rc != SQLITE_ROW) return outcome::failure(d.error(rc, "counting old history"));
    into = static_cast<int>(s.i64(0));
    return outcome::success();
  };
  if (dry_run) {
    BOOST_OUTCOME_TRY(count("SELECT COUNT(*) FROM sessions WHERE closed_ms IS NOT NULL AND closed_ms < ?", out.sessions));
    BOOST_OUTCOME_TRY(count("SELECT COUNT(*) FROM status_history WHERE at_ms < ?", out.statuses));
    return out;
  }
  Impl::Tx tx(d);
  BOOST_OUTCOME_TRY(tx.begin());
  {
    BOOST_OUTCOME_TRY(s, d.prepare("DELETE FROM sessions WHERE closed_ms IS NOT NULL AND closed_ms < ?"));
    s.bind(1, before_ms);
    BOOST_OUTCOME_TRY(d.run(s, "deleting old sessions"));
    out.sessions = d.changes();
  }
  {
    BOOST_OUTCOME_TRY(s, d.prepare("DELETE FROM status_history WHERE at_ms < ?"));
    s.bind(1, before_ms);
    BOOST_OUTCOME_TRY(d.run(s, "deleting old status history"));
    out.statuses = d.changes();
  }
  BOOST_OUTCOME_TRY(tx.commit());
  return out;
}

Result<std::uint64_t> StateDb::free_bytes() {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(free, d.pragma_value("PRAGMA freelist_count"));
  BOOST_OUTCOME_TRY(page, d.pragma_value("PRAGMA page_size"));
  return static_cast<std::uint64_t>(free * page);
}

Result<std::uint64_t> StateDb::vacuum() {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(before, d.pragma_value("PRAGMA page_count"));
  BOOST_OUTCOME_TRY(page, d.pragma_value("PRAGMA page_size"));
  char* err = nullptr;
  int rc = sqlite3_exec(d.db, "VACUUM", nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string why = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return ck::fail(Errc::io, fmt::format("{}: VACUUM failed: {} (free disk space of about the database's "
                                          "size is needed; it is tried again at the next cleanup)",
                                          d.name, why));
  }
  // The WAL holds the rewritten pages until a checkpoint; truncate it so the space shows.
  sqlite3_wal_checkpoint_v2(d.db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  BOOST_OUTCOME_TRY(after, d.pragma_value("PRAGMA page_count"));
  return static_cast<std::uint64_t>(std::max<std::int64_t>(before - after, 0) * page);
}

// ---- auth records ----

namespace {

constexpr std::string_view kTokenColumns =
    "id, kind, name, hash, scopes, created_ms, last_used_ms, expires_ms, revoked_ms, user_id";
constexpr std::string_view kUserColumns = "id, name, password_hash, role, created_ms";
constexpr std::string_view kLoginSessionColumns =
    "hash, user_id, created_ms, expires_ms, last_seen_ms";
constexpr std::string_view kAuditColumns = "id, at_ms, principal, action, target, detail, ip";

TokenRecord read_token(const Stmt& s) {
  return TokenRecord{s.text(0), s.text(1), s.text(2), s.text(3), s.text(4), s.i64(5),
                     s.i64(6),  s.i64(7),  s.i64(8),  s.text(9)};
}
UserRecord read_user(const Stmt& s) {
  return UserRecord{s.text(0), s.text(1), s.text(2), s.text(3), s.i64(4)};
}
LoginSessionRecord read_login_session(const Stmt& s) {
  return LoginSessionRecord{s.text(0), s.text(1), s.i64(2), s.i64(3), s.i64(4)};
}
AuditRecord read_audit(const Stmt& s) {
  return AuditRecord{s.i64(0), s.i64(1), s.text(2), s.text(3), s.text(4), s.text(5), s.text(6)};
}

bool is_unique_violation(int rc) {
  return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY;
}

}  // namespace

// Every row of `s`, each read by `read`. (D is StateDb::Impl, deduced: it is private.)
template <class T, class D, class Read>
static Result<std::vector<T>> read_rows(D& d, Stmt& s, Read read, std::string_view what) {
  std::vector<T> out;
  int rc = s.step();
  for (; rc == SQLITE_ROW; rc = s.step()) {
    out.push_back(read(s));
  }
  if (rc != SQLITE_DONE) {
    return outcome::failure(d.error(rc, what));
  }
  return out;
}

template <class T, class D, class Read>
static Result<std::optional<T>> read_row(D& d, Stmt& s, Read read, std::string_view what) {
  BOOST_OUTCOME_TRY(v, read_rows<T>(d, s, read, what));
  if (v.empty()) {
    return std::optional<T>();
  }
  return std::optional<T>(std::move(v.front()));
}

// Runs an INSERT; a UNIQUE/PRIMARY KEY conflict is Errc::already_exists with `taken`.
template <class D>
static Result<void> insert_row(D& d, Stmt& s, std::string_view what, std::string taken) {
  int rc = s.step();
  if (is_unique_violation(rc)) {
    return ck::fail(Errc::already_exists, std::move(taken));
  }
  if (rc != SQLITE_DONE) {
    return outcome::failure(d.error(rc, what));
  }
  return outcome::success();
}

static void bind_token(Stmt& s, const TokenRecord& t) {
  s.bind(1, t.id).bind(2, t.kind).bind(3, t.name).bind(4, t.hash).bind(5, t.scopes);
  s.bind(6, t.created_ms).bind(7, t.last_used_ms).bind(8, t.expires_ms).bind(9, t.revoked_ms);
  s.bind(10, t.user_id);
}

Result<void> StateDb::insert_token(const TokenRecord& t) {
  BOOST_OUTCOME_TRY(check_name("token id", t.id));
  BOOST_OUTCOME_TRY(check_name("token hash", t.hash));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare(fmt::format("INSERT INTO auth_tokens ({}) VALUES "
                                             "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                                             kTokenColumns)));
  bind_token(s, t);
  return insert_row(d, s, fmt::format("saving token {}", t.id),
                    fmt::format("token {} already exists", t.id));
}

Result<std::optional<TokenRecord>> StateDb::token_by_hash(const std::string& hash) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(
      s, d.prepare(fmt::format("SELECT {} FROM auth_tokens WHERE hash = ?", kTokenColumns)));
  s.bind(1, hash);
  return read_row<TokenRecord>(d, s, read_token, "looking up a token");
}

Result<std::optional<TokenRecord>> StateDb::token_by_id(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(
      s, d.prepare(fmt::format("SELECT {} FROM auth_tokens WHERE id = ?", kTokenColumns)));
  s.bind(1, id);
  return read_row<TokenRecord>(d, s, read_token, fmt::format("reading token {}", id));
}

Result<std::vector<TokenRecord>> StateDb::tokens() {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(
      s, d.prepare(
             fmt::format("SELECT {} FROM auth_tokens ORDER BY created_ms, rowid", kTokenColumns)));
  return read_rows<TokenRecord>(d, s, read_token, "listing tokens");
}

Result<void> StateDb::revoke_token(const std::string& id, std::int64_t at_ms) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("UPDATE auth_tokens SET revoked_ms = CASE WHEN revoked_ms = 0 "
                                 "THEN ?2 ELSE revoked_ms END WHERE id = ?1"));
  s.bind(1, id).bind(2, at_ms);
  BOOST_OUTCOME_TRY(d.run(s, fmt::format("revoking token {}", id)));
  if (d.changes() == 0) {
    return ck::fail(Errc::not_found, fmt::format("there is no token {}", id));
  }
  return outcome::success();
}

Result<void> StateDb::touch_token(const std::string& id, std::int64_t at_ms) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("UPDATE auth_tokens SET last_used_ms = ?2 WHERE id = ?1"));
  s.bind(1, id).bind(2, at_ms);
  return d.run(s, fmt::format("recording the use of token {}", id));
}

Result<bool> StateDb::put_admin_token(const TokenRecord& t, bool replace) {
  BOOST_OUTCOME_TRY(check_name("token id", t.id));
  BOOST_OUTCOME_TRY(check_name("token hash", t.hash));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  Impl::Tx tx(d);
  BOOST_OUTCOME_TRY(tx.begin());
  if (replace) {
    BOOST_OUTCOME_TRY(del, d.prepare("DELETE FROM auth_tokens WHERE kind = 'admin'"));
    BOOST_OUTCOME_TRY(d.run(del, "replacing the admin token"));
  } else {
    BOOST_OUTCOME_TRY(q, d.prepare("SELECT COUNT(*) FROM auth_tokens WHERE kind = 'admin' AND "
                                   "revoked_ms = 0"));
    int rc = q.step();
    if (rc != SQLITE_ROW) {
      return outcome::failure(d.error(rc, "looking for the admin token"));
    }
    if (q.i64(0) > 0) {
      return false;
    }
  }
  BOOST_OUTCOME_TRY(s, d.prepare(fmt::format("INSERT INTO auth_tokens ({}) VALUES "
                                             "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                                             kTokenColumns)));
  TokenRecord admin = t;
  admin.kind = "admin";
  bind_token(s, admin);
  BOOST_OUTCOME_TRY(
      insert_row(d, s, "saving the admin token", fmt::format("token {} already exists", t.id)));
  BOOST_OUTCOME_TRY(tx.commit());
  return true;
}

Result<void> StateDb::insert_user(const UserRecord& u) {
  BOOST_OUTCOME_TRY(check_name("user id", u.id));
  BOOST_OUTCOME_TRY(check_name("user name", u.name));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare(fmt::format("INSERT INTO users ({}) VALUES (?1, ?2, ?3, ?4, ?5)",
                                             kUserColumns)));
  s.bind(1, u.id).bind(2, u.name).bind(3, u.password_hash).bind(4, u.role).bind(5, u.created_ms);
  return insert_row(d, s, fmt::format("saving user {}", u.name),
                    fmt::format("a user named {} already exists", u.name));
}

Result<std::optional<UserRecord>> StateDb::user_by_name(const std::string& name) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare(fmt::format("SELECT {} FROM users WHERE name = ?", kUserColumns)));
  s.bind(1, name);
  return read_row<UserRecord>(d, s, read_user, fmt::format("reading user {}", name));
}

Result<std::optional<UserRecord>> StateDb::user_by_id(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare(fmt::format("SELECT {} FROM users WHERE id = ?", kUserColumns)));
  s.bind(1, id);
  return read_row<UserRecord>(d, s, read_user, fmt::format("reading user {}", id));
}

Result<std::vector<UserRecord>> StateDb::users() {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare(fmt::format("SELECT {} FROM users ORDER BY name", kUserColumns)));
  return read_rows<UserRecord>(d, s, read_user, "listing users");
}

Result<void> StateDb::insert_login_session(const LoginSessionRecord& r) {
  BOOST_OUTCOME_TRY(check_name("session hash", r.hash));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(
      s, d.prepare(fmt::format("INSERT INTO login_sessions ({}) VALUES (?1, ?2, ?3, ?4, ?5)",
                               kLoginSessionColumns)));
  s.bind(1, r.hash).bind(2, r.user_id).bind(3, r.created_ms).bind(4, r.expires_ms);
  s.bind(5, r.last_seen_ms);
  return insert_row(d, s, "saving a login session", "that login session already exists");
}

Result<std::optional<LoginSessionRecord>> StateDb::login_session(const std::string& hash) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare(fmt::format("SELECT {} FROM login_sessions WHERE hash = ?",
                                             kLoginSessionColumns)));
  s.bind(1, hash);
  return read_row<LoginSessionRecord>(d, s, read_login_session, "looking up a login session");
}

Result<void> StateDb::extend_login_session(const std::string& hash, std::int64_t expires_ms,
                                           std::int64_t last_seen_ms) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("UPDATE login_sessions SET expires_ms = ?2, last_seen_ms = ?3 "
                                 "WHERE hash = ?1"));
  s.bind(1, hash).bind(2, expires_ms).bind(3, last_seen_ms);
  return d.run(s, "extending a login session");
}

Result<bool> StateDb::delete_login_session(const std::string& hash) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("DELETE FROM login_sessions WHERE hash = ?"));
  s.bind(1, hash);
  BOOST_OUTCOME_TRY(d.run(s, "ending a login session"));
  return d.changes() > 0;
}

Result<int> StateDb::delete_expired_login_sessions(std::int64_t now_ms) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("DELETE FROM login_sessions WHERE expires_ms <= ?"));
  s.bind(1, now_ms);
  BOOST_OUTCOME_TRY(d.run(s, "pruning expired login sessions"));
  return d.changes();
}

Result<std::int64_t> StateDb::append_audit(const AuditRecord& a) {
  BOOST_OUTCOME_TRY(check_name("audit action", a.action));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("INSERT INTO audit (at_ms, principal, action, target, detail, ip) "
                                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
  s.bind(1, a.at_ms).bind(2, a.principal).bind(3, a.action).bind(4, a.target);
  s.bind(5, a.detail.empty() ? std::string("{}") : a.detail).bind(6, a.ip);
  BOOST_OUTCOME_TRY(d.run(s, fmt::format("writing the audit entry {}", a.action)));
  return static_cast<std::int64_t>(sqlite3_last_insert_rowid(d.db));
}

Result<std::vector<AuditRecord>> StateDb::audit_log(int limit, std::int64_t before_id) {
  BOOST_OUTCOME_TRY(check_limit(limit));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare(fmt::format("SELECT {} FROM audit WHERE (?1 = 0 OR id < ?1) "
                                             "ORDER BY id DESC LIMIT ?2",
                                             kAuditColumns)));
  s.bind(1, before_id).bind(2, limit);
  return read_rows<AuditRecord>(d, s, read_audit, "reading the audit log");
}

Result<std::optional<WorkspaceOwner>> StateDb::workspace_owner(const std::string& workspace) {
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("SELECT owner, public FROM workspace_owners WHERE workspace = ?"));
  s.bind(1, workspace);
  return read_row<WorkspaceOwner>(
      d, s,
      [](const Stmt& r) {
        return WorkspaceOwner{r.text(0), r.i64(1) != 0};
      },
      fmt::format("reading the owner of {}", workspace));
}

Result<void> StateDb::set_workspace_owner(const std::string& workspace, const WorkspaceOwner& o) {
  BOOST_OUTCOME_TRY(check_name("workspace name", workspace));
  std::lock_guard lock(impl_->mu);
  auto& d = *impl_;
  BOOST_OUTCOME_TRY(s, d.prepare("INSERT INTO workspace_owners (workspace, owner, public) "
                                 "VALUES (?1, ?2, ?3) ON CONFLICT (workspace) DO UPDATE SET "
                                 "owner = excluded.owner, public = excluded.public"));
  s.bind(1, workspace).bind(2, o.owner).bind(3, o.is_public ? 1 : 0);
  return d.run(s, fmt::format("saving the owner of {}", workspace));
}

}  // namespace ck
