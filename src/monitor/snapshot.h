#pragma once
// The monitor's published view of every workspace: an immutable snapshot swapped whole on
// each change, read without locks by gateway and API threads (STYLE: shared_ptr<const T>).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ck {

/// Proxied-traffic counters of one workspace; shared by every snapshot of it and written by
/// gateway threads with relaxed atomics.
struct Activity {
  std::atomic<std::int64_t> last_request_ms{0};  // steady clock, ms
  /// Marks a request now. Writes at most every 250 ms, so gateway threads do not fight over
  /// the cache line on every request.
  void touch();
  /// "active" if a request came within `idle_after`, else "idle".
  std::string level(std::chrono::milliseconds idle_after) const;
};

struct WorkspaceView {
  std::string name;
  std::string type;     // "node", "static"...
  std::string matched;  // "package.json"
  std::string status;   // creating|initializing|running|stopping|stopped|failed
  std::string phase;    // what initializing is doing now ("installing: npm ci")
  std::string error;
  std::string log_tail;
  std::string description;
  std::string icon;
  bool is_public = true;
  bool is_static = false;
  std::filesystem::path static_root;  // static: the folder served
  std::string upstream_host;          // process: where the app listens
  int port = 0;
  int pid = 0;
  int restarts = 0;
  std::shared_ptr<Activity> activity;
};

struct InvalidFolder {
  std::string folder;
  std::string error;
};

struct Snapshot {
  std::vector<WorkspaceView> workspaces;  // sorted by name
  std::vector<InvalidFolder> invalid;
  std::string storage_error;  // the last listing failed (workspaces kept as they were)
  std::string runtime_kind;
  std::string isolation;
  std::string storage_location;
  std::chrono::milliseconds idle_after{120000};

  const WorkspaceView* find(std::string_view name) const;
};

/// Holds the current snapshot. store() on the control thread, load() anywhere.
class SnapshotHolder {
 public:
  SnapshotHolder() : current_(std::make_shared<const Snapshot>()) {}
  std::shared_ptr<const Snapshot> load() const { return current_.load(std::memory_order_acquire); }
  void store(std::shared_ptr<const Snapshot> s) {
    current_.store(std::move(s), std::memory_order_release);
    version_.fetch_add(1, std::memory_order_release);
  }
  /// Changes after every store(); lets a reader keep its own copy and reload only then.
  std::uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  std::atomic<std::shared_ptr<const Snapshot>> current_;
  std::atomic<std::uint64_t> version_{0};
};

/// One thread's reference to the current snapshot. get() costs one atomic read, and the
/// pointer it returns counts references on a control block of this thread's own, so
/// threads never contend on the snapshot's reference count. Use on one thread only.
class SnapshotCache {
 public:
  explicit SnapshotCache(const SnapshotHolder& h) : holder_(h) {}
  std::shared_ptr<const Snapshot> get() {
    auto v = holder_.version();
    if (!local_ || v != version_) {
      version_ = v;
      local_ = std::make_shared<const std::shared_ptr<const Snapshot>>(holder_.load());
    }
    return std::shared_ptr<const Snapshot>(local_, local_->get());
  }

 private:
  const SnapshotHolder& holder_;
  std::uint64_t version_ = 0;
  std::shared_ptr<const std::shared_ptr<const Snapshot>> local_;
};

}  // namespace ck
