#include "git/workspaces.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "auth/crypto.h"
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

constexpr std::size_t kMaxHookBody = 1u << 20;
constexpr std::size_t kMaxWorkspaceJson = 1u << 20;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// workspace.json "git": {"url", "branch"} of a folder, when it has one.
std::optional<git::Remote> declared_remote(const fs::path& dir) {
  std::error_code ec;
  fs::path file = dir / "workspace.json";
  if (fs::is_symlink(file, ec) || !fs::is_regular_file(file, ec)) return std::nullopt;
  if (fs::file_size(file, ec) > kMaxWorkspaceJson || ec) return std::nullopt;
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (!j.is_object() || !j.contains("git") || !j["git"].is_object()) return std::nullopt;
  const json& g = j["git"];
  git::Remote r;
  if (g.contains("url") && g["url"].is_string()) r.url = g["url"].get<std::string>();
  if (g.contains("branch") && g["branch"].is_string()) r.branch = g["branch"].get<std::string>();
  if (r.url.empty()) return std::nullopt;
  return r;
}

std::string hex_lower(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

}  // namespace

std::string normalize_git_url(std::string_view in) {
  std::string url(in);
  while (!url.empty() && (url.back() == '/' || url.back() == ' ')) url.pop_back();
  if (url.size() > 4 && url.compare(url.size() - 4, 4, ".git") == 0) url.resize(url.size() - 4);
  auto scheme = url.find("://");
  std::string rest;
  if (scheme != std::string::npos) {
    std::string s = lower(url.substr(0, scheme));
    rest = url.substr(scheme + 3);
    if (s == "file") return rest;
  } else if (!url.empty() && url.front() == '/') {
    return url;
  } else {
    // scp-like user@host:path
    auto colon = url.find(':');
    if (colon == std::string::npos) return url;
    rest = url.substr(0, colon) + "/" + url.substr(colon + 1);
  }
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  if (auto at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
  if (auto colon = authority.rfind(':'); colon != std::string::npos && authority.find(']') == std::string::npos) {
    authority = authority.substr(0, colon);
  }
  while (path.size() > 1 && path[1] == '/') path.erase(0, 1);
  return lower(authority) + path;
}

Result<GitHookPush> parse_git_hook(std::string_view body) {
  if (body.size() > kMaxHookBody) return fail(Errc::too_large, "the webhook payload is over 1 MiB");
  json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return fail(Errc::invalid_argument, "the webhook payload is not a JSON object");
  GitHookPush out;
  if (!j.contains("ref") || !j["ref"].is_string()) {
    return fail(Errc::invalid_argument, "the webhook payload has no \"ref\": only push events are handled");
  }
  out.ref = j["ref"].get<std::string>();
  if (j.contains("deleted") && j["deleted"].is_boolean()) out.deleted = j["deleted"].get<bool>();
  if (j.contains("after") && j["after"].is_string() &&
      j["after"].get<std::string>() == "0000000000000000000000000000000000000000") {
    out.deleted = true;
  }
  for (const char* holder : {"repository", "project"}) {
    if (!j.contains(holder) || !j[holder].is_object()) continue;
    for (const char* key : {"clone_url", "ssh_url", "git_url", "html_url", "git_http_url", "git_ssh_url",
                            "web_url", "url"}) {
      const json& r = j[holder];
      if (r.contains(key) && r[key].is_string() && !r[key].get<std::string>().empty()) {
        out.urls.push_back(r[key].get<std::string>());
      }
    }
  }
  if (out.urls.empty()) {
    return fail(Errc::invalid_argument, "the webhook payload names no repository URL (repository.clone_url "
                                        "or project.git_http_url)");
  }
  return out;
}

Result<void> verify_git_hook(std::string_view secret, std::string_view body, std::string_view hub_sig256,
                             std::string_view gitea_sig, std::string_view gitlab_token) {
  const std::string expected = hex_lower(auth::hmac_sha256(secret, body));
  if (!hub_sig256.empty()) {
    if (hub_sig256.rfind("sha256=", 0) == 0 && auth::constant_time_equal(hub_sig256.substr(7), expected)) {
      return outcome::success();
    }
  } else if (!gitea_sig.empty()) {
    if (auth::constant_time_equal(gitea_sig, expected)) return outcome::success();
  } else if (!gitlab_token.empty()) {
    if (auth::constant_time_equal(gitlab_token, secret)) return outcome::success();
  } else {
    return fail(Errc::unauthenticated, "the webhook is not signed: send X-Hub-Signature-256 (GitHub, Gitea) "
                                       "or X-Gitlab-Token with the secret set as git.webhook_secret");
  }
  return fail(Errc::unauthenticated, "the webhook's signature does not match git.webhook_secret");
}

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

namespace {

// "feature/New_UI" -> "feature-new-ui": what a branch adds to its preview's name.
std::string safe_branch_part(const std::string& branch) {
  std::string out;
  for (char c : branch) {
    char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool ok = (l >= 'a' && l <= 'z') || (l >= '0' && l <= '9');
    if (ok) {
      out += l;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

}  // namespace

void GitWorkspaces::sync_previews(const std::string& name) {
  fs::path dir = root_ / name;
  if (git::is_repository(dir) && preview_of(dir)) return;  // a preview has no previews
  auto st = git::status(dir);
  auto branches = git::remote_branches(dir);
  if (st.has_error() || branches.has_error()) return;
  auto log = logger();
  // What should exist: a preview per branch but the followed one.
  std::map<std::string, std::string> want;  // preview name -> branch
  std::vector<std::string> refused;
  for (const auto& b : branches.value()) {
    if (b == st.value().branch) continue;
    std::string preview = name + "--" + safe_branch_part(b);
    if (safe_branch_part(b).empty() || !is_valid_workspace_name(preview)) {
      refused.push_back(fmt::format("branch '{}': '{}' is not a workspace name (at most 63 characters, "
                                    "a-z 0-9 -); rename the branch to preview it", b, preview));
      continue;
    }
    if (auto [it, fresh] = want.emplace(preview, b); !fresh) {
      refused.push_back(fmt::format("branches '{}' and '{}' both map to the preview '{}'; rename one to "
                                    "preview both", it->second, b, preview));
      want.erase(it);
    }
  }
  // What exists: worktrees of this repository beside it.
  std::map<std::string, std::string> have;  // preview name -> branch
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    std::string folder = entry.path().filename().string();
    if (folder.rfind(name + "--", 0) != 0) continue;
    auto p = preview_of(entry.path());
    if (p && p->workspace == name) have[folder] = p->branch;
  }
  for (const auto& [preview, branch] : have) {
    auto w = want.find(preview);
    if (w != want.end() && w->second == branch) {
      auto up = git::update_worktree(root_ / preview);
      if (up.has_error()) {
        log->warn("[ws={}] preview of '{}': {}", preview, branch, up.error().message);
      } else if (up.value().updated) {
        log->info("[ws={}] preview of '{}' updated to {}", preview, branch, up.value().new_head.substr(0, 12));
        event(name, {{"action", "preview"}, {"preview", preview}, {"branch", branch}, {"head", up.value().new_head}});
      }
      want.erase(w);
      continue;
    }
    auto removed = git::remove_worktree(dir, preview);
    if (removed.has_error()) {
      log->warn("[ws={}] cannot remove the preview of '{}': {}", preview, branch, removed.error().message);
      continue;
    }
    log->info("[ws={}] the branch '{}' is gone from the remote: its preview is removed", preview, branch);
    event(name, {{"action", "preview"}, {"preview", preview}, {"branch", branch}, {"removed", true}});
    if (on_preview) on_preview(preview, name, false);
  }
  for (const auto& [preview, branch] : want) {
    if (fs::exists(fs::symlink_status(root_ / preview, ec))) {
      refused.push_back(fmt::format("branch '{}': a folder named '{}' already exists and is not its preview",
                                    branch, preview));
      continue;
    }
    auto added = git::add_worktree(dir, preview, root_ / preview, branch);
    if (added.has_error()) {
      refused.push_back(fmt::format("branch '{}': {}", branch, added.error().message));
      continue;
    }
    if (on_preview) on_preview(preview, name, true);
    log->info("[ws={}] preview of the branch '{}' made (it starts on its first request)", preview, branch);
    event(name, {{"action", "preview"}, {"preview", preview}, {"branch", branch}, {"added", true}});
  }
  std::lock_guard lock(mutex_);
  auto& state = states_[name];
  state.previews_refused = std::move(refused);
  for (const auto& r : state.previews_refused) log->warn("[ws={}] no preview for {}", name, r);
}

void GitWorkspaces::prune_orphan_previews() {
  // A preview whose workspace is gone (deleted, its repository with it): remove the folder;
  // its commits are on the remote.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    std::string folder = entry.path().filename().string();
    auto pos = folder.find("--");
    if (pos == std::string::npos || !is_valid_workspace_name(folder)) continue;
    fs::path marker = entry.path() / ".git";
    if (!fs::is_regular_file(marker, ec) || preview_of(entry.path())) continue;
    std::ifstream in(marker);
    std::string line;
    std::getline(in, line);
    // Only what GitWorkspaces made: gitdir into <root>/<workspace>/.git/worktrees/<folder>.
    if (line.rfind("gitdir: ", 0) != 0) continue;
    std::string target = line.substr(8);
    while (target.size() > 1 && target.back() == '/') target.pop_back();
    fs::path gitdir = target;
    fs::path expect = fs::weakly_canonical(root_, ec) / folder.substr(0, pos) / ".git" / "worktrees" / folder;
    if (fs::weakly_canonical(gitdir, ec) != expect || fs::exists(gitdir, ec)) continue;
    fs::remove_all(entry.path(), ec);
    logger()->info("[ws={}] removed: a preview of '{}', which is gone", folder, folder.substr(0, pos));
    if (on_preview) on_preview(folder, folder.substr(0, pos), false);
  }
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
