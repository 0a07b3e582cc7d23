#include "api/metrics.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include "metrics/metrics.h"
#include "metrics/process.h"

namespace ck {

namespace {

using metrics::Label;
using metrics::TextWriter;
using metrics::Type;

// Every status of the life cycle (DESIGN.md "Workspace life cycle"), so a scrape always shows
// each one, with 0 when no workspace is in it.
constexpr std::array<std::string_view, 6> kStates = {"creating", "initializing", "running",
                                                     "stopping", "stopped",      "failed"};
constexpr std::array<ActivityLevel, 5> kLevels = {ActivityLevel::active,
                                                  ActivityLevel::disconnected, ActivityLevel::idle,
                                                  ActivityLevel::background, ActivityLevel::stop};

// As the API's "activity" field says it (api.cc, activity_of).
ActivityLevel level_of(const WorkspaceView& w, std::int64_t now) {
  if (w.status == "stopped" && !w.frozen) return ActivityLevel::stop;
  if (!w.activity) return ActivityLevel::idle;
  return activity_level(w.activity->sample(), w.idle, now);
}

void one(TextWriter& out, std::string_view name, std::string_view label, std::string_view value,
         std::int64_t n) {
  Label l{label, value};
  out.sample(name, std::span<const Label>(&l, 1), n);
}

}  // namespace

std::string render_metrics(const metrics::Registry& registry, const Snapshot& snap, StateDb* db,
                           std::string_view version) {
  TextWriter out;
  registry.write(out);

  std::map<std::string, std::int64_t, std::less<>> by_state;
  for (auto s : kStates) by_state[std::string(s)] = 0;
  std::array<std::int64_t, kLevels.size()> by_level{};
  auto now = unix_ms();
  for (const auto& w : snap.workspaces) {
    ++by_state[w.status];
    auto level = level_of(w, now);
    for (std::size_t i = 0; i < kLevels.size(); ++i) {
      if (kLevels[i] == level) ++by_level[i];
    }
  }
  out.family("cloudyknight_workspaces", "Workspaces by life-cycle state.", Type::gauge);
  for (auto s : kStates) one(out, "cloudyknight_workspaces", "state", s, by_state.find(s)->second);
  for (const auto& [s, n] : by_state) {  // a state this list does not know yet
    if (std::find(kStates.begin(), kStates.end(), s) == kStates.end()) {
      one(out, "cloudyknight_workspaces", "state", s, n);
    }
  }
  out.family("cloudyknight_workspace_activity",
             "Workspaces by activity level (the idle policy's view).", Type::gauge);
  for (std::size_t i = 0; i < kLevels.size(); ++i) {
    one(out, "cloudyknight_workspace_activity", "level", level_name(kLevels[i]), by_level[i]);
  }

  out.family("cloudyknight_jobs", "Jobs in the persistent queue (state.db) by state.", Type::gauge);
  if (db) {
    if (auto counts = db->job_counts(); counts.has_value()) {
      for (const auto& [state, n] : counts.value()) {
        one(out, "cloudyknight_jobs", "state", state, n);
      }
    }
  }

  auto p = metrics::read_process_stats();
  out.family("cloudyknight_process_cpu_seconds_total", "User and system CPU time of the daemon.",
             Type::counter);
  out.sample("cloudyknight_process_cpu_seconds_total", {}, p.cpu_seconds);
  out.family("cloudyknight_process_resident_memory_bytes", "Resident memory of the daemon.",
             Type::gauge);
  out.sample("cloudyknight_process_resident_memory_bytes", {}, p.resident_bytes);
  out.family("cloudyknight_process_virtual_memory_bytes", "Virtual memory of the daemon.",
             Type::gauge);
  out.sample("cloudyknight_process_virtual_memory_bytes", {}, p.virtual_bytes);
  out.family("cloudyknight_process_open_fds", "Open file descriptors of the daemon.", Type::gauge);
  out.sample("cloudyknight_process_open_fds", {}, p.open_fds);
  out.family("cloudyknight_process_max_fds", "The daemon's limit on open file descriptors.",
             Type::gauge);
  out.sample("cloudyknight_process_max_fds", {}, p.max_fds);
  out.family("cloudyknight_process_start_time_seconds", "When the daemon started (unix time).",
             Type::gauge);
  out.sample("cloudyknight_process_start_time_seconds", {}, p.start_time_seconds);

  out.family("cloudyknight_build_info", "The running build; the value is always 1.", Type::gauge);
  one(out, "cloudyknight_build_info", "version", version, 1);
  return out.take();
}

}  // namespace ck
