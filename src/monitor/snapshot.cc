#include "monitor/snapshot.h"

#include <algorithm>

namespace ck {
std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view level_name(ActivityLevel l) {
  switch (l) {
    case ActivityLevel::active: return "active";
    case ActivityLevel::disconnected: return "disconnected";
    case ActivityLevel::idle: return "idle";
    case ActivityLevel::background: return "background";
    case ActivityLevel::stop: return "stopped";
  }
  return "idle";
}

ActivityLevel activity_level(const ActivitySample& s, const IdlePolicy& p, std::int64_t now_ms) {
  if (s.open_sockets > 0 || s.in_flight > 0) return ActivityLevel::active;
  if (s.last_close_ms > 0 && s.last_close_ms >= s.last_ms && now_ms - s.last_close_ms < p.grace.count()) {
    return ActivityLevel::disconnected;
  }
  std::int64_t last = std::max(s.last_ms, s.last_close_ms);
  std::int64_t quiet = now_ms - last;
  if (quiet < p.idle_after.count()) return ActivityLevel::active;
  if (quiet < p.background_after.count()) return ActivityLevel::idle;
  if (quiet < p.stop_after.count()) return ActivityLevel::background;
  return ActivityLevel::stop;
}

void Activity::touch() {
  auto now = unix_ms();
  if (now - last_ms.load(std::memory_order_relaxed) >= 250) last_ms.store(now, std::memory_order_relaxed);
}

void Activity::socket_opened() {
  open_sockets.fetch_add(1, std::memory_order_relaxed);
  last_ms.store(unix_ms(), std::memory_order_relaxed);
}

void Activity::socket_closed() {
  last_close_ms.store(unix_ms(), std::memory_order_relaxed);
  open_sockets.fetch_sub(1, std::memory_order_relaxed);
}

void Activity::request_started(unsigned worker) {
  in_flight_[worker % kSlots].n.fetch_add(1, std::memory_order_relaxed);
}

void Activity::request_ended(unsigned worker) {
  in_flight_[worker % kSlots].n.fetch_sub(1, std::memory_order_relaxed);
  // The end of a request is activity, unless a WebSocket closed since the last mark: its
  // close (the tunnel's own end, just before this) starts the grace period a mark would end.
  if (last_close_ms.load(std::memory_order_relaxed) < last_ms.load(std::memory_order_relaxed)) touch();
}

ActivitySample Activity::sample() const {
  int in_flight = 0;
  for (const auto& c : in_flight_) in_flight += c.n.load(std::memory_order_relaxed);
  return {last_ms.load(std::memory_order_relaxed), open_sockets.load(std::memory_order_relaxed),
          last_close_ms.load(std::memory_order_relaxed), in_flight};
}

const WorkspaceView* Snapshot::find(std::string_view name) const {
  auto it = std::lower_bound(workspaces.begin(), workspaces.end(), name,
                             [](const WorkspaceView& w, std::string_view n) { return w.name < n; });
  if (it != workspaces.end() && it->name == name) return &*it;
  return nullptr;
}

}  // namespace ck
