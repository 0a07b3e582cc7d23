// The deploy after a git push to /monitor/git (issue 16, part 3; the endpoint is git_api.cc's),
// on the push's deploy thread: it reads the pushed references from the repository's hook over
// the socket the push's programs inherited, and writes its report there.
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

#include "api/git_deploy.h"

#include <fcntl.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "auth/auth.h"
#include "core/log.h"
#include "git/push_repos.h"
#include "git/repo.h"
#include "git/workspaces.h"
#include "workspace/workspace.h"

namespace ck::api {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

auto logger() {
  static auto l = log::get("api");
  return l;
}

constexpr std::size_t kMaxLogChunk = 256u << 10;  // log bytes relayed per look

// workspace.json's "git" object of a folder: {url, branch} (either may be empty).
git::Remote declared_git(const fs::path& dir) {
  git::Remote r;
  std::error_code ec;
  fs::path file = dir / "workspace.json";
  if (fs::is_symlink(file, ec) || !fs::is_regular_file(file, ec) ||
      fs::file_size(file, ec) > (1u << 20))
    return r;
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

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// The report of a push's deploy, written to the hook. Stops writing once the hook is gone; the
// deploy itself goes on.
class HookReport : public DeployReport {
 public:
  explicit HookReport(int fd) : fd_(fd) {}
  void raw(std::string_view s) override {
    if (ok_) ok_ = send_all(fd_, s);
  }
  bool listening() const override { return ok_; }

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

// The branch the workspace deploys, and whether the repository's HEAD was just set to it.
std::string followed_branch(const DeployJob& job, const std::vector<git::RefUpdate>& updates,
                            DeployReport& out) {
  fs::path dir = job.root / job.name;
  auto declared = declared_git(dir);
  if (!declared.branch.empty()) return declared.branch;
  if (git::is_repository(dir)) {
    auto st = git::status(dir);
    if (st.has_value() && !st.value().branch.empty()) return st.value().branch;
  }
  auto head = git::head_branch(job.repo);
  if (head.has_value() && !head.value().empty() && git::has_branch(job.repo, head.value()))
    return head.value();
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
bool update_folder(const DeployJob& job, const std::string& branch, bool forced, DeployReport& out) {
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
      std::function<void(std::function<void(Result<void>)>)> start =
          [&](std::function<void(Result<void>)> done) { job.pull(job.name, std::move(done)); };
      auto r = wait_for<Result<void>>(start, std::chrono::minutes(5), *job.stopping);
      pulled = r ? std::move(*r)
                 : Result<void>(fail(Errc::timeout, "the pull did not finish within 5 min"));
    } else {
      auto r = git::pull(dir, remote, git::Credentials{});
      if (r.has_error()) {
        pulled = r.error();
      } else if (r.value().updated) {
        out.step(fmt::format("Updated the workspace folder: {} file(s) changed",
                             r.value().changed.size()));
      }
    }
    if (!pulled.has_error()) return true;
    if (pulled.error().code != Errc::conflict) {
      out.problem(fmt::format("cannot bring {} up to date: {}", job.name, pulled.error().message));
      out.problem(
          "the push is kept in the repository; fix the folder (or move it away) and push again");
      return false;
    }
    // Not a fast-forward (a forced push, or the folder has commits or edits of its own): the
    // push wins, and the folder as it was goes to the trash, repository and edits included.
    replacing = true;
  }
  // A fresh clone beside the folder (a dot folder: the monitor ignores it), renamed into place.
  static std::atomic<unsigned> counter{0};
  fs::path tmp =
      job.root / fmt::format(".ck-push-{}-{}-{}", job.name, ::getpid(), counter.fetch_add(1));
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
      out.problem(
          fmt::format("cannot move the folder's current files aside: {}; nothing was changed",
                      moved.error().message));
      return false;
    }
    if (replacing) {
      out.step(fmt::format(
          "The push does not fast-forward {}'s folder (a forced push, or changes made there): "
          "the folder as it was, its commits and edits included, was moved to {}",
          job.name, trashed.string()));
    } else {
      out.step(fmt::format(
          "{} was a plain folder: its previous files were moved to {} (nothing was deleted)",
          job.name, trashed.string()));
    }
  } else {
    // A new workspace: its pusher's user owns it from the start (a private one opens for them).
    WorkspaceSpec spec = detect_workspace(job.name, tmp);
    if (job.auth && !job.owner.empty()) {
      if (auto o = job.auth->set_workspace_owner(job.name, job.owner, spec.is_public);
          o.has_error()) {
        logger()->warn("[ws={}] cannot record its owner: {}", job.name, o.error().message);
      }
    }
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    fs::remove_all(tmp, ec);
    if (!trashed.empty()) (void)move_folder(trashed, dir);
    out.problem(
        fmt::format("cannot move the checkout into {}: {}", dir.string(), std::strerror(err)));
    return false;
  }
  out.step(exists ? fmt::format("Replaced {} with {}", job.name, branch)
                  : fmt::format("Created workspace {} from {}", job.name, branch));
  return true;
}

// Follows the workspace until it runs (or is served, for static files) after the change, or
// fails, relaying its log. `before`: its status and pid before the folder changed.
}  // namespace

void follow(const DeployJob& job, const std::optional<WorkspaceView>& before, LogTail& log,
            DeployReport& out) {
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
  // A failure counts as this deploy's only from a start attempt that began after the nudge
  // below (a retry of the old source may fail meanwhile); without a nudge, from any attempt
  // that began after `before`.
  std::int64_t attempts_from_ms = before ? before->attempt_ms + 1 : 0;
  if (before && !want_static && before->status != "running" && before->status != "creating" &&
      before->status != "initializing" && job.act) {
    attempts_from_ms = unix_ms();
    job.act(job.name, WorkspaceAction::start);
    nudged = true;
    saw_change = true;
  }
  const std::string url = job.url.starts_with("/") ? job.base_url + job.url : job.url;
  // A workspace that had failed before the push counts as failed again only once it was seen
  // doing something else (or failed anew): its old failure is not this push's.
  bool left_failed = !before || before->status != "failed";
  std::string last_status, last_phase;
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
        job.sync(job.name, [](const Result<SyncOutcome>&) {});  // a rescan, in case the watcher missed it
        rescanned = true;
      }
    } else {
      if (w->status != last_status && !w->phase.empty() && w->status == "initializing") {
        out.step(fmt::format("{}: {}", w->status, w->phase));
      }
      if (w->replacing && w->phase != last_phase && !w->phase.empty()) {
        out.step(w->phase + " (the running version serves until it answers)");
      }
      last_status = w->status;
      last_phase = w->phase;
      if (!left_failed && (w->status != "failed" || w->attempt_ms >= attempts_from_ms)) {
        left_failed = true;
      }
      if (!saw_change &&
          (w->status != "running" || w->replacing ||
           (before && before->pid != 0 && w->pid != before->pid) || w->type != before->type)) {
        saw_change = true;
      }
      if (!saw_change && !nudged && waited > std::chrono::seconds(8) && job.act) {
        // The monitor did not restart it (nothing it watches changed): a push is a deploy.
        job.act(job.name, WorkspaceAction::restart);
        nudged = true;
      }
      const bool right_kind = want_static ? w->is_static : (!w->is_static && w->type == want_type);
      // Not while its new version starts beside it, nor while a restart is on its way (a new
      // version that did not start falls back to one).
      if (right_kind && (saw_change || want_static) && w->status == "running" && !w->replacing &&
          !w->restarting) {
        if (std::string lines = log.read_lines(); !lines.empty()) out.indented(lines);
        out.done(fmt::format("{} is running at {}", job.name, url));
        return;
      }
      if (right_kind && w->status == "failed" && left_failed && (saw_change || !w->runs)) {
        if (std::string lines = log.read_lines(); !lines.empty()) out.indented(lines);
        std::string why = !w->error.empty()    ? w->error
                          : !w->reason.empty() ? w->reason
                                               : "see its log";
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
      out.problem(fmt::format(
          "{} is not running after {} (status: {}); follow it with `cloudyknight ws logs {} -f` "
          "or on the dashboard",
          job.name, format_duration(job.follow_timeout), w ? w->status : "not seen yet", job.name));
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

namespace {

// The deploy thread of one push: reads the pushed references from the hook, deploys the
// workspace's branch and reports on `fd`, then closes it (the hook ends, and with it the push).
// The branches of the push other than the deployed one. A workspace that follows this
// repository is pulled once more on the GitWorkspaces worker, which keeps a branch preview
// `<name>--<branch>` beside it per branch; each preview the monitor then lists is named with
// its URL. Without that worker, or for a branch that gets no preview, the branch is only kept.
void report_other_branches(const DeployJob& job, const std::vector<const git::RefUpdate*>& others,
                           const std::string& branch, bool deployed, DeployReport& out) {
  if (others.empty()) return;
  const fs::path dir = job.root / job.name;
  bool previews = false;
  if (job.pull && git::is_repository(dir)) {
    std::function<void(std::function<void(Result<void>)>)> start =
        [&](std::function<void(Result<void>)> done) { job.pull(job.name, std::move(done)); };
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
      if (url.starts_with("/")) url.insert(0, job.base_url);
      out.step(fmt::format("{}: preview at {} (started on its first request)", what, url));
    } else {
      out.step(fmt::format(
          "{} received: kept in the repository ({} deploys {}){}", what, job.name, branch,
          deployed || git::is_repository(dir) ? "" : "; push " + branch + " to deploy"));
    }
  }
}

// The deploy thread of one push: reads the pushed references from the hook, deploys the
// workspace's branch and reports on `fd`, then closes it (the hook ends, and with it the push).
void deploy_impl(const DeployJob& job, int fd) {
  std::string text = read_refs(fd, *job.stopping);
  auto updates = git::parse_ref_updates(text);
  if (updates.empty()) {
    ::close(fd);
    return;
  }
  HookReport out(fd);
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
    out.step(
        fmt::format("Nothing to deploy: {} deploys the branch {}, which this push did not change",
                    job.name, branch));
    report_other_branches(job, others, branch, false, out);
    ::close(fd);
    return;
  }
  if (mine->deleted()) {
    out.problem(
        fmt::format("the branch {} that {} deploys was deleted; {} keeps running what it has",
                    branch, job.name, job.name));
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

void deploy_push(const DeployJob& job, int fd) { deploy_impl(job, fd); }

void DeployReport::indented(std::string_view text) {
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

LogTail::LogTail(fs::path p) : path_(std::move(p)) {
  std::error_code ec;
  auto size = fs::file_size(path_, ec);
  offset_ = ec ? 0 : size;
}

std::string LogTail::read_lines() {
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

std::string utc_stamp() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:%Y%m%dT%H%M%SZ}", tm);
}

// The remote another than `ours` that the workspace folder follows (workspace.json or the
// clone's origin), redacted; "" when it follows ours or none.
std::string follows_elsewhere(const fs::path& dir, const fs::path& ours) {
  const std::string mine = normalize_git_url(ours.string());
  auto declared = declared_git(dir);
  if (!declared.url.empty() && normalize_git_url(declared.url) != mine)
    return git::redact_url(declared.url);
  if (git::is_repository(dir)) {
    std::string origin = git::remote_url(dir);
    if (!origin.empty() && normalize_git_url(origin) != mine) return git::redact_url(origin);
  }
  return "";
}

// Moves `from` to `to` (a rename; another file system: a checked copy, then the original goes).
Result<void> move_folder(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (!ec) return outcome::success();
  if (ec != std::errc::cross_device_link) {
    return fail(Errc::io,
                fmt::format("cannot move {} to {}: {}", from.string(), to.string(), ec.message()));
  }
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  if (ec)
    return fail(Errc::io,
                fmt::format("cannot copy {} to {}: {}", from.string(), to.string(), ec.message()));
  fs::remove_all(from, ec);
  if (ec)
    return fail(Errc::io, fmt::format("copied to {} but cannot remove {}: {}", to.string(),
                                      from.string(), ec.message()));
  return outcome::success();
}

}  // namespace ck::api
