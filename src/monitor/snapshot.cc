#include "monitor/snapshot.h"

#include <algorithm>

namespace ck {
namespace {
std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void Activity::touch() {
  auto now = now_ms();
  if (now - last_request_ms.load(std::memory_order_relaxed) >= 250) {
    last_request_ms.store(now, std::memory_order_relaxed);
  }
}

std::string Activity::level(std::chrono::milliseconds idle_after) const {
  auto last = last_request_ms.load(std::memory_order_relaxed);
  if (last != 0 && now_ms() - last < idle_after.count()) return "active";
  return "idle";
}

const WorkspaceView* Snapshot::find(std::string_view name) const {
  auto it = std::lower_bound(workspaces.begin(), workspaces.end(), name,
                             [](const WorkspaceView& w, std::string_view n) { return w.name < n; });
  if (it != workspaces.end() && it->name == name) return &*it;
  return nullptr;
}

}  // namespace ck
