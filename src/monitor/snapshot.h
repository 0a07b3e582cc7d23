#pragma once
// The monitor's published view of every workspace: an immutable snapshot swapped whole on
// each change, read without locks by gateway and API threads (STYLE: shared_ptr<const T>).

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ck {

/// The idle policy (DESIGN.md "Workspace life cycle"): how long without activity before a
/// workspace counts as idle, is frozen (background), and is stopped; and how long a client
/// whose WebSocket closed keeps it awake (grace, for reconnects).
struct IdlePolicy {
  std::chrono::milliseconds idle_after{std::chrono::minutes(2)};
  std::chrono::milliseconds background_after{std::chrono::minutes(10)};
  std::chrono::milliseconds stop_after{std::chrono::minutes(30)};
  std::chrono::milliseconds grace{std::chrono::seconds(30)};
  bool operator==(const IdlePolicy&) const = default;
};

enum class ActivityLevel { active, disconnected, idle, background, stop };
std::string_view level_name(ActivityLevel l);

/// What the API asks of a workspace: stop (and keep it stopped, across restarts of the
/// daemon, until start), start (or wake) it, or restart it now.
enum class WorkspaceAction { start, stop, restart };

/// What the gateway saw of a workspace's traffic (unix ms; 0 = never).
struct ActivitySample {
  std::int64_t last_ms = 0;        // last proxied request or dashboard heartbeat
  int open_sockets = 0;            // WebSockets open through the gateway
  std::int64_t last_close_ms = 0;  // when the last of them closed
  int in_flight = 0;               // requests the gateway is answering (a download, a slow answer)
};

/// Pure: the level at `now_ms`. Open WebSockets keep a workspace active; for `grace` after
/// the last one closed it is "disconnected" (kept awake for a reconnect); otherwise the time
/// since the last activity decides: idle, background (frozen), stop. A request in flight keeps
/// it active too: an app is never frozen or stopped under a request it is answering.
ActivityLevel activity_level(const ActivitySample& s, const IdlePolicy& p, std::int64_t now_ms);

/// Unix time in ms.
std::int64_t unix_ms();

/// Traffic counters of one workspace; shared by every snapshot of it and written by gateway
/// threads with relaxed atomics.
struct Activity {
  std::atomic<std::int64_t> last_ms{0};
  std::atomic<int> open_sockets{0};
  std::atomic<std::int64_t> last_close_ms{0};
  /// Marks activity now. Writes at most every 250 ms, so gateway threads do not fight over
  /// the cache line on every request.
  void touch();
  void socket_opened();
  void socket_closed();
  /// A request to the workspace starts and ends, counted on the gateway worker's own slot (a
  /// cache line of its own: up to 16 workers never write the same one); the end marks activity.
  void request_started(unsigned worker);
  void request_ended(unsigned worker);
  ActivitySample sample() const;

 private:
  static constexpr unsigned kSlots = 16;
  struct alignas(64) Counter {
    std::atomic<int> n{0};
  };
  std::array<Counter, kSlots> in_flight_{};
};

/// A request in flight to a workspace, from its start to the end of its scope. Holds the
/// Activity by reference (no shared count touched per request): the caller keeps the snapshot
/// that owns it alive meanwhile.
class RequestInFlight {
 public:
  RequestInFlight(Activity& a, unsigned worker) : a_(a), worker_(worker) { a_.request_started(worker_); }
  RequestInFlight(const RequestInFlight&) = delete;
  RequestInFlight& operator=(const RequestInFlight&) = delete;
  ~RequestInFlight() { a_.request_ended(worker_); }

 private:
  Activity& a_;
  unsigned worker_;
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
  std::string preview_of;      // a branch preview: its workspace (and the branch it follows)
  std::string preview_branch;
  bool is_static = false;
  std::filesystem::path static_root;  // static: the folder served
  bool keep_prefix = false;           // workspace.json "prefix": "keep" (route.h keep_prefix)
  std::string upstream_host;          // process: where the app listens
  int port = 0;
  int pid = 0;
  int restarts = 0;
  bool frozen = false;     // paused by the idle policy (background); resumes on a request
  bool held = false;       // stopped from the API: stays stopped (a request does not wake it)
  bool runs = false;       // has an app the runtime runs (not static, not invalid)
  std::string reason;      // why it is stopped or failed ("idle", "gave up after 5 attempts")
  /// On its way back up after it ran (a restart for a change, a crash, a wake): requests wait
  /// for it (within idle.wake_timeout) instead of getting 503 or 502.
  bool restarting = false;
  std::uint64_t instance = 0;    // counts the app's successful starts: a new one is a new app
  /// Restart mode, blue/green: its new version starts beside the running one, which serves
  /// until the new one answers (status stays "running"; phase says how far it is).
  bool replacing = false;
  std::int64_t attempt_ms = 0;   // when its latest start attempt began (unix ms)
  std::int64_t retry_at_ms = 0;  // failed: when the next start is due (unix ms); 0: none is
  IdlePolicy idle;         // the effective policy (config, then workspace.json)
  std::shared_ptr<Activity> activity;
  /// Stopped or frozen by the idle policy, or on its way up: a request wakes it and waits.
  bool asleep() const { return frozen || status == "stopped"; }
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
