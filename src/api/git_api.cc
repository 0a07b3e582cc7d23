// git push to deploy (issue 16, part 3): git's smart HTTP protocol at /monitor/git/<name>.git,
// served by Debian's `git http-backend`, and the deploy that follows a push.
//
//   GET  /monitor/git/<name>.git/info/refs?service=git-upload-pack|git-receive-pack
//   POST /monitor/git/<name>.git/git-upload-pack|git-receive-pack
//
// Credentials: an API token as the HTTP Basic password (any user name), or a Bearer token.
// upload-pack (clone, fetch) needs the read scope and may see the workspace; receive-pack (push)
// needs the deploy scope and may act on it, or the name is new and the pusher's user will own
// the workspace it makes. Refusals are text/plain, which git prints as "remote: ..." lines.
//
// A request runs on a thread of its own (GitPushes), never on the gateway's: it starts
// `git http-backend` with an environment built from nothing (http_backend.h), feeds it the
// request body and streams its answer into an http::ResponseStream. For a push, the child also
// inherits one end of a socket pair as descriptor 3 (CK_GIT_HOOK_FD): the repository's
// post-receive hook (`cloudyknight git-hook post-receive`, written by the daemon) sends the
// pushed "old new ref" lines through it and copies back what the deploy thread writes, so git
// shows the deploy as it happens. Only the processes of this one push hold that socket, so it
// needs no token and no network path, and it works the same behind TLS.
//
// The deploy: the branch the workspace follows (workspace.json "git.branch", else the branch
// its clone has checked out, else the repository's HEAD, which the first push sets: main when
// pushed, else the first branch pushed) is brought into the workspace folder: a fast-forward of
// a workspace that already follows this repository, else a fresh clone built beside the folder
// and renamed into place (a plain folder's previous contents go to DATA/trash first). The
// monitor notices the change by itself (inotify) and restarts the app; the deploy follows the
// workspace's log and status until it runs or fails, and ends with its URL. Other branches are
// kept in the repository and, for a workspace that follows it, pulled by GitWorkspaces, which
// runs each as a branch preview <name>--<branch> (the report gives its URL).

#include <fcntl.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "api/api.h"
#include "api/auth_http.h"
#include "auth/auth.h"
#include "auth/authorize.h"
#include "core/log.h"
#include "core/names.h"
#include "git/http_backend.h"
#include "git/push_repos.h"
#include "git/repo.h"
#include "git/workspaces.h"
#include "http/stream.h"
#include "workspace/workspace.h"

namespace ck {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace api {

/// The git requests running now, one thread each; the per-name push lock. Owned by the
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

std::shared_ptr<GitPushes> make_git_pushes() { return std::make_shared<GitPushes>(); }

}  // namespace api

namespace {

auto logger() {
  static auto l = log::get("api");
  return l;
}

constexpr std::string_view kGitPrefix = "/monitor/git";
constexpr std::size_t kMaxLogChunk = 256u << 10;  // log bytes relayed per look
constexpr std::size_t kMaxPendingOut = 1u << 20;  // CGI output waiting for a slow client

http::Response text_response(int status, std::string message) {
  http::Response r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(message) + "\n";
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

http::Response unauthorized(std::string message) {
  auto r = text_response(401, std::move(message));
  r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"CloudyKnight\", charset=\"UTF-8\"");
  return r;
}

std::string utc_stamp() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:%Y%m%dT%H%M%SZ}", tm);
}

// workspace.json's "git" object of a folder: {url, branch} (either may be empty).
git::Remote declared_git(const fs::path& dir) {
  git::Remote r;
  std::error_code ec;
  fs::path file = dir / "workspace.json";
  if (fs::is_symlink(file, ec) || !fs::is_regular_file(file, ec) || fs::file_size(file, ec) > (1u << 20)) return r;
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  auto doc = json::parse(ss.str(), nullptr, false);
  if (!doc.is_object() || !doc.contains("git") || !doc["git"].is_object()) return r;
  const auto& g = doc["git"];
  if (g.contains("url") && g["url"].is_string()) r.url = g["url"].get<std::string>();
  if (g.contains("branch") && g["branch"].is_string()) r.branch = g["branch"].get<std::string>();
  return r;
}

// The remote another than `ours` that the workspace folder follows (workspace.json or the
// clone's origin), redacted; "" when it follows ours or none.
std::string follows_elsewhere(const fs::path& dir, const fs::path& ours) {
  const std::string mine = normalize_git_url(ours.string());
  auto declared = declared_git(dir);
  if (!declared.url.empty() && normalize_git_url(declared.url) != mine) return git::redact_url(declared.url);
  if (git::is_repository(dir)) {
    std::string origin = git::origin_url(dir);
    if (!origin.empty() && normalize_git_url(origin) != mine) return git::redact_url(origin);
  }
  return "";
}

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Moves `from` to `to` (a rename; another file system: a checked copy, then the original goes).
Result<void> move_folder(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (!ec) return outcome::success();
  if (ec != std::errc::cross_device_link) {
    return fail(Errc::io, fmt::format("cannot move {} to {}: {}", from.string(), to.string(), ec.message()));
  }
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  if (ec) return fail(Errc::io, fmt::format("cannot copy {} to {}: {}", from.string(), to.string(), ec.message()));
  fs::remove_all(from, ec);
  if (ec) return fail(Errc::io, fmt::format("copied to {} but cannot remove {}: {}", to.string(), from.string(), ec.message()));
  return outcome::success();
}

// What a deploy needs, copied out of the request and the API (the thread outlives neither the
// ControlApi nor the objects these point to: ~GitPushes joins it first).
struct DeployJob {
  std::string name;
  fs::path repo;          // DATA/git/repos/<name>.git
  fs::path root;          // the workspace folders
  fs::path trash;         // DATA/trash
  std::string owner;      // the pusher's user id ("" for tokens that belong to nobody)
  std::string principal;  // for the log
  std::string base_url;   // "http://host:port" the push came to (for a relative workspace URL)
  std::string url;        // workspace_url()
  std::function<std::string(const std::string&)> url_of;  // workspace_url() of another name
  const SnapshotHolder* snapshots = nullptr;
  auth::Auth* auth = nullptr;
  std::function<void(const std::string&, WorkspaceAction)> act;
  std::function<fs::path(const std::string&)> log_path;
  std::function<void(const std::string&, std::function<void(Result<SyncOutcome>)>)> sync;
  std::function<void(const std::string&, std::function<void(Result<void>)>)> pull;
  Duration follow_timeout{};
  const std::atomic<bool>* stopping = nullptr;
};

// Writes a deploy's report to the hook (Dokku's style: "-----> " steps, indented log lines,
// "!!!    " problems). Stops writing once the hook is gone; the deploy itself goes on.
class Report {
 public:
  explicit Report(int fd) : fd_(fd) {}
  void step(const std::string& s) { line("-----> " + s); }
  void problem(const std::string& s) { line("!!!    " + s); }
  void done(const std::string& s) { line("=====> " + s); }
  void indented(std::string_view text) {
    std::string out;
    std::size_t start = 0;
    while (start < text.size()) {
      auto nl = text.find('\n', start);
      std::string_view l = text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
      out += "       ";
      out += l;
      out += '\n';
      if (nl == std::string_view::npos) break;
      start = nl + 1;
    }
    raw(out);
  }
  void line(const std::string& s) { raw(s + "\n"); }
  void raw(std::string_view s) {
    if (ok_) ok_ = send_all(fd_, s);
  }
  bool listening() const { return ok_; }

 private:
  int fd_;
  bool ok_ = true;
};

// Reads the pushed ref lines from the hook: until it shuts its side (it sent them all) or the
// push's programs are gone (nothing to deploy).
std::string read_refs(int fd, const std::atomic<bool>& stopping) {
  std::string out;
  char buf[16 * 1024];
  while (!stopping) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, 250);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > git::kMaxHookRefs) break;
  }
  return out;
}

// The log from `offset` on, in whole lines (what follows the last newline waits for the next look).
class LogTail {
 public:
  explicit LogTail(fs::path p) : path_(std::move(p)) {
    std::error_code ec;
    auto size = fs::file_size(path_, ec);
    offset_ = ec ? 0 : size;
  }
  std::string read_lines() {
    std::error_code ec;
    auto size = fs::file_size(path_, ec);
    if (ec) return "";
    if (size < offset_) offset_ = 0;  // started over (a new run truncates it)
    if (size == offset_) return "";
    std::ifstream in(path_, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(offset_));
    std::string buf(std::min<std::uintmax_t>(size - offset_, kMaxLogChunk), '\0');
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    buf.resize(static_cast<std::size_t>(in.gcount()));
    auto nl = buf.rfind('\n');
    if (nl == std::string::npos) {
      if (buf.size() < kMaxLogChunk) return "";
      nl = buf.size() - 1;  // a very long line: send it as it is
    }
    offset_ += nl + 1;
    buf.resize(nl);
    relayed_ = true;
    return buf;
  }
  bool relayed() const { return relayed_; }

 private:
  fs::path path_;
  std::uintmax_t offset_ = 0;
  bool relayed_ = false;
};

// Waits for `done` to be called through `start` (a callback API), up to `limit` or until
// `stopping` (a stopped worker never calls back).
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

// The branch the workspace deploys, and whether the repository's HEAD was just set to it.
std::string followed_branch(const DeployJob& job, const std::vector<git::RefUpdate>& updates, Report& out) {
  fs::path dir = job.root / job.name;
  auto declared = declared_git(dir);
  if (!declared.branch.empty()) return declared.branch;
  if (git::is_repository(dir)) {
    auto st = git::status(dir);
    if (st.has_value() && !st.value().branch.empty()) return st.value().branch;
  }
  auto head = git::head_branch(job.repo);
  if (head.has_value() && !head.value().empty() && git::has_branch(job.repo, head.value())) return head.value();
  // The repository's first branch: main when it was pushed, else master, else the first one.
  std::string pick;
  for (const char* preferred : {"main", "master"}) {
    for (const auto& u : updates) {
      if (pick.empty() && u.branch() == preferred && !u.deleted()) pick = u.branch();
    }
  }
  for (const auto& u : updates) {
    if (pick.empty() && !u.branch().empty() && !u.deleted()) pick = u.branch();
  }
  if (pick.empty()) return head.has_value() && !head.value().empty() ? head.value() : "main";
  if (auto set = git::set_head_branch(job.repo, pick); set.has_error()) {
    out.problem(set.error().message);
  }
  return pick;
}

// Brings the workspace folder to `branch` of the push repository. False (after saying why)
// when it could not.
// `forced`: the push replaced the branch's history (no fast-forward of what it had): the
// workspace is then replaced rather than pulled, since a pull would rebase and push back the
// very commits the push removed.
bool update_folder(const DeployJob& job, const std::string& branch, bool forced, Report& out) {
  fs::path dir = job.root / job.name;
  std::error_code ec;
  const bool exists = fs::exists(fs::symlink_status(dir, ec));
  const git::Remote remote{job.repo.string(), branch};
  bool replacing = false;
  if (exists && git::is_repository(dir) && forced) {
    replacing = true;
  } else if (exists && git::is_repository(dir)) {
    // It follows this repository already (anything else was refused before the push).
    Result<void> pulled = outcome::success();
    if (job.pull) {
      std::function<void(std::function<void(Result<void>)>)> start = [&](std::function<void(Result<void>)> done) {
        job.pull(job.name, std::move(done));
      };
      auto r = wait_for<Result<void>>(start, std::chrono::minutes(5), *job.stopping);
      pulled = r ? std::move(*r) : Result<void>(fail(Errc::timeout, "the pull did not finish within 5 min"));
    } else {
      auto r = git::pull(dir, remote, git::Credentials{});
      if (r.has_error()) {
        pulled = r.error();
      } else if (r.value().updated) {
        out.step(fmt::format("Updated the workspace folder: {} file(s) changed", r.value().changed.size()));
      }
    }
    if (!pulled.has_error()) return true;
    if (pulled.error().code != Errc::conflict) {
      out.problem(fmt::format("cannot bring {} up to date: {}", job.name, pulled.error().message));
      out.problem("the push is kept in the repository; fix the folder (or move it away) and push again");
      return false;
    }
    // Not a fast-forward (a forced push, or the folder has commits or edits of its own): the
    // push wins, and the folder as it was goes to the trash, repository and edits included.
    replacing = true;
  }
  // A fresh clone beside the folder (a dot folder: the monitor ignores it), renamed into place.
  static std::atomic<unsigned> counter{0};
  fs::path tmp = job.root / fmt::format(".ck-push-{}-{}-{}", job.name, ::getpid(), counter.fetch_add(1));
  fs::remove_all(tmp, ec);
  auto cloned = git::pull(tmp, remote, git::Credentials{});
  if (cloned.has_error()) {
    fs::remove_all(tmp, ec);
    out.problem(fmt::format("cannot check out {}: {}", branch, cloned.error().message));
    return false;
  }
  fs::path trashed;
  if (exists) {
    fs::create_directories(job.trash, ec);
    trashed = job.trash / fmt::format("{}-{}", job.name, utc_stamp());
    for (int n = 2; fs::exists(fs::symlink_status(trashed, ec)); ++n) {
      trashed = job.trash / fmt::format("{}-{}-{}", job.name, utc_stamp(), n);
    }
    if (auto moved = move_folder(dir, trashed); moved.has_error()) {
      fs::remove_all(tmp, ec);
      out.problem(fmt::format("cannot move the folder's current files aside: {}; nothing was changed", moved.error().message));
      return false;
    }
    if (replacing) {
      out.step(fmt::format("The push does not fast-forward {}'s folder (a forced push, or changes made there): "
                           "the folder as it was, its commits and edits included, was moved to {}",
                           job.name, trashed.string()));
    } else {
      out.step(fmt::format("{} was a plain folder: its previous files were moved to {} (nothing was deleted)",
                           job.name, trashed.string()));
    }
  } else {
    // A new workspace: its pusher's user owns it from the start (a private one opens for them).
    WorkspaceSpec spec = detect_workspace(job.name, tmp);
    if (job.auth && !job.owner.empty()) {
      if (auto o = job.auth->set_workspace_owner(job.name, job.owner, spec.is_public); o.has_error()) {
        logger()->warn("[ws={}] cannot record its owner: {}", job.name, o.error().message);
      }
    }
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    fs::remove_all(tmp, ec);
    if (!trashed.empty()) (void)move_folder(trashed, dir);
    out.problem(fmt::format("cannot move the checkout into {}: {}", dir.string(), std::strerror(err)));
    return false;
  }
  out.step(exists ? fmt::format("Replaced {} with {}", job.name, branch)
                  : fmt::format("Created workspace {} from {}", job.name, branch));
  return true;
}

// Follows the workspace until it runs (or is served, for static files) after the change, or
// fails, relaying its log. `before`: its status and pid before the folder changed.
void follow(const DeployJob& job, const std::optional<WorkspaceView>& before, LogTail& log, Report& out) {
  using clock = std::chrono::steady_clock;
  const fs::path dir = job.root / job.name;
  const WorkspaceSpec spec = detect_workspace(job.name, dir);
  const bool want_static = spec.type == WorkspaceType::static_site;
  const std::string want_type(type_name(spec.type));
  const auto started = clock::now();
  const auto deadline = started + job.follow_timeout;
  // A running app restarts by itself once the monitor sees the change; one asleep, stopped or
  // failed is started (a push is a deploy).
  bool saw_change = !before || before->is_static != want_static || before->type != want_type;
  bool nudged = false;
  bool rescanned = false;
  if (before && !want_static && before->status != "running" && before->status != "creating" &&
      before->status != "initializing" && job.act) {
    job.act(job.name, WorkspaceAction::start);
    nudged = true;
    saw_change = true;
  }
  const std::string url = job.url.starts_with("/") ? job.base_url + job.url : job.url;
  // A workspace that had failed before the push counts as failed again only once it was seen
  // doing something else (or failed anew): its old failure is not this push's.
  bool left_failed = !before || before->status != "failed";
  std::string last_status;
  while (true) {
    if (*job.stopping) {
      out.problem("the daemon is stopping; the workspace starts again with it");
      return;
    }
    if (!out.listening()) return;  // the client went away: the deploy itself is done
    if (std::string lines = log.read_lines(); !lines.empty()) out.indented(lines);
    auto snap = job.snapshots->load();
    const WorkspaceView* w = snap->find(job.name);
    const auto waited = clock::now() - started;
    if (!w) {
      if (!rescanned && waited > std::chrono::seconds(5) && job.sync) {
        job.sync(job.name, [](Result<SyncOutcome>) {});  // a rescan, in case the watcher missed it
        rescanned = true;
      }
    } else {
      if (w->status != last_status && !w->phase.empty() && w->status == "initializing") {
        out.step(fmt::format("{}: {}", w->status, w->phase));
      }
      last_status = w->status;
      if (!left_failed && (w->status != "failed" || w->restarts != before->restarts || w->error != before->error)) {
        left_failed = true;
      }
      if (!saw_change && (w->status != "running" || (before && before->pid != 0 && w->pid != before->pid) ||
                          w->type != before->type)) {
        saw_change = true;
      }
      if (!saw_change && !nudged && waited > std::chrono::seconds(8) && job.act) {
        // The monitor did not restart it (nothing it watches changed): a push is a deploy.
        job.act(job.name, WorkspaceAction::restart);
        nudged = true;
      }
      const bool right_kind = want_static ? w->is_static : (!w->is_static && w->type == want_type);
      if (right_kind && (saw_change || want_static) && w->status == "running") {
        if (std::string lines = log.read_lines(); !lines.empty()) out.indented(lines);
        out.done(fmt::format("{} is running at {}", job.name, url));
        return;
      }
      if (right_kind && w->status == "failed" && left_failed && (saw_change || !w->runs)) {
        if (std::string lines = log.read_lines(); !lines.empty()) out.indented(lines);
        std::string why = !w->error.empty() ? w->error : !w->reason.empty() ? w->reason : "see its log";
        if (!w->error.empty() && !w->reason.empty()) why += " (" + w->reason + ")";
        out.problem(fmt::format("{} failed: {}", job.name, why));
        if (!log.relayed() && !w->log_tail.empty()) {  // what the log said is above otherwise
          out.problem("the last lines of its log:");
          out.indented(w->log_tail);
        }
        return;
      }
    }
    if (clock::now() > deadline) {
      out.problem(fmt::format("{} is not running after {} (status: {}); follow it with `cloudyknight ws logs {} -f` "
                              "or on the dashboard",
                              job.name, format_duration(job.follow_timeout), w ? w->status : "not seen yet", job.name));
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

// The deploy thread of one push: reads the pushed references from the hook, deploys the
// workspace's branch and reports on `fd`, then closes it (the hook ends, and with it the push).
// The branches of the push other than the deployed one. A workspace that follows this
// repository is pulled once more on the GitWorkspaces worker, which keeps a branch preview
// `<name>--<branch>` beside it per branch; each preview the monitor then lists is named with
// its URL. Without that worker, or for a branch that gets no preview, the branch is only kept.
void report_other_branches(const DeployJob& job, const std::vector<const git::RefUpdate*>& others,
                           const std::string& branch, bool deployed, Report& out) {
  if (others.empty()) return;
  const fs::path dir = job.root / job.name;
  bool previews = false;
  if (job.pull && git::is_repository(dir)) {
    std::function<void(std::function<void(Result<void>)>)> start = [&](std::function<void(Result<void>)> done) {
      job.pull(job.name, std::move(done));
    };
    auto r = wait_for<Result<void>>(start, std::chrono::minutes(2), *job.stopping);
    previews = r && r->has_value();
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (const auto* u : others) {
    std::string what = u->branch().empty() ? u->ref : "branch " + u->branch();
    if (u->deleted()) {
      out.step(fmt::format("{} deleted", what));
      continue;
    }
    std::string preview;
    while (previews && !u->branch().empty() && preview.empty() && !*job.stopping) {
      for (const auto& w : job.snapshots->load()->workspaces) {
        if (w.preview_of == job.name && w.preview_branch == u->branch()) preview = w.name;
      }
      if (!preview.empty() || std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (!preview.empty() && job.url_of) {
      std::string url = job.url_of(preview);
      if (url.starts_with("/")) url = job.base_url + url;
      out.step(fmt::format("{}: preview at {} (started on its first request)", what, url));
    } else {
      out.step(fmt::format("{} received: kept in the repository ({} deploys {}){}", what, job.name, branch,
                           deployed || git::is_repository(dir) ? "" : "; push " + branch + " to deploy"));
    }
  }
}

// The deploy thread of one push: reads the pushed references from the hook, deploys the
// workspace's branch and reports on `fd`, then closes it (the hook ends, and with it the push).
void deploy(const DeployJob& job, int fd) {
  std::string text = read_refs(fd, *job.stopping);
  auto updates = git::parse_ref_updates(text);
  if (updates.empty()) {
    ::close(fd);
    return;
  }
  Report out(fd);
  const std::string branch = followed_branch(job, updates, out);
  const git::RefUpdate* mine = nullptr;
  std::vector<const git::RefUpdate*> others;
  for (const auto& u : updates) {
    if (u.branch() == branch) {
      mine = &u;
    } else {
      others.push_back(&u);
    }
  }
  if (!mine) {
    out.step(fmt::format("Nothing to deploy: {} deploys the branch {}, which this push did not change", job.name, branch));
    report_other_branches(job, others, branch, false, out);
    ::close(fd);
    return;
  }
  if (mine->deleted()) {
    out.problem(fmt::format("the branch {} that {} deploys was deleted; {} keeps running what it has", branch,
                            job.name, job.name));
    report_other_branches(job, others, branch, false, out);
    ::close(fd);
    return;
  }
  out.step(fmt::format("Deploying {} ({} at {})", job.name, branch, mine->new_id.substr(0, 12)));
  std::optional<WorkspaceView> before;
  if (const auto* w = job.snapshots->load()->find(job.name)) before = *w;
  LogTail log(job.log_path ? job.log_path(job.name) : fs::path());
  const bool forced = mine->created() || !git::fast_forwards(job.repo, mine->old_id, mine->new_id);
  if (!update_folder(job, branch, forced, out)) {
    logger()->warn("[ws={}] git push by {}: the deploy failed", job.name, job.principal);
    ::close(fd);
    return;
  }
  logger()->info("[ws={}] git push by {}: deploying {} at {}", job.name, job.principal, branch,
                 mine->new_id.substr(0, 12));
  follow(job, before, log, out);
  report_other_branches(job, others, branch, true, out);
  ::close(fd);
}

}  // namespace

http::Response ControlApi::git_request(const http::Request& req, const Snapshot& snap) const {
  const auto& gp = services_.git_push;
  std::string_view rest(req.path);
  rest.remove_prefix(kGitPrefix.size());
  auto what = git::classify_git_path(req.method, rest, req.query);
  if (!what) {
    return text_response(404, "CloudyKnight serves git's smart HTTP protocol here only: clone or push "
                               "http(s)://HOST/monitor/git/NAME.git");
  }
  const std::string& name = what->name;
  if (auto v = validate_workspace_name(name); v.has_error()) {
    return text_response(400, fmt::format("'{}' cannot be a workspace: {}", name, v.error().message));
  }
  if (gp.repos.empty() || !services_.auth) {
    return text_response(503, "this control plane does not serve git repositories (it needs folder storage "
                              "and Debian's git package: apt-get install git, then restart it)");
  }
  const bool push = what->service == git::GitService::receive_pack;
  // Credentials: a token (Basic password or Bearer). git asks for them after the 401.
  auto token = git::token_of_authorization(req.header("Authorization"));
  if (!token) {
    return unauthorized("CloudyKnight needs an API token: give it as the password (any user name), e.g. "
                        "with a credential helper or https://x:TOKEN@HOST/monitor/git/" + name + ".git");
  }
  auto who = services_.auth->verify_token(*token);
  if (who.has_error()) return unauthorized("that API token is not valid (expired, revoked or mistyped)");
  const auth::Principal& p = who.value();
  const auth::Scope scope = push ? auth::Scope::deploy : auth::Scope::read;
  if (!p.scopes.has(scope)) {
    return text_response(403, fmt::format("{} may not {}: it needs the '{}' scope (it has {})", p.label(),
                                          push ? "push" : "fetch", auth::scope_name(scope), p.scopes.str()));
  }
  const fs::path repo = gp.repos / (name + ".git");
  const fs::path trash = services_.trash_dir.empty() ? gp.repos.parent_path() / "trash" : services_.trash_dir;
  const fs::path folder = services_.workspaces_root / name;
  std::error_code ec;
  const WorkspaceView* w = snap.find(name);
  const bool folder_exists = !services_.workspaces_root.empty() && fs::exists(fs::symlink_status(folder, ec));
  if (w || folder_exists) {
    auto d = decide(&p, name, w, push ? auth::Access::act : auth::Access::see);
    if (d == auth::Decision::forbidden) {
      return text_response(403, fmt::format("{} may see '{}' but not push to it", p.label(), name));
    }
    if (d != auth::Decision::allowed) {
      if (!push) return text_response(404, fmt::format("there is no workspace named '{}'", name));
      return text_response(409, fmt::format("a workspace named '{}' already exists and {} may not push to it; "
                                            "push to another name",
                                            name, p.label()));
    }
  } else if (!push) {
    return text_response(404, fmt::format("there is no workspace named '{}'", name));
  }
  if (w && !w->preview_of.empty()) {
    return text_response(409, fmt::format("'{}' is the branch preview of {}'s branch {}: use "
                                          "http(s)://HOST/monitor/git/{}.git and that branch",
                                          name, w->preview_of, w->preview_branch, w->preview_of));
  }
  if (!push && !fs::exists(repo / "HEAD", ec)) {
    return text_response(404, fmt::format("'{}' has no git repository here yet: it is made by the first push "
                                          "(git push http(s)://HOST/monitor/git/{}.git main)",
                                          name, name));
  }
  if (push) {
    if (!services_.dir_storage || services_.workspaces_root.empty()) {
      return text_response(409, "git push to deploy needs folder storage (storage.kind: dir); with S3 storage, "
                                "upload with `cloudyknight workspace upload`");
    }
    if (folder_exists) {
      if (auto other = follows_elsewhere(folder, repo); !other.empty()) {
        return text_response(409, fmt::format("'{}' follows {}: push there instead, and CloudyKnight pulls it "
                                              "(POST /monitor/api/v1/workspaces/{}/sync, or a push webhook)",
                                              name, other, name));
      }
    }
    if (!folder_exists && what->advertisement && fs::exists(repo / "HEAD", ec) && git::has_refs(repo) &&
        !git_pushes_->pushing(name)) {
      // The repository of a workspace that was deleted: whoever takes the name next must not
      // be able to fetch its history. It goes to the trash with the workspace.
      fs::create_directories(trash, ec);
      fs::path dest = trash / fmt::format("{}-{}.git", name, utc_stamp());
      for (int n = 2; fs::exists(fs::symlink_status(dest, ec)); ++n) {
        dest = trash / fmt::format("{}-{}-{}.git", name, utc_stamp(), n);
      }
      if (auto moved = move_folder(repo, dest); moved.has_error()) {
        logger()->error("[ws={}] {}", name, moved.error().message);
        return text_response(500, "cannot set the previous repository of '" + name + "' aside: " +
                                      moved.error().message);
      }
      logger()->info("[ws={}] its workspace is gone: moved the old push repository to {}", name, dest.string());
    }
    if (auto made = git::ensure_push_repo(repo, gp.hook_exe); made.has_error()) {
      logger()->error("[ws={}] {}", name, made.error().message);
      return text_response(500, "cannot prepare the repository: " + made.error().message);
    }
  }
  fs::create_directories(gp.home, ec);

  // The request as the CGI sees it.
  git::CgiRequest cgi;
  cgi.method = req.method == "HEAD" ? "GET" : req.method;
  cgi.path_info = std::string(rest);
  cgi.query = req.query;
  cgi.content_type = req.header("Content-Type");
  cgi.content_encoding = req.header("Content-Encoding");
  cgi.content_length = req.body.size();
  cgi.git_protocol = req.header("Git-Protocol");
  cgi.remote_user = p.label();
  cgi.remote_addr = req.client_ip;

  const bool deploys = push && !what->advertisement;
  int sock[2] = {-1, -1};
  git::EnvPairs extra;
  if (deploys) {
    if (!git_pushes_->lock_name(name)) {
      return text_response(409, fmt::format("a push to '{}' is deploying now; push again when it has finished", name));
    }
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock) != 0) {
      git_pushes_->unlock_name(name);
      return text_response(500, fmt::format("cannot make the deploy channel: {}", std::strerror(errno)));
    }
    extra.emplace_back(std::string(git::kHookFdVar), std::to_string(git::kHookFd));
    (void)services_.auth->audit(p.label(), "workspace.push", name,
                                json{{"created", !folder_exists}, {"bytes", req.body.size()}}.dump(),
                                req.client_ip);
  }
  git::CgiRun run;
  run.argv = {gp.git, "http-backend"};
  run.env = git::cgi_env(cgi, gp.repos, gp.home, extra);
  run.cwd = gp.home;
  run.body = req.body;
  run.pass_fd = sock[1];
  run.timeout = gp.timeout;

  std::optional<DeployJob> job;
  if (deploys) {
    job.emplace();
    job->name = name;
    job->repo = repo;
    job->root = services_.workspaces_root;
    job->trash = trash;
    job->owner = p.user_id;
    job->principal = p.label();
    std::string host = req.header("Host");
    const bool host_ok = !host.empty() && host.size() < 256 &&
                         host.find_first_of(" /\\\t\r\n\"'<>") == std::string::npos;
    // The address the push came to, unless that is the control host (no workspace is served
    // there): then the gateway's own.
    job->base_url = host_ok && info_.control_host.empty()
                        ? std::string(req.tls ? "https://" : "http://") + host
                        : info_.listen_url.substr(0, info_.listen_url.size() - 1);
    job->url = workspace_url(name, info_);
    job->url_of = [info = info_](const std::string& n) { return workspace_url(n, info); };
    job->snapshots = &snapshots_;
    job->auth = services_.auth;
    job->act = services_.act;
    job->log_path = services_.log_path;
    job->sync = services_.sync;
    job->pull = gp.pull;
    job->follow_timeout = gp.follow_timeout;
    job->stopping = &git_pushes_->stopping();
  }

  auto st = std::make_shared<http::ResponseStream>();
  // Not a shared_ptr: ~GitPushes joins this thread, so it must not be the one that ends it.
  api::GitPushes* pushes = git_pushes_.get();
  const int deploy_fd = sock[0];
  auto work = [st, pushes, run = std::move(run), job = std::move(job), deploy_fd, name]() mutable {
    std::thread deployer;
    if (job) deployer = std::thread([job = *job, deploy_fd] { deploy(job, deploy_fd); });
    git::CgiSink sink;
    sink.head = [&](git::CgiHead h) { st->begin(h.status, std::move(h.content_type), std::move(h.headers)); };
    sink.body = [&](std::string_view bytes) { return st->write(bytes); };
    sink.ready = [&] { return st->pending_bytes() < kMaxPendingOut; };
    sink.cancelled = [&] { return st->cancelled() || pushes->stopping(); };
    auto outcome = git::run_cgi(std::move(run), sink);
    if (!outcome.head_sent) {
      std::string why = !outcome.error.empty() ? outcome.error : outcome.timed_out ? "it took too long" : "no answer";
      logger()->warn("[ws={}] git http-backend: {}{}", name, why,
                     outcome.stderr_tail.empty() ? "" : " (stderr: " + outcome.stderr_tail + ")");
      st->respond(502, "text/plain; charset=utf-8", "git http-backend failed: " + why + "\n");
    } else if (outcome.exit_code != 0 && !outcome.cancelled) {
      logger()->warn("[ws={}] git http-backend exited with {}{}{}", name, outcome.exit_code,
                     outcome.timed_out ? " (timed out)" : "",
                     outcome.stderr_tail.empty() ? "" : ": " + outcome.stderr_tail);
    }
    st->finish();
    if (deployer.joinable()) deployer.join();
    if (job) pushes->unlock_name(name);
  };
  if (!git_pushes_->start(std::move(work))) {
    if (sock[0] >= 0) ::close(sock[0]);
    if (sock[1] >= 0) ::close(sock[1]);
    if (deploys) git_pushes_->unlock_name(name);
    return text_response(503, "too many git requests are running; try again in a moment");
  }
  http::Response res;
  res.stream = st;
  return res;
}

}  // namespace ck
