#include "monitor/monitor.h"

#include <boost/asio/redirect_error.hpp>
#include <fmt/format.h>
#include <fstream>
#include <set>
#include <sstream>

#include "core/hash.h"
#include "core/log.h"
#include "core/names.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

auto logger() {
  static auto l = log::get("monitor");
  return l;
}

constexpr auto kBackoffStart = std::chrono::seconds(1);
constexpr auto kBackoffCap = std::chrono::minutes(5);
constexpr auto kHealthyReset = std::chrono::minutes(10);

// The files whose content decides which dependencies get installed.
std::string deps_key(const fs::path& dir, const WorkspaceSpec& spec) {
  std::string key = spec.install;
  for (const char* f : {"package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock",
                        "requirements.txt", "pyproject.toml", "composer.json", "composer.lock",
                        "go.mod", "go.sum", "Gemfile", "Gemfile.lock"}) {
    std::ifstream in(dir / f, std::ios::binary);
    if (!in) continue;
    std::stringstream ss;
    ss << in.rdbuf();
    key += fmt::format("|{}:{}", f, stable_hash(ss.str()));
  }
  return stable_hash(key);
}

bool runs_in_runtime(const WorkspaceSpec& spec) {
  return spec.error.empty() && spec.type != WorkspaceType::static_site;
}

// Compose and Dockerfile workspaces can only run where there is a container engine.
bool needs_docker(const WorkspaceSpec& spec, const Runtime& runtime) {
  return (spec.type == WorkspaceType::compose || spec.type == WorkspaceType::dockerfile) &&
         runtime.kind() == "process";
}

}  // namespace

struct Monitor::Record {
  explicit Record(net::io_context& io) : wake(io) {}
  std::string name;
  fs::path path;
  WorkspaceSpec spec;
  std::string status = "creating";
  std::string phase;
  std::string error;
  std::string log_tail;
  RunningApp app;
  int restarts = 0;
  bool supervised = false;
  bool removed = false;
  bool restart_requested = false;
  net::steady_timer wake;  // cut short a backoff wait
  std::shared_ptr<Activity> activity = std::make_shared<Activity>();
};

Monitor::Monitor(net::io_context& io, Storage& storage, Runtime& runtime, SnapshotHolder& out,
                 MonitorOptions opts)
    : io_(io), storage_(storage), runtime_(runtime), out_(out), opts_(opts), scan_timer_(io) {}

Monitor::~Monitor() = default;

void Monitor::start() {
  scan_now();
  publish();  // even when the first scan changed nothing (no workspaces yet)
  spawn(io_, scan_loop(), "monitor scan loop");
}

net::awaitable<void> Monitor::scan_loop() {
  while (!shutting_down_) {
    scan_timer_.expires_after(opts_.scan_interval);
    boost::system::error_code ec;
    co_await scan_timer_.async_wait(net::redirect_error(net::use_awaitable, ec));
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
  reconcile(entries.value());
}

void Monitor::reconcile(const std::vector<StorageEntry>& entries) {
  bool changed = false;
  std::vector<InvalidFolder> invalid;
  std::set<std::string> seen;
  for (const auto& e : entries) {
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
      records_[e.folder] = rec;
      logger()->info("[ws={}] found: {} — {}", e.folder, type_name(spec.type),
                     spec.matched.empty() ? "no match" : spec.matched);
      apply_spec(rec, std::move(spec));
      changed = true;
    } else if (it->second->spec.fingerprint() != spec.fingerprint() ||
               it->second->spec.description != spec.description ||
               it->second->spec.icon != spec.icon || it->second->spec.is_public != spec.is_public) {
      logger()->info("[ws={}] its configuration changed", e.folder);
      apply_spec(it->second, std::move(spec));
      changed = true;
    }
  }
  for (auto it = records_.begin(); it != records_.end();) {
    if (seen.count(it->first)) {
      ++it;
      continue;
    }
    auto rec = it->second;
    logger()->info("[ws={}] removed from storage; stopping it", rec->name);
    rec->removed = true;
    rec->wake.cancel();
    it = records_.erase(it);
    if (rec->supervised) {
      auto stop_task = runtime_.stop(rec->name, opts_.stop_grace);
      spawn(io_, std::move(stop_task), "stop " + rec->name);
    }
    changed = true;
  }
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
  if (changed) publish();
  if (!sweeping_) {
    sweeping_ = true;
    spawn(io_, sweep_orphans(std::move(seen)), "remove orphaned containers");
  }
}

net::awaitable<void> Monitor::sweep_orphans(std::set<std::string> keep) {
  co_await runtime_.remove_orphans(std::move(keep));
  sweeping_ = false;
}

void Monitor::apply_spec(const std::shared_ptr<Record>& rec, WorkspaceSpec spec) {
  bool was_running = rec->supervised;
  rec->spec = std::move(spec);
  const auto& s = rec->spec;
  bool docker_only = needs_docker(s, runtime_);
  bool runnable = runs_in_runtime(s) && !docker_only;
  if (!s.error.empty()) {
    rec->status = "failed";
    rec->error = s.error;
    rec->log_tail.clear();
    logger()->warn("[ws={}] cannot run: {}", rec->name, s.error);
  } else if (s.type == WorkspaceType::static_site) {
    rec->status = "running";
    rec->error.clear();
    rec->log_tail.clear();
  } else if (docker_only) {
    rec->status = "failed";
    rec->error = fmt::format(
        "this is a {} workspace ({}), which needs the docker runtime: start a Docker engine and "
        "run `cloudyknight serve --runtime docker`",
        type_name(s.type), s.matched);
    logger()->warn("[ws={}] {}", rec->name, rec->error);
  } else if (!was_running) {
    // Runnable now, perhaps after a fix: start from the beginning.
    rec->status = "creating";
    rec->error.clear();
    rec->log_tail.clear();
  }
  if (runnable && !was_running) {
    rec->supervised = true;
    ++supervisors_;
    spawn(io_, supervise(rec), "supervise " + rec->name);
  } else if (was_running) {
    // Running (or backing off) with an old spec: restart it; the supervisor picks up the new
    // spec, or ends if there is nothing to run any more.
    rec->restart_requested = true;
    rec->wake.cancel();
    auto stop_task = runtime_.stop(rec->name, opts_.stop_grace);
    spawn(io_, std::move(stop_task), "restart " + rec->name);
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
  r.deps_key = deps_key(dir, spec);
  r.memory = spec.memory.value_or(opts.memory);
  r.install_memory = std::max(opts.install_memory, r.memory);
  r.cpus = spec.cpus.value_or(opts.cpus);
  r.pids = opts.pids;
  r.ready_timeout = opts.ready_timeout;
  return r;
}

net::awaitable<void> Monitor::supervise(std::shared_ptr<Record> rec) {
  auto log = logger();
  Duration backoff = kBackoffStart;
  auto done = [&] { return rec->removed || shutting_down_; };
  while (!done() && runs_in_runtime(rec->spec) && !needs_docker(rec->spec, runtime_)) {
    rec->restart_requested = false;
    rec->status = "initializing";
    rec->phase = "copying the source";
    publish();
    auto on_phase = [rec, this](Phase phase, const std::string&) {
      rec->phase = phase == Phase::preparing    ? "copying the source"
                   : phase == Phase::installing ? "installing dependencies"
                                                : "starting the app";
      publish();
    };
    auto result = co_await runtime_.start(run_spec(*rec), on_phase);
    if (done()) break;
    if (result.has_value()) {
      rec->app = result.value();
      rec->status = "running";
      rec->phase.clear();
      rec->error.clear();
      rec->log_tail.clear();
      log->info("[ws={} pid={}] running on {}:{}", rec->name, rec->app.pid, rec->app.host, rec->app.port);
      publish();
      auto started = std::chrono::steady_clock::now();
      ExitInfo exit = co_await runtime_.wait_exit(rec->name);
      rec->app = RunningApp{};
      if (done()) break;
      if (rec->restart_requested) {
        backoff = kBackoffStart;
        continue;
      }
      if (std::chrono::steady_clock::now() - started > kHealthyReset) backoff = kBackoffStart;
      rec->restarts++;
      rec->error = exit.describe();
      rec->log_tail = tail_file(runtime_.log_path(rec->name), 20);
    } else {
      if (rec->restart_requested) continue;
      rec->restarts++;
      rec->error = result.error().message;
      rec->log_tail = tail_file(runtime_.log_path(rec->name), 20);
    }
    rec->status = "failed";
    rec->phase.clear();
    log->warn("[ws={}] {}; restarting in {}", rec->name, rec->error, format_duration(backoff));
    publish();
    rec->wake.expires_after(backoff);
    boost::system::error_code ec;
    co_await rec->wake.async_wait(net::redirect_error(net::use_awaitable, ec));
    if (!rec->restart_requested) backoff = std::min<Duration>(backoff * 2, kBackoffCap);
  }
  rec->supervised = false;
  --supervisors_;
  if (!done() && rec->status == "running" && runs_in_runtime(rec->spec)) rec->status = "stopped";
  publish();
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
  std::vector<std::shared_ptr<Record>> recs;
  for (auto& [name, rec] : records_) {
    rec->wake.cancel();
    if (rec->supervised) {
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
  snap->idle_after = opts_.idle_after;
  for (const auto& [name, rec] : records_) {
    WorkspaceView v;
    v.name = name;
    v.type = std::string(type_name(rec->spec.type));
    v.matched = rec->spec.matched;
    v.status = rec->status;
    v.phase = rec->phase;
    v.error = rec->error;
    v.log_tail = rec->log_tail;
    v.description = rec->spec.description;
    v.icon = rec->spec.icon;
    v.is_public = rec->spec.is_public;
    v.is_static = rec->spec.type == WorkspaceType::static_site && rec->spec.error.empty();
    if (v.is_static) v.static_root = rec->path / rec->spec.static_root;
    v.upstream_host = rec->app.host;
    v.port = rec->app.port;
    v.pid = rec->app.pid;
    v.restarts = rec->restarts;
    v.activity = rec->activity;
    snap->workspaces.push_back(std::move(v));
  }
  out_.store(std::move(snap));
}

}  // namespace ck
