// One reconcile pass over 500 registered workspaces: the monitor's full pass (list storage,
// detect every workspace, diff against the records, publish a snapshot) on the real DirStorage,
// ProcessRuntime and SQLite state. Half the workspaces are static sites, half Python apps
// asleep by the idle policy (their last activity in state.db is old), so no app process runs
// and the figure is the control plane's own cost.
//
// Prints: first pass (discovers all 500), steady pass (nothing changed; median and p99 of 50),
// and a pass after one workspace's workspace.json changed.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/log.h"
#include "events/events.h"
#include "monitor/monitor.h"
#include "runtime/process/process_runtime.h"
#include "state/state.h"
#include "storage/dir/dir_storage.h"

namespace fs = std::filesystem;
using namespace ck;
using Clock = std::chrono::steady_clock;

namespace {
void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}
}  // namespace

int main(int argc, char** argv) {
  int count = argc > 1 ? std::atoi(argv[1]) : 500;
  (void)log::setup("text", "warn");
  fs::path root = fs::temp_directory_path() / ("ck-reconcile-bench-" + std::to_string(::getpid()));
  fs::path ws = root / "ws", data = root / "data";
  auto db = StateDb::open(data / "state.db");
  if (db.has_error()) {
    std::fprintf(stderr, "%s\n", db.error().message.c_str());
    return 1;
  }
  for (int i = 0; i < count; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "ws-%04d", i);
    if (i % 2 == 0) {
      write(ws / name / "index.html", "<h1>site</h1>");
      write(ws / name / "css/style.css", "h1{color:red}");
    } else {
      write(ws / name / "app.py", "print('hi')\n");
      write(ws / name / "requirements.txt", "flask==3.0.0\n");
      (void)db.value()->save_activity(name, 1);  // long ago: asleep, nothing to start
    }
  }
  net::io_context io{1};
  DirStorage storage(ws);
  ProcessRuntimeOptions options;
  options.data_dir = data;
  options.port_min = 30000;
  options.port_max = 30100;
  options.self_exe = "/proc/self/exe";
  ProcessRuntime runtime(io, options);
  SnapshotHolder snapshots;
  EventBus events;
  MonitorOptions mo;
  Monitor monitor(io, storage, runtime, snapshots, events, *db.value(), mo);

  auto t = Clock::now();
  monitor.scan_now();
  double first = ms_since(t);
  io.poll();
  std::vector<double> steady;
  for (int i = 0; i < 50; ++i) {
    t = Clock::now();
    monitor.scan_now();
    steady.push_back(ms_since(t));
    io.poll();
  }
  std::sort(steady.begin(), steady.end());
  write(ws / "ws-0000" / "workspace.json", R"({"description": "changed"})");
  t = Clock::now();
  monitor.scan_now();
  double changed = ms_since(t);
  std::size_t listed = snapshots.load()->workspaces.size();
  std::printf("reconcile pass over %zu registered workspaces (%d static, %d python asleep):\n", listed,
              (count + 1) / 2, count / 2);
  std::printf("  first pass (discover all)   %8.2f ms\n", first);
  std::printf("  steady pass (no change)     %8.2f ms median, %.2f ms p99 (50 passes)\n",
              steady[steady.size() / 2], steady[steady.size() * 99 / 100]);
  std::printf("  pass after one change       %8.2f ms\n", changed);
  std::error_code ec;
  fs::remove_all(root, ec);
  return listed == static_cast<std::size_t>(count) ? 0 : 1;
}
