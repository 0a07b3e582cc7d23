// The monitor's answers to traffic and to the API: a request wakes or thaws a workspace, the
// API starts, stops or restarts it, and the idle policy freezes and stops what nobody uses.
#include "monitor/monitor.h"

#include <fmt/format.h>

#include "monitor/record.h"

namespace ck {
using namespace mon;  // NOLINT(google-build-using-namespace): the module's own helpers

void Monitor::wake(const std::string& name) {
  auto it = records_.find(name);
  if (it == records_.end() || shutting_down_) return;
  auto rec = it->second;
  if (rec->held) return;  // stopped from the API: only start or restart brings it back
  rec->activity->last_ms.store(unix_ms(), std::memory_order_relaxed);
  if (rec->frozen) start_freeze(rec, false);
  if (rec->asleep) {
    rec->asleep = false;
    rec->restarting = true;  // every request waits for it, not only the one that woke it
    rec->start_reason = "wake";
    rec->status = "creating";
    rec->reason.clear();
    rec->level = ActivityLevel::active;
    logger()->info("[ws={}] waking up: a request arrived", name);
    rec->wake.cancel();
    publish();
  } else if (rec->sleep_requested) {
    rec->wake_pending = true;
  }
}

void Monitor::act(const std::string& name, WorkspaceAction action) {
  auto it = records_.find(name);
  if (it == records_.end() || shutting_down_) return;
  auto rec = it->second;
  if (!runnable(rec->spec, runtime_) || !rec->supervised) return;
  auto log = logger();
  if (action == WorkspaceAction::stop) {
    if (!rec->held) {
      rec->held = true;
      if (auto r = db_.set_setting(held_key(name), "1"); r.has_error()) {
        log->warn("[ws={}] state.db: {} (the stop will not survive a restart)", name,
                  r.error().message);
      }
    }
    rec->wake_pending = false;
    rec->restarting = false;
    log->info("[ws={}] stop requested from the API", name);
    if (rec->asleep) {
      rec->reason = std::string(kHeldReason);
    } else if (rec->sleep_requested) {
      rec->reason = std::string(kHeldReason);  // the supervisor marks it stopped once it exits
    } else if (rec->status == "running") {
      rec->sleep_requested = true;
      rec->status = "stopping";
      rec->reason = std::string(kHeldReason);
      stop_async(rec, "stop");
    } else {
      // Starting, backing off after a failure or given up: drop the start and whatever runs.
      (void)db_.cancel("start", name);
      rec->asleep = true;
      rec->status = "stopped";
      rec->reason = std::string(kHeldReason);
      rec->phase.clear();
      rec->wake.cancel();
      stop_async(rec, "stop");
    }
    publish();
    return;
  }
  if (rec->held) {
    rec->held = false;
    if (auto r = db_.set_setting(held_key(name), ""); r.has_error()) {
      log->warn("[ws={}] state.db: {}", name, r.error().message);
    }
  }
  const char* why = action == WorkspaceAction::start ? "start requested" : "restart requested";
  log->info("[ws={}] {} from the API", name, why);
  rec->activity->last_ms.store(unix_ms(), std::memory_order_relaxed);
  rec->level = ActivityLevel::active;
  if (rec->asleep) {
    rec->asleep = false;
    rec->start_reason = why;
    rec->status = "creating";
    rec->reason.clear();
    rec->wake.cancel();
  } else if (rec->sleep_requested) {
    rec->wake_pending = true;
  } else if (action == WorkspaceAction::restart || rec->status == "failed") {
    rec->start_reason = why;
    request_restart(rec);
  } else if (rec->frozen) {
    start_freeze(rec, false);
  }
  publish();
}

void Monitor::start_freeze(const std::shared_ptr<Record>& rec, bool frozen) {
  if (rec->freezing) return;
  rec->freezing = true;
  spawn(io_, freeze(rec, frozen), (frozen ? "freeze " : "thaw ") + rec->name);
}

net::awaitable<void> Monitor::freeze(std::shared_ptr<Record> rec, bool frozen) {
  // (No co_await inside ?: — GCC 12 miscompiles it.)
  Result<void> r = outcome::success();
  if (frozen) {
    r = co_await runtime_.freeze(rec->name);
  } else {
    r = co_await runtime_.thaw(rec->name);
  }
  rec->freezing = false;
  if (r.has_error()) {
    logger()->warn("[ws={}] cannot {}: {}", rec->name, frozen ? "freeze it" : "resume it", r.error().message);
    rec->freeze_failed = frozen;
    co_return;
  }
  rec->frozen = frozen;
  logger()->info("[ws={}] {}", rec->name,
                 frozen ? fmt::format("frozen: no activity for {} (a request resumes it)",
                                      format_duration(rec->policy.background_after))
                        : "resumed");
  publish();
  // Activity may have come while the freeze was in flight.
  if (frozen && activity_level(rec->activity->sample(), rec->policy, unix_ms()) < ActivityLevel::background) {
    start_freeze(rec, false);
  }
}

net::awaitable<void> Monitor::idle_loop() {
  while (!shutting_down_) {
    auto shortest = std::chrono::milliseconds(1000 * 4);
    for (auto& [name, rec] : records_) {
      shortest = std::min({shortest, rec->policy.idle_after, rec->policy.grace, rec->policy.background_after});
    }
    co_await sleep_for(std::clamp<std::chrono::milliseconds>(shortest / 4, std::chrono::milliseconds(50),
                                                              std::chrono::milliseconds(1000)));
    if (shutting_down_) break;
    auto now = unix_ms();
    for (auto& [name, r] : records_) {
      auto rec = r;  // coroutines spawned below keep it
      auto sample = rec->activity->sample();
      auto level = rec->asleep ? ActivityLevel::stop : activity_level(sample, rec->policy, now);
      if (level != rec->level) {
        rec->level = level;
        rec->freeze_failed = false;
        events_.publish("activity", name, {{"level", std::string(level_name(level))}});
      }
      auto last = std::max(sample.last_ms, sample.last_close_ms);
      if (last > rec->saved_ms + 5000 || (last > rec->saved_ms && level != ActivityLevel::active)) {
        rec->saved_ms = last;
        (void)db_.save_activity(name, last);
      }
      if (sample.open_sockets > 0 && !rec->session_id) {
        if (auto id = db_.open_session(name, "websocket", "gateway"); id.has_value()) rec->session_id = id.value();
      } else if (sample.open_sockets == 0 && rec->session_id) {
        (void)db_.close_session(rec->session_id);
        rec->session_id = 0;
      }
      if (!rec->supervised || rec->status != "running" || rec->freezing || rec->replacing) continue;
      if (level == ActivityLevel::stop && !rec->sleep_requested) {
        rec->sleep_requested = true;
        rec->status = "stopping";
        rec->reason = "idle";
        logger()->info("[ws={}] no activity for {}; stopping it", name, ago(now - last));
        publish();
        stop_async(rec, "idle stop");
      } else if (level == ActivityLevel::background && !rec->frozen && !rec->freeze_failed) {
        start_freeze(rec, true);
      } else if (level < ActivityLevel::background && rec->frozen) {
        start_freeze(rec, false);
      }
    }
  }
}

}  // namespace ck
