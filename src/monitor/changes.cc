// The monitor's answers to source changes: a static site reloads its pages, an app in "hmr"
// mode gets the changed files copied in, and any other app restarts, once per burst of
// changes, as a new version beside the running one (blue/green) where the runtime can.
#include <fmt/format.h>

#include <set>
#include <string>
#include <vector>

#include "core/log.h"
#include "monitor/monitor.h"
#include "monitor/record.h"
#include "storage/dir/watcher.h"

namespace ck {
using namespace mon;  // NOLINT(google-build-using-namespace): the module's own helpers
using json = nlohmann::json;

namespace {

// File changes in restart mode: the first one after a quiet spell restarts the app at once;
// changes while it starts, or soon after, wait for the source to be quiet this long (at most
// kRestartSettleCap after the first of them) and then give one restart.
constexpr auto kRestartSettle = std::chrono::seconds(1);
constexpr auto kRestartSettleCap = std::chrono::seconds(30);

}  // namespace

void Monitor::on_changes(const WatchBatch& batch) {
  if (shutting_down_) return;
  if (batch.rescan) {
    logger()->info("file-change events were lost (the kernel queue overflowed); rescanning everything");
    scan_now();
    for (auto& [name, rec] : records_) {
      auto sig = tree_signature(rec->path, skip_dirs());
      if (sig == rec->tree_sig) continue;
      rec->tree_sig = sig;
      source_changed(rec, {}, true);
    }
    return;
  }
  auto entries = storage_.list();
  if (entries.has_error()) {
    scan_now();  // reports the error once
    return;
  }
  reconcile(entries.value(), &batch.workspaces);
  for (const auto& name : batch.workspaces) {
    auto it = records_.find(name);
    if (it == records_.end()) continue;
    auto rec = it->second;
    auto files = batch.files.find(name);
    bool all = batch.all_files.count(name) > 0;
    if (!all && (files == batch.files.end() || files->second.empty())) continue;
    auto sig = tree_signature(rec->path, skip_dirs());
    if (sig == rec->tree_sig) continue;  // a new record, or nothing observable changed
    rec->tree_sig = sig;
    static const std::set<std::string> none;
    source_changed(rec, files == batch.files.end() ? none : files->second, all);
  }
}

void Monitor::source_changed(const std::shared_ptr<Record>& rec, const std::set<std::string>& paths,
                             bool all) {
  json list = json::array();
  for (const auto& p : paths) {
    if (list.size() >= 100) break;
    list.push_back(p);
  }
  events_.publish("files", rec->name, {{"paths", list}, {"all", all || paths.empty()}});
  if (rec->spec.type == WorkspaceType::static_site) {
    events_.publish("reload", rec->name, {{"paths", list}});
    return;
  }
  if (!rec->supervised || rec->spec.reload == "none") return;
  if (rec->spec.reload == "hmr" && rec->status == "running" && !all && !paths.empty()) {
    spawn(io_, hot_update(rec, std::vector<std::string>(paths.begin(), paths.end())), "hot update " + rec->name);
    return;
  }
  if (rec->asleep) return;  // it starts from the new source when it wakes
  // Changes while it starts, or right after a change, are one burst (an editor saving, a
  // sync): they wait for the start to end and the source to settle, then restart it once.
  auto now = std::chrono::steady_clock::now();
  bool recent = now - rec->last_change < kRestartSettle;
  rec->last_change = now;
  bool starting = rec->restart_requested || rec->replacing || rec->status == "creating" ||
                  rec->status == "initializing";
  if (rec->change_pending || starting || (recent && rec->status == "running")) {
    if (!rec->change_pending) {
      rec->change_pending = true;
      rec->pending_since = now;
      logger()->info("[ws={}] source changed while it {}; restarting it once the changes settle",
                     rec->name, starting ? "starts" : "had just restarted");
      spawn(io_, restart_when_settled(rec), "restart " + rec->name);
    }
    return;
  }
  logger()->info("[ws={}] source changed ({}); restarting it", rec->name,
                 all || paths.empty() ? "many files" : fmt::format("{} file(s)", paths.size()));
  rec->start_reason = "source changed";
  restart_for_change(rec);
  publish();
}

net::awaitable<void> Monitor::restart_when_settled(std::shared_ptr<Record> rec) {
  while (rec->change_pending && !rec->removed && !shutting_down_) {
    auto now = std::chrono::steady_clock::now();
    if (rec->asleep || !rec->supervised) break;  // it starts from the new source when it wakes
    bool settled =
        now - rec->last_change >= kRestartSettle || now - rec->pending_since >= kRestartSettleCap;
    bool started = rec->status == "running" && !rec->restart_requested && !rec->replacing;
    // A start that failed is retried with the new source at once, as for any change.
    if (rec->status == "failed" || (started && settled)) {
      rec->change_pending = false;
      logger()->info("[ws={}] source changed; restarting it", rec->name);
      rec->start_reason = "source changed";
      restart_for_change(rec);  // a failed one restarts the plain way
      publish();
      co_return;
    }
    co_await sleep_for(std::chrono::milliseconds(100));
  }
  rec->change_pending = false;
}

net::awaitable<void> Monitor::hot_update(std::shared_ptr<Record> rec, std::vector<std::string> paths) {
  auto r = co_await runtime_.update_files(rec->name, rec->path, paths);
  if (r.has_error()) {
    logger()->warn("[ws={}] cannot copy the changed files in ({}); restarting it", rec->name, r.error().message);
    request_restart(rec);
    publish();
    co_return;
  }
  json list = paths;
  events_.publish("reload", rec->name, {{"paths", list}, {"mode", "hmr"}});
}

void Monitor::restart_for_change(const std::shared_ptr<Record>& rec) {
  if (rec->supervised && !rec->asleep && !rec->sleep_requested && !rec->replacing &&
      rec->status == "running" && rec->app.pid != 0 && runtime_.can_replace(run_spec(*rec))) {
    rec->replacing = true;
    spawn(io_, replace_app(rec), "replace " + rec->name);
    return;
  }
  request_restart(rec);
}

// Blue/green: the new version starts beside the running app, which serves until the new one
// answers; then the route switches and the old one stops. A new version that does not start
// falls back to a plain restart, which shows its failure as any start's.
net::awaitable<void> Monitor::replace_app(std::shared_ptr<Record> rec) {
  auto log = logger();
  log->info("[ws={}] starting the new version beside the running one", rec->name);
  rec->attempt_ms = unix_ms();
  rec->phase = "new version: " + std::string(phase_text(Phase::preparing));
  publish();
  auto on_phase = [rec, this](Phase phase, const std::string&) {
    if (!rec->replacing) return;
    rec->phase = "new version: " + std::string(phase_text(phase));
    publish();
  };
  auto switched = [rec, this, log](const RunningApp& next) {
    log->info("[ws={} pid={}] new version running on {}:{}; stopping the old one (pid {})", rec->name,
              next.pid, next.host, next.port, rec->app.pid);
    rec->app = next;
    rec->instance++;
    rec->frozen = false;
    rec->phase.clear();
    start_metrics().ok.inc();
    publish();
  };
  auto claimed_at = std::chrono::steady_clock::now();
  auto result = co_await runtime_.replace(run_spec(*rec), on_phase, switched, opts_.stop_grace);
  rec->replacing = false;
  if (rec->removed || shutting_down_) co_return;
  if (result.has_value()) {
    start_metrics().install.observe(std::chrono::steady_clock::now() - claimed_at);
    publish();
    co_return;
  }
  rec->phase.clear();
  if (rec->restart_requested || rec->asleep || rec->sleep_requested || !rec->supervised) {
    publish();  // stopped or restarted meanwhile: that wins
    co_return;
  }
  log->warn("[ws={}] the new version did not start beside the old one ({}); restarting it",
            rec->name, result.error().message);
  request_restart(rec);
  publish();
}

}  // namespace ck
