#include "git/workspaces.h"

#include <algorithm>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/files.h"
#include "core/log.h"
#include "core/names.h"
#include "git/keys.h"
#include "workspace/workspace.h"

namespace ck {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

auto logger() {
  static auto l = log::get("git");
  return l;
}

constexpr std::size_t kMaxWorkspaceJson = 1u << 20;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// workspace.json "git": {"url", "branch"} of a folder, when it has one.
std::optional<git::Remote> declared_remote(const fs::path& dir) {
  std::error_code ec;
  fs::path file = dir / "workspace.json";
  if (fs::is_symlink(file, ec) || !fs::is_regular_file(file, ec)) return std::nullopt;
  if (fs::file_size(file, ec) > kMaxWorkspaceJson || ec) return std::nullopt;
  json j = json::parse(read_file(file).value_or(""), nullptr, false);
  if (!j.is_object() || !j.contains("git") || !j["git"].is_object()) return std::nullopt;
  const json& g = j["git"];
  git::Remote r;
  if (g.contains("url") && g["url"].is_string()) r.url = g["url"].get<std::string>();
  if (g.contains("branch") && g["branch"].is_string()) r.branch = g["branch"].get<std::string>();
  if (r.url.empty()) return std::nullopt;
  return r;
}

}  // namespace

GitWorkspaces::GitWorkspaces(fs::path root, StateDb* db, EventBus& events, GitConfig opts)
    : root_(std::move(root)), db_(db), events_(events), opts_(std::move(opts)) {}

GitWorkspaces::~GitWorkspaces() { stop(); }

void GitWorkspaces::start() {
  {
    std::lock_guard lock(mutex_);
    if (worker_.joinable()) return;
    stopping_ = false;
    worker_ = std::thread([this] { worker_loop(); });
    scheduler_ = std::thread([this] { schedule_loop(); });
  }
  // Folders whose workspace.json names a remote but hold no repository yet: clone them now
  // (they have nothing to run until then).
  post([this] {
    for (const auto& name : bound_names()) {
      if (!git::is_repository(root_ / name)) (void)pull_now(name, "bind");
    }
  });
}

void GitWorkspaces::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  if (scheduler_.joinable()) scheduler_.join();
}

void GitWorkspaces::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && worker_.joinable()) return;
    queue_.push_back(std::move(fn));
  }
  cv_.notify_all();
}

void GitWorkspaces::worker_loop() {
  std::unique_lock lock(mutex_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    auto fn = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    fn();
    lock.lock();
  }
}

void GitWorkspaces::schedule_loop() {
  using clock = std::chrono::steady_clock;
  auto next_poll = clock::now() + opts_.poll;
  auto next_commit = clock::now() + opts_.autocommit_interval;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    auto wake = std::min(opts_.poll.count() > 0 ? next_poll : clock::time_point::max(),
                         opts_.autocommit == "interval" ? next_commit : clock::time_point::max());
    if (wake == clock::time_point::max()) {
      cv_.wait(lock, [&] { return stopping_; });
      return;
    }
    cv_.wait_until(lock, wake, [&] { return stopping_; });
    if (stopping_) return;
    auto now = clock::now();
    lock.unlock();
    if (opts_.poll.count() > 0 && now >= next_poll) {
      next_poll = now + opts_.poll;
      post([this] { prune_orphan_previews(); });
      for (const auto& name : bound_names()) {
        pull(name, "poll", [](Result<git::PullResult>) {});
      }
    }
    if (opts_.autocommit == "interval" && now >= next_commit) {
      next_commit = now + opts_.autocommit_interval;
      std::vector<std::string> due;
      {
        std::lock_guard l(mutex_);
        for (auto& [name, st] : states_) {
          if (st.pending_commit) due.push_back(name);
        }
      }
      for (const auto& name : due) post([this, name] { commit_and_push(name); });
    }
    lock.lock();
  }
}

std::vector<std::string> GitWorkspaces::bound_names() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    std::string name = entry.path().filename().string();
    if (!is_valid_workspace_name(name) || !entry.is_directory(ec) || entry.is_symlink(ec)) continue;
    if (binding(name)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<git::Remote> GitWorkspaces::binding(const std::string& name) const {
  if (!is_valid_workspace_name(name)) return std::nullopt;
  fs::path dir = root_ / name;
  if (preview_of(dir)) return std::nullopt;  // its workspace pulls for it (sync_previews)
  auto declared = declared_remote(dir);
  if (git::is_repository(dir)) {
    git::Remote r;
    if (declared && git::check_url(declared->url, opts_.allow_local_remotes).has_value()) {
      r = *declared;
    } else {
      // The origin the repository has (credentials never stored in it by CloudyKnight).
      r.url = git::remote_url(dir);
      if (r.url.empty()) return std::nullopt;
      if (declared) r.branch = declared->branch;
    }
    return r;
  }
  if (declared) return declared;
  return std::nullopt;
}

git::Credentials GitWorkspaces::credentials(const std::string& name, const std::string& url) const {
  git::Credentials c;
  c.username = opts_.username;
  c.token = opts_.token;
  if (!keys_dir_.empty() && git::is_ssh_url(url)) {
    fs::path dir = keys_dir_ / name;
    auto key = git::ensure_deploy_key(dir, "cloudyknight-" + name);
    if (key.has_value()) {
      c.ssh_key = dir / "id_ecdsa";
      c.known_hosts = dir / "known_hosts";
      c.username.clear();  // the URL's user (git@...) is the one ssh logs in as
    } else {
      logger()->warn("[ws={}] no deploy key: {}", name, key.error().message);
    }
  }
  if (db_) {
    auto t = db_->setting("git.token." + name);
    if (t.has_value() && t.value() && !t.value()->empty()) c.token = *t.value();
  }
  return c;
}

void GitWorkspaces::event(const std::string& name, json data) { events_.publish("git", name, std::move(data)); }

void GitWorkspaces::pull(const std::string& name, std::string why,
                         std::function<void(Result<git::PullResult>)> done) {
  post([this, name, why = std::move(why), done = std::move(done)] { done(pull_now(name, why)); });
}

Result<git::PullResult> GitWorkspaces::pull_now(const std::string& name, const std::string& why) {
  auto remote = binding(name);
  if (!remote) return git::PullResult{};
  fs::path dir = root_ / name;
  auto log = logger();
  if (!git::is_repository(dir)) {
    // The first pull of a workspace.json binding: members write workspace.json, so a local
    // path is taken only when the operator allows local remotes.
    if (auto ok = git::check_url(remote->url, opts_.allow_local_remotes); ok.has_error()) {
      std::lock_guard lock(mutex_);
      states_[name].error = ok.error().message;
      return ok.error();
    }
    // A new binding: a token kept for an earlier workspace of this name is not its own.
    if (db_) (void)db_->set_setting("git.token." + name, "");
  }
  if (why == "sync" && git::is_repository(dir)) {
    // The dashboard's "Pull & push": edits not pushed yet go first; a conflict reported
    // earlier counts as seen (its branch stays on the remote).
    bool pending = false;
    {
      std::lock_guard lock(mutex_);
      pending = states_[name].pending_commit;
    }
    auto st = git::status(dir);
    if (opts_.autocommit != "off" && (pending || (st.has_value() && (st.value().ahead > 0 || st.value().dirty)))) {
      commit_and_push(name);
    }
    if (db_) (void)db_->set_setting("git.conflict." + name, "");
  }
  {
    std::lock_guard lock(mutex_);
    states_[name].busy = "pulling";
  }
  auto r = git::pull(dir, *remote, credentials(name, remote->url));
  if (r.has_error() && r.error().code == Errc::conflict) {
    // Local commits the remote lacks (an earlier push failed): pushing rebases them.
    auto st = git::status(dir);
    if (st.has_value() && st.value().ahead > 0) {
      commit_and_push(name);
      r = git::pull(dir, *remote, credentials(name, remote->url));
    }
  }
  {
    std::lock_guard lock(mutex_);
    State& st = states_[name];
    st.busy.clear();
    if (r.has_error()) {
      st.error = r.error().message;
    } else {
      st.error.clear();
      st.last_pull_ms = now_ms();
    }
  }
  if (r.has_error()) {
    log->warn("[ws={}] git pull ({}): {}", name, why, r.error().message);
    event(name, {{"action", "pull"}, {"why", why}, {"error", r.error().message}});
    return r;
  }
  const auto& p = r.value();
  if (p.updated || p.cloned) {
    log->info("[ws={}] git pull ({}): {} -> {} ({} file(s) changed)", name, why,
              p.old_head.empty() ? "(new)" : p.old_head.substr(0, 12), p.new_head.substr(0, 12), p.changed.size());
  }
  event(name, {{"action", "pull"},
               {"why", why},
               {"updated", p.updated},
               {"head", p.new_head},
               {"changed", p.changed.size()}});
  sync_previews(name);
  return r;
}

Result<git::PullResult> GitWorkspaces::clone_new(const std::string& name, const fs::path& dir,
                                                  const git::Remote& remote, const std::string& token,
                                                  const std::string& owner) {
  BOOST_OUTCOME_TRY(git::check_url(remote.url, opts_.allow_local_remotes));
  if (!remote.branch.empty()) {
    BOOST_OUTCOME_TRY(git::check_branch(remote.branch));
  }
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    return fail(Errc::already_exists, dir.string() + " already holds files");
  }
  if (!keys_dir_.empty() && git::is_ssh_url(remote.url)) {
    // A key pair left by someone else's attempt at this name is theirs (it may be on their
    // repository): start afresh.
    fs::path dir_keys = keys_dir_ / name;
    std::ifstream in(dir_keys / "owner");
    std::string was;
    std::getline(in, was);
    if (fs::exists(dir_keys, ec) && was != owner) fs::remove_all(dir_keys, ec);
  }
  // A token kept for an earlier workspace of this name is not this one's.
  if (db_) (void)db_->set_setting("git.token." + name, "");
  git::Credentials creds = credentials(name, remote.url);
  if (!creds.ssh_key.empty()) std::ofstream(keys_dir_ / name / "owner") << owner << "\n";
  if (!token.empty()) creds.token = token;
  auto r = git::pull(dir, remote, creds);
  if (r.has_error()) {
    fs::remove_all(dir, ec);
    if (r.error().code == Errc::unauthenticated && !creds.ssh_key.empty()) {
      // The first clone of a private ssh repository: say which key to add.
      return fail(Errc::unauthenticated, r.error().message + ". Add this deploy key to the repository (read "
                                         "access; write access for pushes of edits), then try again: " +
                                         git::deploy_key(creds.ssh_key.parent_path()));
    }
    return r.error();
  }
  if (!token.empty() && db_) {
    if (auto s = db_->set_setting("git.token." + name, token); s.has_error()) {
      fs::remove_all(dir, ec);
      return fail(Errc::io, "cannot keep the workspace's git token: " + s.error().message);
    }
  }
  std::lock_guard lock(mutex_);
  states_[name].last_pull_ms = now_ms();
  states_[name].error.clear();
  return r;
}

void GitWorkspaces::clone(const std::string& name, fs::path dir, git::Remote remote, std::string token,
                          std::string owner, std::function<void(Result<git::PullResult>)> done) {
  post([this, name, dir = std::move(dir), remote = std::move(remote), token = std::move(token),
        owner = std::move(owner), done = std::move(done)] { done(clone_new(name, dir, remote, token, owner)); });
}

void GitWorkspaces::saved(const std::string& name, git::Author author, std::string what) {
  if (opts_.autocommit == "off") return;
  if (!git::is_repository(root_ / name) || preview_of(root_ / name)) return;
  bool first = false;
  {
    std::lock_guard lock(mutex_);
    State& st = states_[name];
    first = !st.pending_commit;
    st.pending_commit = true;
    if (st.pending_what.size() < 20) st.pending_what.push_back(std::move(what));
    st.pending_author_name = std::move(author.name);
    st.pending_author_email = std::move(author.email);
  }
  if (opts_.autocommit != "on-save" || !first) return;
  // Saves within a second are one commit: the worker waits that long before committing.
  post([this, name] {
    {
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
      if (stopping_) return;
    }
    commit_and_push(name);
  });
}

void GitWorkspaces::commit_and_push(const std::string& name) {
  fs::path dir = root_ / name;
  git::Author author;
  std::vector<std::string> what;
  {
    std::lock_guard lock(mutex_);
    State& st = states_[name];
    author = {st.pending_author_name, st.pending_author_email};
    what = std::move(st.pending_what);
    st.pending_what.clear();
    st.pending_commit = false;
    st.busy = "pushing";
  }
  if (author.name.empty()) author = {"cloudyknight", "cloudyknight@localhost"};
  std::string message = what.empty() ? "Edit through CloudyKnight" : "Edit " + what.front();
  if (what.size() > 1) message += fmt::format(" and {} more", what.size() - 1);
  message += " through CloudyKnight";
  if (!what.empty()) {
    message += "\n\n";
    for (const auto& w : what) message += "- " + w + "\n";
  }
  auto log = logger();
  auto c = git::commit_all(dir, author, message);
  Result<git::PushResult> p = git::PushResult{};
  if (c.has_value()) {
    auto st = git::status(dir);
    if (c.value() || (st.has_value() && st.value().ahead > 0)) {
      auto remote = binding(name);
      p = git::push(dir, credentials(name, remote ? remote->url : ""));
    }
  }
  std::lock_guard lock(mutex_);
  State& st = states_[name];
  st.busy.clear();
  if (c.has_error() || p.has_error()) {
    st.error = c.has_error() ? c.error().message : p.error().message;
    log->warn("[ws={}] git commit/push: {}", name, st.error);
    event(name, {{"action", "push"}, {"error", st.error}});
    return;
  }
  st.error.clear();
  if (!p.value().pushed && p.value().conflict_branch.empty()) return;  // nothing to push
  st.last_push_ms = now_ms();
  if (!p.value().conflict_branch.empty()) {
    st.conflict_branch = p.value().conflict_branch;
    if (db_) (void)db_->set_setting("git.conflict." + name, st.conflict_branch);
    log->warn("[ws={}] git push: the remote moved and the edits do not apply on it; they are kept on the "
              "branch {} (here and on the remote), and the workspace follows the remote again",
              name, st.conflict_branch);
    event(name, {{"action", "conflict"}, {"branch", st.conflict_branch}, {"head", p.value().head}});
    return;
  }
  if (db_ && !st.conflict_branch.empty()) (void)db_->set_setting("git.conflict." + name, "");
  st.conflict_branch.clear();
  log->info("[ws={}] git push: {}{} by {}", name, p.value().head.substr(0, 12),
            p.value().rebased ? " (rebased on the remote's new commits)" : "", author.name);
  event(name, {{"action", "push"}, {"head", p.value().head}, {"rebased", p.value().rebased}});
}

json GitWorkspaces::status(const std::string& name) {
  auto remote = binding(name);
  if (!remote) return nullptr;
  fs::path dir = root_ / name;
  json out = {{"url", git::redact_url(remote->url)},
              {"branch", remote->branch},
              {"head", ""},
              {"ahead", 0},
              {"behind", 0},
              {"dirty", false},
              {"autocommit", opts_.autocommit}};
  if (git::is_repository(dir)) {
    auto st = git::status(dir);
    if (st.has_value()) {
      out["branch"] = st.value().branch;
      out["head"] = st.value().head;
      out["ahead"] = st.value().ahead;
      out["behind"] = st.value().behind;
      out["dirty"] = st.value().dirty;
    }
  }
  std::string conflict;
  if (db_) {
    auto c = db_->setting("git.conflict." + name);
    if (c.has_value() && c.value()) conflict = *c.value();
  }
  std::lock_guard lock(mutex_);
  const State& st = states_[name];
  out["last_pull"] = st.last_pull_ms ? json(st.last_pull_ms) : json(nullptr);
  out["last_push"] = st.last_push_ms ? json(st.last_push_ms) : json(nullptr);
  out["error"] = st.error.empty() ? json(nullptr) : json(st.error);
  if (!st.previews_refused.empty()) out["previews_refused"] = st.previews_refused;
  if (!keys_dir_.empty() && git::is_ssh_url(remote->url)) out["deploy_key"] = git::deploy_key(keys_dir_ / name);
  if (!conflict.empty()) {
    out["sync"] = "conflict";
    out["conflict_branch"] = conflict;
  } else {
    out["sync"] = !st.busy.empty() ? st.busy : st.error.empty() ? "ok" : "error";
  }
  return out;
}

Result<std::vector<std::string>> GitWorkspaces::webhook(std::string_view body, std::string_view hub_sig256,
                                                        std::string_view gitea_sig, std::string_view gitlab_token) {
  if (opts_.webhook_secret.empty()) {
    return fail(Errc::unavailable, "push webhooks are off: set git.webhook_secret (CK_GIT_WEBHOOK_SECRET) and "
                                   "give the same secret to the git host");
  }
  BOOST_OUTCOME_TRY(verify_git_hook(opts_.webhook_secret, body, hub_sig256, gitea_sig, gitlab_token));
  BOOST_OUTCOME_TRY(push, parse_git_hook(body));
  std::vector<std::string> queued;
  if (push.ref.rfind("refs/heads/", 0) != 0) return queued;  // a tag: nothing follows tags
  std::set<std::string> urls;
  for (const auto& u : push.urls) urls.insert(normalize_git_url(u));
  for (const auto& name : bound_names()) {
    auto remote = binding(name);
    if (!remote || !urls.count(normalize_git_url(remote->url))) continue;
    // A push to the followed branch updates the workspace; to another one, its preview (the
    // pull fetches every branch, then brings the previews in step).
    queued.push_back(name);
    pull(name, "webhook", [](Result<git::PullResult>) {});
  }
  return queued;
}

}  // namespace ck
