// Running a workspace's app: claiming a start slot, waiting for the source, copying and
// installing, launching, probing readiness, and supervising it (restarts with backoff, crashes,
// sleep and wake) until it is removed or the daemon stops.
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

net::awaitable<void> Monitor::acquire_start_slot() {
  while (starts_running_ >= start_limit_ && !shutting_down_) {
    co_await wait_on(start_slot_freed_, kForever);
  }
  ++starts_running_;
}

void Monitor::release_start_slot() {
  --starts_running_;
  start_slot_freed_.cancel();  // every waiter looks again; one gets the slot
}

void Monitor::job_event(const Job& job) {
  json j = {{"id", job.id},           {"kind", job.kind},
            {"state", std::string(job_state_name(job.state))},
            {"attempts", job.attempts}, {"max_attempts", job.max_attempts}};
  if (!job.last_error.empty()) j["error"] = job.last_error;
  if (job.state == JobState::queued) j["next_run_ms"] = job.next_run_ms;
  events_.publish("job", job.workspace, std::move(j));
}

net::awaitable<void> Monitor::source_ready(std::shared_ptr<Record> rec) {
  // The hook answers from another thread: its `done` posts the cancel of a timer waited on
  // here, so the wait ends at the answer or at the timeout, whichever comes first.
  auto signal = std::make_shared<net::steady_timer>(io_);
  auto answered = std::make_shared<bool>(false);
  signal->expires_after(opts_.before_start_timeout);
  opts_.before_start(rec->name, [&io = io_, signal, answered] {
    net::post(io, [signal, answered] {
      *answered = true;
      signal->cancel();
    });
  });
  boost::system::error_code ec;
  co_await signal->async_wait(net::redirect_error(net::use_awaitable, ec));
  if (!*answered) {
    logger()->warn("[ws={}] its source was not up to date after {}; starting with what the folder holds",
                   rec->name, format_duration(opts_.before_start_timeout));
  }
  // What the hook changed (a pull) is what this start runs: the watcher's batch for it later
  // finds the same tree and restarts nothing.
  rec->tree_sig = tree_signature(rec->path, skip_dirs());
  WorkspaceSpec spec = detect_workspace(rec->name, rec->path);
  if (spec.fingerprint() != rec->spec.fingerprint() && spec.error.empty()) rec->spec = std::move(spec);
}

net::awaitable<void> Monitor::supervise(std::shared_ptr<Record> rec) {
  auto log = logger();
  auto done = [&] { return rec->removed || shutting_down_; };
  while (!done() && runnable(rec->spec, runtime_)) {
    if (rec->asleep) {
      co_await wait_on(rec->wake, kForever);
      continue;
    }
    rec->restart_requested = false;
    // One start job per workspace: after a restart of the daemon the unfinished one resumes.
    json payload = {{"reason", rec->start_reason}};
    auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(rec->start_delay);
    auto enq = db_.enqueue("start", rec->name, payload.dump(), opts_.start_jobs, delay);
    rec->start_delay = Duration{0};
    Job job;
    if (enq.has_value()) {
      job = enq.value();
    } else {
      log->warn("[ws={}] state.db: {} (starting without a job record)", rec->name, enq.error().message);
    }
    if (job.id) {
      auto wait_ms = job.next_run_ms - db_.now_ms();
      if (wait_ms > 0) {
        co_await wait_on(rec->wake, std::chrono::milliseconds(wait_ms));
        continue;  // look again: due now, or restarted, asleep, removed
      }
      auto claimed = db_.claim(job.id);
      if (claimed.has_error()) {
        log->warn("[ws={}] cannot claim start job #{}: {}", rec->name, job.id, claimed.error().message);
        co_await wait_on(rec->wake, std::chrono::seconds(1));
        continue;
      }
      job = claimed.value();
      if (job.attempts > 1) {
        log->info("[ws={}] start job #{}: attempt {} of {}", rec->name, job.id, job.attempts, job.max_attempts);
      }
      job_event(job);
    }
    auto claimed_at = std::chrono::steady_clock::now();
    rec->attempt_ms = unix_ms();
    rec->status = "creating";
    rec->reason.clear();
    rec->phase = starts_running_ >= start_limit_ ? "waiting for a free start slot" : "";
    publish();
    while (rec->stops_in_flight > 0 && !done()) co_await sleep_for(std::chrono::milliseconds(10));
    co_await acquire_start_slot();
    if (done() || rec->restart_requested || rec->asleep) {
      release_start_slot();
      continue;
    }
    if (opts_.before_start) {
      rec->status = "initializing";
      rec->phase = "bringing the source up to date";
      publish();
      co_await source_ready(rec);
      if (done() || rec->restart_requested || rec->asleep) {
        release_start_slot();
        continue;
      }
    }
    rec->status = "initializing";
    rec->phase = phase_text(Phase::preparing);
    publish();
    auto on_phase = [rec, this](Phase phase, const std::string&) {
      rec->phase = phase_text(phase);
      publish();
    };
    auto result = co_await runtime_.start(run_spec(*rec), on_phase);
    release_start_slot();
    if (done()) break;
    if (result.has_value() && rec->asleep) {  // stopped from the API while it was starting
      if (job.id) (void)db_.complete(job.id);
      stop_async(rec, "stop");
      continue;
    }
    if (result.has_value()) {
      start_metrics().ok.inc();
      start_metrics().install.observe(std::chrono::steady_clock::now() - claimed_at);
      if (job.id) {
        if (auto c = db_.complete(job.id); c.has_value()) job_event(c.value());
      }
      rec->app = result.value();
      rec->instance++;
      rec->restarting = false;
      rec->retry_at_ms = 0;
      rec->status = "running";
      rec->phase.clear();
      rec->error.clear();
      rec->reason.clear();
      rec->log_tail.clear();
      log->info("[ws={} pid={}] running on {}:{}", rec->name, rec->app.pid, rec->app.host, rec->app.port);
      publish();
      auto started = std::chrono::steady_clock::now();
      int waited = rec->app.pid;
      ExitInfo exit = co_await runtime_.wait_exit(rec->name);
      for (;;) {
        // A blue/green replace in flight decides what this exit was: its new version took over
        // (follow that one), or it failed and the exit is the old app's own. Should the old
        // app die before the switch, requests wait for the new one.
        if (rec->replacing && rec->app.pid == waited && !done()) {
          rec->restarting = true;
          publish();
        }
        while (rec->replacing && !done()) co_await sleep_for(std::chrono::milliseconds(20));
        if (done() || rec->app.pid == 0 || rec->app.pid == waited) break;
        waited = rec->app.pid;
        if (rec->restarting) {
          rec->restarting = false;
          publish();
        }
        started = std::chrono::steady_clock::now();
        exit = co_await runtime_.wait_exit(rec->name);
      }
      rec->app = RunningApp{};
      rec->frozen = false;
      if (done()) break;
      if (rec->sleep_requested) {
        rec->sleep_requested = false;
        if (rec->wake_pending) {
          rec->wake_pending = false;
          rec->restarting = true;
          rec->start_reason = "wake";
          continue;
        }
        rec->asleep = true;
        rec->restarting = false;
        rec->status = "stopped";
        if (rec->held) {
          rec->reason = std::string(kHeldReason);
          log->info("[ws={}] stopped from the API (it stays stopped until started)", rec->name);
        } else {
          rec->reason = "idle";
          log->info("[ws={}] stopped: no activity for {} (the next request starts it again)",
                    rec->name, format_duration(rec->policy.stop_after));
        }
        publish();
        continue;
      }
      if (rec->restart_requested) {
        rec->crash_streak = 0;
        continue;
      }
      if (std::chrono::steady_clock::now() - started > kHealthyReset) rec->crash_streak = 0;
      rec->crash_streak++;
      rec->restarts++;
      rec->error = exit.describe();
      rec->log_tail = tail_file(runtime_.log_path(rec->name), 20);
      rec->start_delay = std::min<Duration>(kBackoffStart * (1 << std::min(rec->crash_streak - 1, 12)), kBackoffCap);
      rec->start_reason = "crashed";
      rec->restarting = true;  // requests wait for it to come back (gateway: within wake_timeout)
      rec->retry_at_ms =
          unix_ms() +
          std::chrono::duration_cast<std::chrono::milliseconds>(rec->start_delay).count();
      rec->status = "failed";
      rec->reason = "crashed; restarting in " + format_duration(rec->start_delay);
      rec->phase.clear();
      log->warn("[ws={}] {}; restarting in {}", rec->name, rec->error, format_duration(rec->start_delay));
      publish();
      continue;
    }
    if (rec->restart_requested || rec->asleep) continue;  // stopped on purpose mid-start
    start_metrics().failed.inc();
    rec->restarts++;
    rec->error = result.error().message;
    rec->log_tail = tail_file(runtime_.log_path(rec->name), 20);
    rec->status = "failed";
    rec->phase.clear();
    Duration retry_in = kBackoffStart;
    bool dead = false;
    if (job.id) {
      if (auto f = db_.fail(job.id, rec->error); f.has_value()) {
        job = f.value();
        job_event(job);
        dead = job.state == JobState::dead;
        retry_in = std::chrono::milliseconds(std::max<std::int64_t>(job.next_run_ms - job.updated_ms, 0));
      }
    } else {
      retry_in = std::min<Duration>(kBackoffStart * (1 << std::min(rec->restarts - 1, 12)), kBackoffCap);
      rec->start_delay = retry_in;
    }
    rec->retry_at_ms =
        dead ? 0
             : unix_ms() + std::chrono::duration_cast<std::chrono::milliseconds>(retry_in).count();
    if (dead) {
      rec->restarting = false;
      rec->reason = fmt::format("gave up after {} attempts", job.attempts);
      log->error("[ws={}] {}; gave up after {} attempts (job #{} is dead; fix the source or retry it "
                 "from the API)",
                 rec->name, rec->error, job.attempts, job.id);
      publish();
      co_await wait_on(rec->wake, kForever);  // a source change or a retry wakes it
      continue;
    }
    rec->reason = job.id ? fmt::format("restarting in {} (attempt {} of {})", format_duration(retry_in),
                                       job.attempts + 1, job.max_attempts)
                         : "restarting in " + format_duration(retry_in);
    log->warn("[ws={}] {}; {}", rec->name, rec->error, rec->reason);
    publish();
  }
  rec->supervised = false;
  --supervisors_;
  if (!done() && rec->status == "running" && runs_in_runtime(rec->spec)) rec->status = "stopped";
  publish();
}

}  // namespace ck
