#pragma once
// The monitor: a level-triggered reconciler. Each pass lists storage (desired state),
// detects each workspace, and makes the runtime match: new workspaces are started, removed
// ones stopped, changed ones restarted, crashed ones restarted with exponential backoff
// (1 s doubling to 5 min, reset after 10 min healthy). It publishes a Snapshot after every
// change. Runs on the control-plane io_context (one thread).

#include <map>
#include <memory>
#include <set>
#include <string>

#include "http/asio.h"
#include "monitor/snapshot.h"
#include "runtime/runtime.h"
#include "storage/storage.h"
#include "workspace/workspace.h"

namespace ck {

struct MonitorOptions {
  Duration scan_interval = std::chrono::seconds(2);
  Duration ready_timeout = std::chrono::seconds(60);
  Duration stop_grace = std::chrono::seconds(5);
  Duration idle_after = std::chrono::minutes(2);
  std::uint64_t memory = 512ull << 20;
  std::uint64_t install_memory = 1ull << 30;
  double cpus = 1;
  int pids = 256;
};

/// What the runtime is asked to run for a workspace folder: its detected spec plus the
/// configured limits (the monitor and `cloudyknight workspace compose` both use it).
RunSpec make_run_spec(const std::string& name, const std::filesystem::path& dir,
                      const WorkspaceSpec& spec, const MonitorOptions& opts);

class Monitor {
 public:
  Monitor(net::io_context& io, Storage& storage, Runtime& runtime, SnapshotHolder& out,
          MonitorOptions opts);
  ~Monitor();

  /// Runs the first scan now and then every scan_interval.
  void start();
  /// Stops every workspace (gracefully, then by force) and the scan loop.
  net::awaitable<void> shutdown();
  /// Scans storage once, now (also used by tests and the API).
  void scan_now();

 private:
  struct Record;
  net::awaitable<void> scan_loop();
  net::awaitable<void> supervise(std::shared_ptr<Record> rec);
  net::awaitable<void> sweep_orphans(std::set<std::string> keep);
  void reconcile(const std::vector<StorageEntry>& entries);
  void apply_spec(const std::shared_ptr<Record>& rec, WorkspaceSpec spec);
  void publish();
  RunSpec run_spec(const Record& rec) const;

  net::io_context& io_;
  Storage& storage_;
  Runtime& runtime_;
  SnapshotHolder& out_;
  MonitorOptions opts_;
  std::map<std::string, std::shared_ptr<Record>> records_;
  std::vector<InvalidFolder> invalid_;
  std::string storage_error_;
  bool shutting_down_ = false;
  bool sweeping_ = false;
  int supervisors_ = 0;
  net::steady_timer scan_timer_;
};

}  // namespace ck
