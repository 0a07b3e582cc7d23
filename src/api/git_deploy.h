#pragma once
// The deploy after a git push (git_deploy.cc), internal to the API: what it needs and the
// helpers git_api.cc shares with it. The deploy runs on the push's own deploy thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "api/api.h"
#include "core/error.h"

namespace ck {
namespace auth {
class Auth;
}
namespace api {

/// The git requests and deploys (PUT .../source) running now, one thread each; the per-name
/// lock that lets one push or deploy at a time change a workspace. Owned by the
/// ControlApi; its destructor stops them (their programs killed) and joins the threads.
class GitPushes {
 public:
  static constexpr std::size_t kMaxRunning = 16;
  ~GitPushes() {
    stopping_ = true;
    std::list<Job> jobs;
    {
      std::lock_guard lock(mu_);
      jobs.swap(jobs_);
    }
    for (auto& j : jobs) {
      if (j.thread.joinable()) j.thread.join();
    }
  }
  /// Runs `fn` on a new thread; false when kMaxRunning are running.
  bool start(std::function<void()> fn) {
    std::lock_guard lock(mu_);
    reap();
    if (jobs_.size() >= kMaxRunning || stopping_) return false;
    auto& job = jobs_.emplace_back();
    auto done = job.done;
    job.thread = std::thread([fn = std::move(fn), done] {
      fn();
      *done = true;
    });
    return true;
  }
  /// Marks a push to `name` as running; false when one already is.
  bool lock_name(const std::string& name) {
    std::lock_guard lock(mu_);
    return pushing_.insert(name).second;
  }
  void unlock_name(const std::string& name) {
    std::lock_guard lock(mu_);
    pushing_.erase(name);
  }
  bool pushing(const std::string& name) {
    std::lock_guard lock(mu_);
    return pushing_.count(name) > 0;
  }
  const std::atomic<bool>& stopping() const { return stopping_; }

 private:
  struct Job {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done = std::make_shared<std::atomic<bool>>(false);
  };
  void reap() {
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      if (*it->done) {
        it->thread.join();
        it = jobs_.erase(it);
      } else {
        ++it;
      }
    }
  }
  std::mutex mu_;
  std::list<Job> jobs_;
  std::set<std::string> pushing_;
  std::atomic<bool> stopping_{false};
};

// What a deploy needs, copied out of the request and the API (the thread outlives neither the
// ControlApi nor the objects these point to: ~GitPushes joins it first).
struct DeployJob {
  std::string name;
  std::filesystem::path repo;   // DATA/git/repos/<name>.git
  std::filesystem::path root;   // the workspace folders
  std::filesystem::path trash;  // DATA/trash
  std::string owner;            // the pusher's user id ("" for tokens that belong to nobody)
  std::string principal;        // for the log
  std::string base_url;  // "http://host:port" the push came to (for a relative workspace URL)
  std::string url;       // workspace_url()
  std::function<std::string(const std::string&)> url_of;  // workspace_url() of another name
  const SnapshotHolder* snapshots = nullptr;
  auth::Auth* auth = nullptr;
  std::function<void(const std::string&, WorkspaceAction)> act;
  std::function<std::filesystem::path(const std::string&)> log_path;
  std::function<void(const std::string&, std::function<void(Result<SyncOutcome>)>)> sync;
  std::function<void(const std::string&, std::function<void(Result<void>)>)> pull;
  Duration follow_timeout{};
  const std::atomic<bool>* stopping = nullptr;
};

/// Waits for `done` to be called through `start` (a callback API), up to `limit` or until
/// `stopping` (a stopped worker never calls back).
template <class T>
std::optional<T> wait_for(const std::function<void(std::function<void(T)>)>& start, Duration limit,
                          const std::atomic<bool>& stopping) {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<T> value;
  };
  auto sh = std::make_shared<Shared>();
  start([sh](T v) {
    std::lock_guard lock(sh->mu);
    sh->value.emplace(std::move(v));
    sh->cv.notify_all();
  });
  std::unique_lock lock(sh->mu);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!sh->value && !stopping && std::chrono::steady_clock::now() < deadline) {
    sh->cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return sh->value.has_value(); });
  }
  return std::move(sh->value);
}

/// A deploy's report as people read it (Dokku's style: "-----> " steps, the workspace's log
/// indented, "=====> " when it runs, "!!!    " problems). raw() sends the bytes somewhere (a
/// push's hook, an HTTP stream); listening() turns false once nobody reads any more.
class DeployReport {
 public:
  virtual ~DeployReport() = default;
  virtual void raw(std::string_view bytes) = 0;
  virtual bool listening() const = 0;
  void step(const std::string& s) { line("-----> " + s); }
  void problem(const std::string& s) { line("!!!    " + s); }
  void done(const std::string& s) { line("=====> " + s); }
  void indented(std::string_view text);
  void line(const std::string& s) { raw(s + "\n"); }
};

/// A file read from `offset` on, in whole lines (what follows the last newline waits for the
/// next look): a workspace's log as a deploy relays it. Starts at the file's current end.
class LogTail {
 public:
  explicit LogTail(std::filesystem::path p);
  std::string read_lines();
  bool relayed() const { return relayed_; }

 private:
  std::filesystem::path path_;
  std::uintmax_t offset_ = 0;
  bool relayed_ = false;
};

/// Follows workspace job.name after its source changed (`before`: how it was just before)
/// until it runs or fails, or job.follow_timeout passes, relaying its log and status to `out`:
/// the end of every deploy. Starts an app that was not running and restarts one the monitor
/// did not restart by itself (a deploy is a deploy even when the watcher saw nothing).
void follow(const DeployJob& job, const std::optional<WorkspaceView>& before, LogTail& log,
            DeployReport& out);

/// Reads the pushed "old new ref" lines from the hook on `fd`, deploys the branch the
/// workspace follows and reports on `fd` as it goes (Dokku's "-----> " steps, the workspace's
/// log indented, "=====> NAME is running at URL" or "!!!    NAME failed: ..."), then closes it.
void deploy_push(const DeployJob& job, int fd);

/// "20261126T015500Z".
std::string utc_stamp();

/// Moves `from` to `to`: a rename, or (another file system) a checked copy, then the original goes.
Result<void> move_folder(const std::filesystem::path& from, const std::filesystem::path& to);

/// The remote other than `ours` that the workspace folder `dir` follows (its workspace.json
/// "git.url", or its clone's origin), redacted; "" when it follows `ours` or none. Reads the
/// configuration only.
std::string follows_elsewhere(const std::filesystem::path& dir, const std::filesystem::path& ours);

}  // namespace api
}  // namespace ck
