#include "daemon/backups.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <thread>

#include "api/api.h"
#include "api/respond.h"
#include "core/log.h"
#include "core/names.h"
#include "core/units.h"
#include "metrics/metrics.h"

namespace ck {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

auto logger() { return log::get("backup"); }

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A destination's runs, in the process registry. Destination names come from the operator's
// config, never from requests, so their label values are bounded.
struct BackupMetrics {
  metrics::Family<metrics::Counter>& runs;
  metrics::Family<metrics::Counter>& added;
  metrics::Family<metrics::Gauge>& last_success;
  metrics::Family<metrics::Gauge>& duration;
};

BackupMetrics& backup_metrics() {
  static BackupMetrics m = [] {
    auto& g = metrics::global();
    return BackupMetrics{
        g.counter("cloudyknight_backup_runs_total", "Backup runs of a destination by result.",
                  {"destination", "result"}),
        g.counter("cloudyknight_backup_added_bytes_total",
                  "Bytes of new content a destination received (before encryption).", {"destination"}),
        g.gauge("cloudyknight_backup_last_success_timestamp_seconds",
                "When a destination's last successful backup ended (unix seconds; 0: never).",
                {"destination"}),
        g.gauge("cloudyknight_backup_duration_seconds", "How long a destination's last backup run took.",
                {"destination"})};
  }();
  return m;
}

std::string dest_key(const std::string& dest) { return "backup.dest." + dest; }
std::string ws_key(const std::string& ws) { return "backup.ws." + ws; }

json setting_json(StateDb& db, const std::string& key) {
  auto v = db.setting(key);
  if (v.has_error() || !v.value()) return json::object();
  json j = json::parse(*v.value(), nullptr, false);
  return j.is_object() ? j : json::object();
}

// A backup job's payload: {"dest", "scheduled"?}.
struct BackupPayload {
  std::string dest;
  bool scheduled = false;
};

BackupPayload backup_payload(const Job& j) {
  json p = json::parse(j.payload, nullptr, false);
  if (!p.is_object()) return {};
  return {p.value("dest", ""), p.value("scheduled", false)};
}

constexpr JobPolicy kBackupPolicy{5, std::chrono::seconds(30), std::chrono::minutes(30)};
constexpr JobPolicy kRestorePolicy{3, std::chrono::seconds(5), std::chrono::minutes(1)};

}  // namespace

BackupService::BackupService(backup::BackupConfig config, fs::path workspaces_root, fs::path data,
                             StateDb& db, EventBus& events, std::optional<Bucket> bucket)
    : config_(std::move(config)),
      root_(std::move(workspaces_root)),
      cache_(data / "backup-cache"),
      db_(db),
      events_(events),
      bucket_(std::move(bucket)) {
  for (const auto& d : config_.destinations) {
    dest_locks_[d.name] = std::make_unique<std::mutex>();
    auto last = setting_json(db_, dest_key(d.name));
    backup_metrics().last_success.with({d.name}).set(last.value("last_ok_ms", std::int64_t{0}) / 1000);
  }
}

BackupService::~BackupService() { stop(); }

void BackupService::add_job_handlers(MonitorOptions& opts) {
  opts.job_handlers["backup"] = {
      [this](const Job& job, std::function<void(Result<void>)> done) { run_backup(job, std::move(done)); },
      [this](const Job& job) { after_backup(job); }};
  opts.job_handlers["restore"] = {
      [this](const Job& job, std::function<void(Result<void>)> done) { run_restore(job, std::move(done)); },
      {}};
}

void BackupService::schedule() {
  if (!configured()) return;
  JobFilter f;
  f.state = JobState::queued;
  f.limit = 1000;
  auto queued = db_.jobs(f);
  for (const auto& d : config_.destinations) {
    bool has = false;
    if (queued.has_value()) {
      for (const auto& j : queued.value()) {
        auto p = backup_payload(j);
        has |= j.kind == "backup" && p.dest == d.name && p.scheduled;
      }
    }
    if (has) continue;
    auto last = setting_json(db_, dest_key(d.name)).value("last_ok_ms", std::int64_t{0});
    auto due = last + config_.schedule.count() - now_ms();
    json payload = {{"dest", d.name}, {"scheduled", true}};
    auto delay = std::chrono::milliseconds(std::max<std::int64_t>(due, 0));
    if (auto r = db_.enqueue("backup", "", payload.dump(), kBackupPolicy, delay, false); r.has_error()) {
      logger()->error("cannot schedule the backups to {}: {}", d.name, r.error().message);
    } else {
      logger()->info("backups to {} ({}, {}) every {}; the next in {}", d.name, d.url(),
                     backup::mode_name(d.mode), format_duration(config_.schedule), format_duration(delay));
    }
  }
}

void BackupService::launch(std::function<void()> work) {
  {
    std::lock_guard lock(mu_);
    ++running_;
  }
  std::thread([this, work = std::move(work)] {
    work();
    std::lock_guard lock(mu_);
    if (--running_ == 0) idle_.notify_all();
  }).detach();
}

void BackupService::stop() {
  stopping_ = true;
  std::unique_lock lock(mu_);
  if (running_ > 0) logger()->info("waiting for {} backup job(s) to stop", running_);
  idle_.wait(lock, [this] { return running_ == 0; });
}

Result<const backup::Destination*> BackupService::destination(const std::string& name) const {
  if (config_.destinations.empty()) {
    return fail(Errc::unavailable, "no backup destination is configured: add backup.destinations to the config");
  }
  if (name.empty()) return &config_.destinations.front();
  return backup::find_destination(config_, name);
}

backup::RepoOptions BackupService::repo_options() const {
  backup::RepoOptions o;
  o.key = config_.key;
  o.cache_dir = cache_;
  o.cancelled = [this] { return stopping_.load(); };
  return o;
}

std::vector<backup::WorkspaceSource> BackupService::workspaces(const std::string& only) const {
  std::vector<backup::WorkspaceSource> out;
  std::error_code ec;
  for (fs::directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!is_valid_workspace_name(name) || !it->is_directory(ec) || it->is_symlink(ec)) continue;
    if (!only.empty() && name != only) continue;
    out.push_back({name, it->path()});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

void BackupService::run_backup(const Job& job, std::function<void(Result<void>)> done) {
  auto p = backup_payload(job);
  auto dest = destination(p.dest);
  if (dest.has_error()) return done(dest.error());
  const bool scheduled = p.scheduled;
  launch([this, d = *dest.value(), ws = job.workspace, scheduled, done = std::move(done)] {
    // One run at a time per destination: a prune after a scheduled run must not delete a pack
    // that another run (POST /backups) is about to reference.
    std::lock_guard one_run(*dest_locks_.at(d.name));
    {
      std::lock_guard lock(mu_);
      busy_.push_back(d.name);
    }
    auto started = std::chrono::steady_clock::now();
    auto sources = workspaces(ws);
    std::vector<backup::BackupReport> reports;
    std::string error;
    if (!ws.empty() && sources.empty()) error = fmt::format("there is no workspace named '{}' to back up", ws);
    backup::BackupOptions opts;
    static_cast<backup::RepoOptions&>(opts) = repo_options();
    opts.ignore.allow_env = false;
    for (const auto& s : sources) {
      if (stopping_) {
        error = "the daemon is stopping; the backup resumes at its next start";
        break;
      }
      auto r = backup::backup_workspace(d, s.name, s.dir, opts);
      if (r.has_error()) {
        // The other workspaces still go; the job fails (and is retried) with the first error.
        logger()->warn("[ws={}] backup to {} failed: {}", s.name, d.name, r.error().message);
        if (error.empty()) error = fmt::format("workspace '{}': {}", s.name, r.error().message);
        continue;
      }
      reports.push_back(std::move(r.value()));
    }
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    record(d.name, reports, error.empty(), error, took);
    if (scheduled && error.empty() && !stopping_) prune_daily(d);
    {
      std::lock_guard lock(mu_);
      busy_.erase(std::find(busy_.begin(), busy_.end(), d.name));
    }
    if (!error.empty()) return done(fail(Errc::io, fmt::format("backup to {}: {}", d.name, error)));
    done(outcome::success());
  });
}

void BackupService::prune_daily(const backup::Destination& d) {
  // backup.keep is applied by the schedule once a day (and by `cloudyknight backup prune`).
  const backup::Keep& k = config_.keep;
  if (k.last == 0 && k.hourly == 0 && k.daily == 0 && k.weekly == 0 && k.monthly == 0) return;
  auto last = setting_json(db_, dest_key(d.name)).value("last_prune_ms", std::int64_t{0});
  if (now_ms() - last < 24 * 3600 * 1000) return;
  backup::PruneOptions o;
  static_cast<backup::RepoOptions&>(o) = repo_options();
  auto pruned = backup::prune(d, k, o);
  std::lock_guard lock(mu_);
  json rec = setting_json(db_, dest_key(d.name));
  rec["last_prune_ms"] = now_ms();
  if (pruned.has_error()) {
    rec["prune_error"] = pruned.error().message;
    logger()->warn("pruning {} failed (next try in a day): {}", d.name, pruned.error().message);
  } else {
    rec["prune_error"] = "";
    rec["pruned_snapshots"] = pruned.value().removed.size();
    logger()->info("pruned {}: {} snapshots removed, {} kept, {} freed", d.name, pruned.value().removed.size(),
                   pruned.value().kept.size(), format_bytes(pruned.value().bytes_freed));
  }
  (void)db_.set_setting(dest_key(d.name), rec.dump());
}

void BackupService::record(const std::string& dest, const std::vector<backup::BackupReport>& reports, bool ok,
                           const std::string& error, std::chrono::milliseconds took) {
  std::uint64_t files = 0, bytes = 0, added = 0, objects = 0;
  for (const auto& r : reports) {
    files += r.files;
    bytes += r.bytes;
    added += r.added_bytes;
    objects += r.objects_written;
  }
  const auto now = now_ms();
  std::lock_guard lock(mu_);  // read-modify-write of the settings below
  json d = setting_json(db_, dest_key(dest));
  d["last_run_ms"] = now;
  d["ok"] = ok;
  d["error"] = error;
  d["duration_ms"] = took.count();
  d["workspaces"] = reports.size();
  d["files"] = files;
  d["bytes"] = bytes;
  d["added_bytes"] = added;
  d["objects_written"] = objects;
  if (ok) d["last_ok_ms"] = now;
  (void)db_.set_setting(dest_key(dest), d.dump());
  for (const auto& r : reports) {
    json w = setting_json(db_, ws_key(r.workspace));
    w[dest] = {{"snapshot", r.snapshot_id}, {"time_ms", now}, {"files", r.files}, {"bytes", r.bytes},
               {"added_bytes", r.added_bytes}};
    (void)db_.set_setting(ws_key(r.workspace), w.dump());
    events_.publish("backup", r.workspace,
                    {{"action", "backup"}, {"destination", dest}, {"ok", true}, {"snapshot", r.snapshot_id},
                     {"files", r.files}, {"bytes", r.bytes},
                     {"added_bytes", r.added_bytes}});
  }
  auto& m = backup_metrics();
  m.runs.with({dest, ok ? "ok" : "failed"}).inc();
  m.added.with({dest}).inc(added);
  m.duration.with({dest}).set(took.count() / 1000);
  if (ok) m.last_success.with({dest}).set(now / 1000);
  events_.publish("backup", "",
                  {{"action", "backup"}, {"destination", dest}, {"ok", ok}, {"error", error},
                   {"workspaces", reports.size()},
                   {"files", files}, {"bytes", bytes}, {"added_bytes", added}, {"duration_ms", took.count()}});
  if (ok) {
    logger()->info("backup to {}: {} workspaces, {} files ({}), {} new, in {}", dest, reports.size(), files,
                   format_bytes(bytes), format_bytes(added), format_duration(took));
  } else {
    logger()->warn("backup to {} failed after {}: {}", dest, format_duration(took), error);
  }
}

void BackupService::after_backup(const Job& job) {
  // A scheduled run that ended (done, or dead after its retries) queues the next one.
  if (job.state != JobState::done && job.state != JobState::dead) return;
  auto p = backup_payload(job);
  if (!p.scheduled) return;
  if (auto r = db_.enqueue("backup", "", job.payload, kBackupPolicy, config_.schedule, false); r.has_error()) {
    logger()->error("cannot schedule the next backup to {}: {}", p.dest, r.error().message);
  }
}

Result<std::vector<Job>> BackupService::request(const std::string& destination_name, const std::string& workspace) {
  std::vector<const backup::Destination*> dests;
  if (destination_name.empty()) {
    if (config_.destinations.empty()) return destination("").error();
    for (const auto& d : config_.destinations) dests.push_back(&d);
  } else {
    BOOST_OUTCOME_TRY(d, destination(destination_name));
    dests.push_back(d);
  }
  if (!workspace.empty() && workspaces(workspace).empty()) {
    return fail(Errc::not_found, fmt::format("there is no workspace named '{}' to back up", workspace));
  }
  JobFilter f;
  f.workspace = workspace;
  f.limit = 1000;
  auto existing = db_.jobs(f);
  std::vector<Job> out;
  for (const auto* d : dests) {
    const Job* same = nullptr;
    if (existing.has_value()) {
      for (const auto& j : existing.value()) {
        if (j.kind != "backup" || j.workspace != workspace) continue;
        if (j.state != JobState::queued && j.state != JobState::running) continue;
        auto p = backup_payload(j);
        // A scheduled run waiting for its time is not "the same": this one runs now.
        if (p.dest == d->name && (j.state == JobState::running || !p.scheduled)) {
          same = &j;
        }
      }
    }
    if (same) {
      out.push_back(*same);
      continue;
    }
    json payload = {{"dest", d->name}};
    BOOST_OUTCOME_TRY(job, db_.enqueue("backup", workspace, payload.dump(), kBackupPolicy, {}, false));
    out.push_back(std::move(job));
  }
  return out;
}

Result<Job> BackupService::restore(const RestoreRequest& req) {
  BOOST_OUTCOME_TRY(d, destination(req.destination));
  json payload = {{"dest", d->name},
                  {"snapshot", req.snapshot},
                  {"mode", req.mode == backup::RestoreMode::mirror ? "mirror" : "merge"}};
  if (req.point_in_time) payload["point_in_time"] = static_cast<std::int64_t>(*req.point_in_time);
  return db_.enqueue("restore", req.workspace, payload.dump(), kRestorePolicy, {}, false);
}

namespace {

Result<RestoreRequest> restore_request(const Job& job) {
  json p = json::parse(job.payload, nullptr, false);
  if (!p.is_object()) return fail(Errc::invalid_argument, "the restore job's payload is not a JSON object");
  RestoreRequest r;
  r.workspace = job.workspace;
  r.destination = p.value("dest", "");
  r.snapshot = p.value("snapshot", "");
  if (p.contains("point_in_time") && p["point_in_time"].is_number_integer()) {
    r.point_in_time = static_cast<std::time_t>(p["point_in_time"].get<std::int64_t>());
  }
  r.mode = p.value("mode", "merge") == "mirror" ? backup::RestoreMode::mirror : backup::RestoreMode::merge;
  return r;
}

}  // namespace

Result<backup::RestoreReport> BackupService::plan_restore(const RestoreRequest& req) const {
  BOOST_OUTCOME_TRY(d, destination(req.destination));
  backup::RestoreOptions o;
  static_cast<backup::RepoOptions&>(o) = repo_options();
  o.snapshot = req.snapshot;
  o.point_in_time = req.point_in_time;
  o.mode = req.mode;
  o.target = root_ / req.workspace;
  o.dry_run = true;
  o.ignore.allow_env = false;
  return backup::restore(*d, req.workspace, o);
}

void BackupService::run_restore(const Job& job, std::function<void(Result<void>)> done) {
  auto req = restore_request(job);
  if (req.has_error()) return done(req.error());
  auto dest = destination(req.value().destination);
  if (dest.has_error()) return done(dest.error());
  launch([this, d = *dest.value(), r = req.value(), done = std::move(done)]() mutable {
    backup::RestoreOptions o;
    static_cast<backup::RepoOptions&>(o) = repo_options();
    o.snapshot = r.snapshot;
    o.point_in_time = r.point_in_time;
    o.mode = r.mode;
    o.ignore.allow_env = false;
    Result<backup::RestoreReport> restored = fail(Errc::internal, "");
    if (bucket_) {
      // S3 storage: into the bucket; the mirror's pass brings it to the monitor.
      sync::Location where{bucket_->client, bucket_->bucket, sync::workspace_prefix(bucket_->prefix, r.workspace)};
      restored = backup::restore_to_bucket(d, r.workspace, o, where);
      if (restored) bucket_->changed();
    } else {
      o.target = root_ / r.workspace;
      restored = backup::restore(d, r.workspace, o);
    }
    json ev = {{"destination", d.name}, {"action", "restore"}, {"ok", restored.has_value()}};
    if (restored) {
      ev["snapshot"] = restored.value().snapshot_id;
      ev["changed"] = restored.value().changes.size();
      ev["bytes"] = restored.value().bytes_written;
      logger()->info("[ws={}] restored snapshot {} from {}: {} files changed", r.workspace,
                     restored.value().snapshot_id, d.name, restored.value().changes.size());
    } else {
      ev["error"] = restored.error().message;
      logger()->warn("[ws={}] restore from {} failed: {}", r.workspace, d.name, restored.error().message);
    }
    events_.publish("backup", r.workspace, std::move(ev));
    if (!restored) return done(restored.error());
    done(outcome::success());
  });
}

json BackupService::status(const std::function<bool(const std::string&)>& visible) const {
  std::vector<std::string> busy;
  {
    std::lock_guard lock(mu_);
    busy = busy_;
  }
  json dests = json::array();
  for (const auto& d : config_.destinations) {
    json last = setting_json(db_, dest_key(d.name));
    json j = {{"name", d.name},
              {"url", d.url()},
              {"mode", std::string(backup::mode_name(d.mode))},
              {"encrypt", d.encrypt},
              {"running", std::find(busy.begin(), busy.end(), d.name) != busy.end()}};
    j["last"] = last.empty() ? json(nullptr) : last;
    dests.push_back(std::move(j));
  }
  json workspaces = json::object();
  for (const auto& s : this->workspaces("")) {
    if (visible(s.name)) workspaces[s.name] = setting_json(db_, ws_key(s.name));
  }
  return {{"schedule", format_duration(config_.schedule)},
          {"destinations", std::move(dests)},
          {"workspaces", std::move(workspaces)}};
}

Result<json> BackupService::snapshots(const std::string& workspace, const std::string& destination_name) const {
  std::vector<const backup::Destination*> dests;
  if (destination_name.empty()) {
    for (const auto& d : config_.destinations) dests.push_back(&d);
  } else {
    BOOST_OUTCOME_TRY(d, destination(destination_name));
    dests.push_back(d);
  }
  json out = json::array();
  json errors = json::array();
  for (const auto* d : dests) {
    auto list = backup::list_snapshots(*d, workspace, repo_options());
    if (list.has_error()) {
      errors.push_back({{"destination", d->name}, {"message", list.error().message}});
      continue;
    }
    for (const auto& s : list.value()) {
      out.push_back({{"destination", s.destination},
                     {"workspace", s.workspace},
                     {"id", s.id},
                     {"time", static_cast<std::int64_t>(s.time)},
                     {"host", s.host},
                     {"files", s.files},
                     {"bytes", s.bytes},
                     {"added_bytes", s.added_bytes}});
    }
  }
  return json{{"snapshots", std::move(out)}, {"errors", std::move(errors)}};
}

}  // namespace ck

namespace ck {

namespace {

json restore_plan_json(const backup::RestoreReport& r) {
  json changes = json::array();
  for (const auto& c : r.changes) {
    changes.push_back({{"op", c.op == backup::RestoreChange::Op::write ? "write" : "remove"},
                       {"path", c.path},
                       {"size", c.size}});
  }
  return {{"snapshot", r.snapshot_id}, {"changes", std::move(changes)}, {"unchanged", r.unchanged}, {"dry_run", true}};
}

json job_json(const Job& j) {
  return {{"id", j.id}, {"kind", j.kind}, {"workspace", j.workspace}, {"state", std::string(job_state_name(j.state))}};
}

// The fields of POST /workspaces/{name}/restore's body, checked.
Result<RestoreRequest> parse_restore(const std::string& workspace, const json& body) {
  RestoreRequest r;
  r.workspace = workspace;
  BOOST_OUTCOME_TRY(dest, api::optional_string_member(body, "destination"));
  BOOST_OUTCOME_TRY(snapshot, api::optional_string_member(body, "snapshot"));
  BOOST_OUTCOME_TRY(when, api::optional_string_member(body, "point_in_time"));
  BOOST_OUTCOME_TRY(mode, api::optional_string_member(body, "mode"));
  r.destination = dest;
  r.snapshot = snapshot;
  if (!snapshot.empty() && !when.empty()) {
    return fail(Errc::invalid_argument, "give either 'snapshot' or 'point_in_time', not both");
  }
  if (!when.empty()) {
    BOOST_OUTCOME_TRY(t, backup::parse_point_in_time(when));
    r.point_in_time = t;
  }
  if (mode.empty() || mode == "merge") {
    r.mode = backup::RestoreMode::merge;
  } else if (mode == "mirror") {
    r.mode = backup::RestoreMode::mirror;
  } else {
    return fail(Errc::invalid_argument,
                fmt::format("mode '{}' is not known: 'merge' (add and overwrite) or 'mirror' (make the workspace "
                            "exactly the snapshot)",
                            mode));
  }
  return r;
}

}  // namespace

void add_backup_services(ApiServices& services, BackupService& backups) {
  BackupService* b = &backups;
  services.backups.status = [b](const std::function<bool(const std::string&)>& visible) { return b->status(visible); };
  services.backups.snapshots = [b](const std::string& workspace, const std::string& destination,
                                   std::function<void(Result<json>)> done) {
    b->run_off_thread([b, workspace, destination, done = std::move(done)] { done(b->snapshots(workspace, destination)); });
  };
  services.backups.start = [b](const std::string& destination, const std::string& workspace) -> Result<json> {
    BOOST_OUTCOME_TRY(jobs, b->request(destination, workspace));
    json out = json::array();
    for (const auto& j : jobs) out.push_back(job_json(j));
    return json{{"jobs", std::move(out)}};
  };
  services.backups.restore = [b](const std::string& workspace, const json& body,
                                 std::function<void(Result<json>)> done) {
    auto req = parse_restore(workspace, body);
    if (req.has_error()) return done(req.error());
    if (body.value("dry_run", false)) {
      return b->run_off_thread([b, r = req.value(), done = std::move(done)] {
        auto plan = b->plan_restore(r);
        if (plan.has_error()) return done(plan.error());
        done(restore_plan_json(plan.value()));
      });
    }
    auto job = b->restore(req.value());
    if (job.has_error()) return done(job.error());
    done(json{{"job", job_json(job.value())}});
  };
}

}  // namespace ck
