// The monitor: it scans storage for workspaces and reconciles what it finds (new, changed,
// removed), turns a workspace's configuration into what its runtime runs, runs the job queue
// and the log rotation, shuts everything down, and publishes the snapshot the gateway and the
// API read. The rest of the module: supervise.cc (running an app), changes.cc (source
// changes), idle.cc (traffic, the API's actions and the idle policy), record.h (what it
// keeps per workspace).
#include "monitor/monitor.h"

#include <boost/asio/redirect_error.hpp>
#include <fmt/format.h>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "core/files.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/names.h"
#include "metrics/metrics.h"
#include "monitor/record.h"
#include "storage/dir/watcher.h"

namespace ck {
namespace fs = std::filesystem;
using namespace mon;  // NOLINT(google-build-using-namespace): the module's own helpers
using json = nlohmann::json;

namespace {

// The files whose content decides which dependencies get installed.
std::string deps_key(const fs::path& dir, const WorkspaceSpec& spec) {
  std::string key = spec.install;
  for (const char* f : {"package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock",
                        "requirements.txt", "pyproject.toml", "composer.json", "composer.lock",
                        "go.mod", "go.sum", "Gemfile", "Gemfile.lock"}) {
    if (auto content = read_file(dir / f)) key += fmt::format("|{}:{}", f, stable_hash(*content));
  }
  return stable_hash(key);
}

}  // namespace

IdlePolicy effective_policy(const IdlePolicy& base, const WorkspaceSpec& spec) {
  IdlePolicy p = base;
  auto ms = [](Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d); };
  if (spec.idle_after) p.idle_after = ms(*spec.idle_after);
  if (spec.background_after) p.background_after = ms(*spec.background_after);
  if (spec.stop_after) p.stop_after = ms(*spec.stop_after);
  if (spec.grace) p.grace = ms(*spec.grace);
  return p;
}

Monitor::Monitor(net::io_context& io, Storage& storage, Runtime& runtime, SnapshotHolder& out,
                 EventBus& events, StateDb& db, MonitorOptions opts)
    : io_(io),
      storage_(storage),
      runtime_(runtime),
      out_(out),
      events_(events),
      db_(db),
      opts_(opts),
      scan_timer_(io),
      start_slot_freed_(io),
      job_wake_(io) {
  start_limit_ = opts_.install_concurrency > 0
                     ? opts_.install_concurrency
                     : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (auto act = db_.load_activity(); act.has_value()) saved_activity_ = std::move(act.value());
  start_metrics();  // registered now, so a scrape shows zeros before the first start
}

Monitor::~Monitor() = default;

void Monitor::start() {
  auto log = logger();
  if (auto resumed = db_.requeue_running(); resumed.has_value()) {
    for (const auto& j : resumed.value()) {
      log->info("resuming job #{} ({} {}), left unfinished by the previous run (attempt {} of {})", j.id,
                j.kind, j.workspace, j.attempts + 1, j.max_attempts);
    }
  } else {
    log->warn("state.db: {}", resumed.error().message);
  }
  (void)db_.close_all_sessions();
  scan_now();
  publish();  // even when the first scan changed nothing (no workspaces yet)
  // A sweep now (containers of folders deleted while the daemon was down), then every 5 min.
  (void)db_.cancel("sweep", "");
  (void)db_.enqueue("sweep", "", "{}", JobPolicy{3, std::chrono::seconds(10), std::chrono::minutes(5)});
  spawn(io_, scan_loop(), "monitor scan loop");
  spawn(io_, idle_loop(), "idle policy");
  spawn(io_, job_loop(), "job runner");
  spawn(io_, log_loop(), "log tailer");
}

net::awaitable<void> Monitor::scan_loop() {
  while (!shutting_down_) {
    co_await wait_on(scan_timer_, opts_.scan_interval);
    if (shutting_down_) break;
    scan_now();
  }
}

void Monitor::scan_now() {
  if (shutting_down_) return;
  auto entries = storage_.list();
  if (entries.has_error()) {
    // Never treat an unreadable root as "everything was deleted".
    if (storage_error_ != entries.error().message) {
      logger()->error("cannot list workspaces: {} (keeping the current ones running)",
                      entries.error().message);
      storage_error_ = entries.error().message;
      publish();
    }
    return;
  }
  if (!storage_error_.empty()) {
    logger()->info("workspace storage readable again: {}", storage_.location());
    storage_error_.clear();
  }
  reconcile(entries.value(), nullptr);
  if (polling_) {
    for (auto& [name, rec] : records_) {
      auto sig = tree_signature(rec->path, skip_dirs());
      if (sig == rec->tree_sig) continue;
      rec->tree_sig = sig;
      source_changed(rec, {}, true);
    }
  }
}

void Monitor::request_restart(const std::shared_ptr<Record>& rec) {
  // A restart starts from scratch: a start job still backing off is dropped for a new one.
  (void)db_.cancel("start", rec->name);
  rec->restart_requested = true;
  rec->wake.cancel();
  if (rec->supervised && !rec->asleep) {
    // Clients of the running app wait for the new one rather than get 503.
    if (rec->status == "running") rec->restarting = true;
    stop_async(rec, "restart");
  }
}

// Every stop goes through here, so the supervisor can wait for it to finish (port released,
// container removed) before it starts the workspace again: one operation at a time. Counted
// before the coroutine is even scheduled, so no start can slip in between.
void Monitor::stop_async(const std::shared_ptr<Record>& rec, const char* what) {
  ++rec->stops_in_flight;
  spawn(io_, stop_tracked(rec), std::string(what) + " " + rec->name);
}

net::awaitable<void> Monitor::stop_tracked(std::shared_ptr<Record> rec) {
  co_await runtime_.stop(rec->name, opts_.stop_grace);
  --rec->stops_in_flight;
}

void Monitor::reconcile(const std::vector<StorageEntry>& entries, const std::set<std::string>* only) {
  bool changed = false;
  std::vector<InvalidFolder> invalid;
  std::set<std::string> seen;
  for (const auto& e : entries) {
    if (only && !only->count(e.folder)) {
      seen.insert(e.folder);
      continue;
    }
    auto valid = validate_workspace_name(e.folder);
    if (valid.has_error()) {
      invalid.push_back({e.folder, valid.error().message});
      continue;
    }
    seen.insert(e.folder);
    WorkspaceSpec spec = detect_workspace(e.folder, e.local_path);
    auto it = records_.find(e.folder);
    if (it == records_.end()) {
      auto rec = std::make_shared<Record>(io_);
      rec->name = e.folder;
      rec->path = e.local_path;
      rec->tree_sig = tree_signature(rec->path, skip_dirs());
      rec->policy = effective_policy(opts_.idle, spec);
      auto now = unix_ms();
      auto saved = saved_activity_.find(e.folder);
      rec->activity->last_ms = saved != saved_activity_.end() ? saved->second : now;
      rec->saved_ms = rec->activity->last_ms;
      bool held = false;
      if (runnable(spec, runtime_)) {
        auto setting = db_.setting(held_key(e.folder));
        held = setting.has_value() && setting.value() && *setting.value() == "1";
      }
      if (held) {
        rec->held = true;
        rec->asleep = true;
        rec->status = "stopped";
        rec->reason = std::string(kHeldReason);
        rec->level = ActivityLevel::stop;
        logger()->info("[ws={}] held stopped (it was stopped from the API; start it from there)",
                       e.folder);
      } else if (runnable(spec, runtime_) && !spec.preview_of.empty() && saved == saved_activity_.end()) {
        // A new branch preview waits for its first visitor: most are never opened.
        rec->asleep = true;
        rec->status = "stopped";
        rec->reason = "idle";
        rec->level = ActivityLevel::stop;
        logger()->info("[ws={}] preview of {} (branch {}): starts on its first request", e.folder,
                       spec.preview_of, spec.preview_branch);
      } else if (runnable(spec, runtime_) &&
                 activity_level(rec->activity->sample(), rec->policy, now) == ActivityLevel::stop) {
        rec->asleep = true;
        rec->status = "stopped";
        rec->reason = "idle";
        rec->level = ActivityLevel::stop;
        logger()->info("[ws={}] asleep: no activity for {} (the next request starts it)", e.folder,
                       ago(now - rec->activity->last_ms));
      }
      records_[e.folder] = rec;
      logger()->info("[ws={}] found: {} — {}", e.folder, type_name(spec.type),
                     spec.matched.empty() ? "no match" : spec.matched);
      apply_spec(rec, std::move(spec));
      changed = true;
    } else if (auto& rec = it->second; rec->spec.fingerprint() != spec.fingerprint() ||
                                        rec->spec.description != spec.description ||
                                        rec->spec.preview_of != spec.preview_of ||
                                        rec->spec.icon != spec.icon || rec->spec.is_public != spec.is_public ||
                                        rec->policy != effective_policy(opts_.idle, spec)) {
      logger()->info("[ws={}] its configuration changed", e.folder);
      rec->tree_sig = tree_signature(rec->path, skip_dirs());
      rec->policy = effective_policy(opts_.idle, spec);
      apply_spec(rec, std::move(spec));
      changed = true;
    }
  }
  for (auto it = records_.begin(); it != records_.end();) {
    if (seen.count(it->first) || (only && !only->count(it->first))) {
      ++it;
      continue;
    }
    auto rec = it->second;
    logger()->info("[ws={}] removed from storage; stopping it", rec->name);
    rec->removed = true;
    rec->wake.cancel();
    it = records_.erase(it);
    (void)db_.cancel("start", rec->name);
    (void)db_.record_status(rec->name, "removed", "its folder is gone");
    (void)db_.remove_workspace(rec->name);
    if (rec->held) (void)db_.set_setting(held_key(rec->name), "");
    if (rec->session_id) (void)db_.close_session(rec->session_id);
    events_.publish("status", rec->name, {{"status", "removed"}, {"previous", rec->status}});
    if (rec->supervised) stop_async(rec, "stop");
    // Sweep what the runtime keeps for it (docker: its network and volumes) once it stopped.
    (void)db_.cancel("sweep", "");
    (void)db_.enqueue("sweep", "", "{}", JobPolicy{3, std::chrono::seconds(10), std::chrono::minutes(5)},
                      std::chrono::duration_cast<std::chrono::milliseconds>(opts_.stop_grace) +
                          std::chrono::seconds(1));
    changed = true;
  }
  if (!only) {
    if (invalid.size() != invalid_.size() ||
        !std::equal(invalid.begin(), invalid.end(), invalid_.begin(),
                    [](const InvalidFolder& a, const InvalidFolder& b) { return a.folder == b.folder; })) {
      for (const auto& i : invalid) {
        bool known = std::any_of(invalid_.begin(), invalid_.end(),
                                 [&](const InvalidFolder& o) { return o.folder == i.folder; });
        if (!known) logger()->warn("skipping folder '{}': {}", i.folder, i.error);
      }
      invalid_ = std::move(invalid);
      changed = true;
    }
  } else {
    for (auto& i : invalid) {
      bool known = std::any_of(invalid_.begin(), invalid_.end(),
                               [&](const InvalidFolder& o) { return o.folder == i.folder; });
      if (!known) {
        logger()->warn("skipping folder '{}': {}", i.folder, i.error);
        invalid_.push_back(std::move(i));
        changed = true;
      }
    }
  }
  if (changed) publish();
}

void Monitor::apply_spec(const std::shared_ptr<Record>& rec, WorkspaceSpec spec) {
  bool was_running = rec->supervised;
  rec->spec = std::move(spec);
  const auto& s = rec->spec;
  if (!s.prefix_note.empty() && s.error.empty()) logger()->info("[ws={}] {}", rec->name, s.prefix_note);
  bool docker_only = needs_docker(s, runtime_);
  bool can_run = runnable(s, runtime_);
  if (!s.error.empty() || docker_only) {
    rec->restarting = false;  // nothing comes back until the source is fixed
    rec->retry_at_ms = 0;
  }
  if (!s.error.empty()) {
    rec->status = "failed";
    rec->error = s.error;
    rec->reason = "invalid workspace";
    rec->log_tail.clear();
    logger()->warn("[ws={}] cannot run: {}", rec->name, s.error);
  } else if (s.type == WorkspaceType::static_site) {
    rec->status = "running";
    rec->error.clear();
    rec->reason.clear();
    rec->log_tail.clear();
  } else if (docker_only) {
    rec->status = "failed";
    rec->reason = "needs docker";
    rec->error = fmt::format(
        "this is a {} workspace ({}), which needs the docker runtime (`runtime: docker`): start "
        "a Docker engine and run `cloudyknight serve --runtime docker` (or set runtime.kind: "
        "docker in the config)",
        type_name(s.type), s.matched);
    logger()->warn("[ws={}] {}", rec->name, rec->error);
  } else if (!was_running && !rec->asleep) {
    // Runnable now, perhaps after a fix: start from the beginning.
    rec->status = "creating";
    rec->error.clear();
    rec->reason.clear();
    rec->log_tail.clear();
  }
  if (can_run && !was_running) {
    rec->supervised = true;
    ++supervisors_;
    spawn(io_, supervise(rec), "supervise " + rec->name);
  } else if (was_running) {
    // Running (or backing off) with an old spec: restart it; the supervisor picks up the new
    // spec, or ends if there is nothing to run any more.
    rec->start_reason = "configuration changed";
    request_restart(rec);
  }
}

RunSpec Monitor::run_spec(const Record& rec) const {
  return make_run_spec(rec.name, rec.path, rec.spec, opts_);
}

RunSpec make_run_spec(const std::string& name, const fs::path& dir, const WorkspaceSpec& spec,
                      const MonitorOptions& opts) {
  RunSpec r;
  r.name = name;
  r.type = std::string(type_name(spec.type));
  r.source = dir;
  r.install = spec.install;
  r.command = spec.command;
  r.image = spec.image;
  r.port = spec.port;
  r.env = spec.env;
  r.env["CK_BASE_PATH"] = workspace_base_path(name);
  r.env.emplace("BASE_URL", workspace_url(name, opts.address));
  r.keep_prefix = spec.prefix == PrefixMode::keep;
  r.domain = opts.address.domain;
  r.deps_key = deps_key(dir, spec);
  // workspace.json asks; the operator's ceilings decide (issue 13, row 14).
  std::uint64_t max_memory = opts.max_memory ? opts.max_memory : opts.memory;
  double max_cpus = opts.max_cpus > 0 ? opts.max_cpus : opts.cpus;
  int max_pids = opts.max_pids > 0 ? opts.max_pids : opts.pids;
  r.memory = spec.memory.value_or(opts.memory);
  if (r.memory > max_memory) {
    logger()->warn("[ws={}] memory {} capped to limits.max_memory {}", name, format_size(r.memory),
                   format_size(max_memory));
    r.memory = max_memory;
  }
  r.install_memory = std::max(opts.install_memory, r.memory);
  r.cpus = spec.cpus.value_or(opts.cpus);
  if (r.cpus > max_cpus) {
    logger()->warn("[ws={}] cpus {} capped to limits.max_cpus {}", name, r.cpus, max_cpus);
    r.cpus = max_cpus;
  }
  r.pids = std::min(opts.pids, max_pids);
  r.ready_timeout = opts.ready_timeout;
  return r;
}

net::awaitable<void> Monitor::job_loop() {
  while (!shutting_down_) {
    auto due = db_.due_jobs(256);
    if (due.has_value()) {
      for (const auto& job : due.value()) {
        if (job.kind == "start" || shutting_down_) continue;  // supervisors run start jobs
        auto claimed = db_.claim(job.id);
        if (claimed.has_error()) continue;
        job_event(claimed.value());
        if (job.kind == "sweep") {
          co_await run_cleanup(claimed.value());
        } else if (auto h = opts_.job_handlers.find(job.kind); h != opts_.job_handlers.end()) {
          run_handled(h->second, claimed.value());
        } else {
          auto f = db_.fail(job.id, "unknown job kind '" + job.kind + "' (written by a newer version?)");
          if (f.has_value()) job_event(f.value());
        }
      }
    }
    co_await wait_on(job_wake_, std::chrono::seconds(1));
  }
}

void Monitor::run_handled(const MonitorOptions::JobHandler& handler, const Job& job) {
  // `done` may come from any thread: the outcome is recorded on the monitor's.
  auto finish = [this, &handler, id = job.id](Result<void> r) {
    net::post(io_, [this, &handler, id, r = std::move(r)] {
      auto next = r.has_value() ? db_.complete(id) : db_.fail(id, r.error().message);
      if (next.has_error()) return;  // cancelled meanwhile: the result is dropped
      job_event(next.value());
      if (handler.after) handler.after(next.value());
    });
  };
  handler.run(job, std::move(finish));
}

net::awaitable<void> Monitor::run_cleanup(Job job) {
  std::set<std::string> keep;
  for (const auto& [name, rec] : records_) keep.insert(name);
  co_await runtime_.remove_orphans(std::move(keep));
  (void)db_.prune_jobs(std::chrono::hours(24), 1000);
  if (auto c = db_.complete(job.id); c.has_value()) job_event(c.value());
  // The next sweep in five minutes.
  (void)db_.enqueue("sweep", "", "{}", JobPolicy{3, std::chrono::seconds(10), std::chrono::minutes(5)},
                    std::chrono::minutes(5));
}

net::awaitable<void> Monitor::log_loop() {
  std::string chunk;
  while (!shutting_down_) {
    co_await sleep_for(std::chrono::milliseconds(200));
    bool listening = events_.has_subscribers();
    for (auto& [name, rec] : records_) {
      if (!listening) {
        rec->log_offset_known = false;
        continue;
      }
      std::error_code ec;
      auto path = runtime_.log_path(name);
      auto size = fs::file_size(path, ec);
      if (ec) continue;
      if (!rec->log_offset_known || size < rec->log_offset) {
        rec->log_offset = size;  // new listeners get what comes from now on
        rec->log_offset_known = true;
        continue;
      }
      if (size == rec->log_offset) continue;
      std::ifstream in(path, std::ios::binary);
      in.seekg(static_cast<std::streamoff>(rec->log_offset));
      chunk.resize(std::min<std::uint64_t>(size - rec->log_offset, 64 * 1024));
      in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      chunk.resize(static_cast<std::size_t>(in.gcount()));
      auto end = chunk.rfind('\n');
      if (end == std::string::npos) {
        if (chunk.size() < 64 * 1024) continue;  // wait for the rest of the line
        end = chunk.size() - 1;
      }
      rec->log_offset += end + 1;
      std::size_t pos = 0;
      while (pos <= end) {
        auto nl = chunk.find('\n', pos);
        if (nl == std::string::npos || nl > end) nl = end + 1;
        events_.publish("log", name, {{"line", chunk.substr(pos, nl - pos)}});
        pos = nl + 1;
      }
    }
  }
}

namespace {
// Stops one workspace and counts it down; parameters by value (the caller may be gone).
net::awaitable<void> stop_counted(Runtime& rt, std::string name, Duration grace,
                                  std::shared_ptr<int> left) {
  co_await rt.stop(name, grace);
  --*left;
}
}  // namespace

net::awaitable<void> Monitor::shutdown() {
  shutting_down_ = true;
  scan_timer_.cancel();
  job_wake_.cancel();
  start_slot_freed_.cancel();
  std::vector<std::shared_ptr<Record>> recs;
  for (auto& [name, rec] : records_) {
    rec->wake.cancel();
    if (rec->session_id) (void)db_.close_session(rec->session_id);
    if (rec->activity->last_ms > rec->saved_ms) (void)db_.save_activity(name, rec->activity->last_ms);
    if (rec->supervised && !rec->asleep) {
      rec->status = "stopping";
      recs.push_back(rec);
    }
  }
  publish();
  auto pending = std::make_shared<int>(static_cast<int>(recs.size()));
  for (auto& rec : recs) {
    spawn(io_, stop_counted(runtime_, rec->name, opts_.stop_grace, pending), "stop " + rec->name);
  }
  auto deadline = std::chrono::steady_clock::now() + opts_.stop_grace + std::chrono::seconds(2);
  while ((*pending > 0 || supervisors_ > 0) && std::chrono::steady_clock::now() < deadline) {
    co_await sleep_for(std::chrono::milliseconds(20));
  }
  if (*pending > 0) {
    log::get("monitor")->warn("{} workspace(s) did not stop in time; killing them", *pending);
    runtime_.kill_all();
  }
}

void Monitor::publish() {
  auto snap = std::make_shared<Snapshot>();
  snap->runtime_kind = runtime_.kind();
  snap->isolation = runtime_.isolation();
  snap->storage_location = storage_.location();
  snap->storage_error = storage_error_;
  snap->invalid = invalid_;
  std::vector<std::pair<std::string, json>> changes;
  for (const auto& [name, rec] : records_) {
    WorkspaceView v;
    v.name = name;
    v.type = std::string(type_name(rec->spec.type));
    v.matched = rec->spec.matched;
    v.status = rec->status;
    v.phase = rec->phase;
    v.error = rec->error;
    v.reason = rec->reason;
    v.log_tail = rec->log_tail;
    v.description = rec->spec.description;
    v.icon = rec->spec.icon;
    v.is_public = rec->spec.is_public;
    v.preview_of = rec->spec.preview_of;
    v.preview_branch = rec->spec.preview_branch;
    v.is_static = rec->spec.type == WorkspaceType::static_site && rec->spec.error.empty();
    if (v.is_static) v.static_root = rec->path / rec->spec.static_root;
    v.keep_prefix = rec->spec.prefix == PrefixMode::keep && !v.is_static;
    v.upstream_host = rec->app.host;
    v.port = rec->app.port;
    v.pid = rec->app.pid;
    v.restarts = rec->restarts;
    v.restarting = rec->restarting;
    v.instance = rec->instance;
    v.replacing = rec->replacing;
    v.attempt_ms = rec->attempt_ms;
    v.retry_at_ms = rec->status == "failed" ? rec->retry_at_ms : 0;
    v.frozen = rec->frozen;
    v.held = rec->held;
    v.runs = runnable(rec->spec, runtime_);
    v.idle = rec->policy;
    v.activity = rec->activity;
    if (rec->status != rec->pub_status || rec->reason != rec->pub_reason || rec->frozen != rec->pub_frozen ||
        rec->phase != rec->pub_phase) {
      json e = {{"status", rec->status}, {"previous", rec->pub_status}, {"frozen", rec->frozen}};
      if (!rec->phase.empty()) e["phase"] = rec->phase;
      if (!rec->reason.empty()) e["reason"] = rec->reason;
      if (!rec->error.empty() && rec->status == "failed") e["error"] = rec->error;
      changes.emplace_back(name, std::move(e));
      if (rec->status != rec->pub_status) {
        std::string why = rec->status == "failed" ? rec->error : rec->reason;
        (void)db_.record_status(name, rec->status, why);
        (void)db_.upsert_workspace(name, v.type, rec->status);
      }
      rec->pub_status = rec->status;
      rec->pub_reason = rec->reason;
      rec->pub_frozen = rec->frozen;
      rec->pub_phase = rec->phase;
    }
    snap->workspaces.push_back(std::move(v));
  }
  out_.store(std::move(snap));
  // Only now: a client that reacts to an event finds the API and the gateway agreeing.
  for (auto& [name, e] : changes) events_.publish("status", name, std::move(e));
}

}  // namespace ck
