#pragma once
// Git-backed workspaces in the daemon (issue 16): which workspace folders follow a remote,
// pulling them (before a start, on POST /sync, on a schedule, on a push webhook), committing
// and pushing the edits made through CloudyKnight (git.autocommit), and each one's git status
// for the API and the dashboard. Every repository operation runs on one worker thread of its
// own, one at a time, so a slow remote never blocks the control plane or the gateway, and two
// operations never touch one working copy at once. Callbacks run on that worker thread.
//
// A folder follows a remote when it holds a repository with an "origin" (made by a clone
// through CloudyKnight, or by hand), or when its workspace.json has "git": {"url", "branch"}
// (the first pull then makes the repository in place). Credentials: a token the workspace was
// given (state.db setting git.token.<name>, set through the API, never shown again), else
// git.token; they reach libgit2 through its credential callback only, never a URL on disk.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json_fwd.hpp>

#include "core/config.h"
#include "core/error.h"
#include "events/events.h"
#include "git/repo.h"
#include "state/state.h"

namespace ck {

/// What a push webhook asked for.
struct GitHookPush {
  std::string ref;                // "refs/heads/main"
  std::vector<std::string> urls;  // every URL the payload gives for the repository
  bool deleted = false;           // the branch was deleted
};

/// Parses a GitHub-, Gitea- or GitLab-style push payload. invalid_argument for anything that
/// is not a JSON object with a "ref" and a repository URL. Pure.
Result<GitHookPush> parse_git_hook(std::string_view body);

/// Checks a webhook's signature: X-Hub-Signature-256 ("sha256=<hex HMAC-SHA256 of the body>",
/// GitHub, Gitea), X-Gitea-Signature (<hex>), or X-Gitlab-Token (the secret itself); compared
/// in constant time. unauthenticated when none is given or none matches. Pure.
Result<void> verify_git_hook(std::string_view secret, std::string_view body, std::string_view hub_sig256,
                             std::string_view gitea_sig, std::string_view gitlab_token);

/// A repository URL reduced to what identifies it ("host/owner/repo", or the path for a local
/// one): no scheme, user, password, port... kept, lower-case host, no ".git" or trailing "/".
/// Pure.
std::string normalize_git_url(std::string_view url);

class GitWorkspaces {
 public:
  /// `root`: the workspace folders. `db` (optional): tokens and the conflict marks.
  GitWorkspaces(std::filesystem::path root, StateDb* db, EventBus& events, GitConfig opts);
  ~GitWorkspaces();
  GitWorkspaces(const GitWorkspaces&) = delete;
  GitWorkspaces& operator=(const GitWorkspaces&) = delete;

  /// Starts the worker and the schedule (git.poll, git.autocommit interval).
  void start();
  /// Stops both; queued operations are dropped.
  void stop();

  /// The remote `name` follows, or nullopt. Blocking file reads; any thread.
  std::optional<git::Remote> binding(const std::string& name) const;

  /// Queues a pull of `name` (a no-op success for a folder that follows nothing). `done` runs
  /// on the worker. `why`: "start", "sync", "poll", "webhook", "create".
  void pull(const std::string& name, std::string why, std::function<void(Result<git::PullResult>)> done);

  /// Pulls now on the caller's thread (the CLI, tests, the worker itself).
  Result<git::PullResult> pull_now(const std::string& name, const std::string& why);

  /// Makes a new workspace folder `dir` (which must not exist) a clone of `remote`, for
  /// POST /workspaces {"git"} and `ws git-init`: checks the URL (local ones only with
  /// git.allow_local_remotes), stores `token` for the workspace (when given) and clones.
  /// Blocking; on failure nothing is left at `dir` and no token is kept.
  /// `owner`: who creates it; an ssh deploy key made for the same name by someone else (an
  /// earlier attempt) is never handed on: a new one is made.
  Result<git::PullResult> clone_new(const std::string& name, const std::filesystem::path& dir,
                                    const git::Remote& remote, const std::string& token,
                                    const std::string& owner = "operator");

  /// clone_new() on the worker; `done` runs there.
  void clone(const std::string& name, std::filesystem::path dir, git::Remote remote, std::string token,
             std::string owner, std::function<void(Result<git::PullResult>)> done);

  /// A file of `name` was written or deleted through CloudyKnight by `author`: with
  /// git.autocommit on-save, commits and pushes it shortly (edits within a second are one
  /// commit); with interval, at the next tick; with off, nothing.
  void saved(const std::string& name, git::Author author, std::string what);

  /// `name`'s git status for GET /workspaces/{name}/status: {url, branch, head, ahead, behind,
  /// dirty, last_pull, last_push, error, sync, conflict_branch?, autocommit}; null when it
  /// follows nothing. Blocking (reads the working tree); any thread.
  nlohmann::json status(const std::string& name);

  /// POST /git/hook: verifies and parses the payload, then queues a pull of every workspace
  /// that follows that repository and branch. The names queued.
  Result<std::vector<std::string>> webhook(std::string_view body, std::string_view hub_sig256,
                                           std::string_view gitea_sig, std::string_view gitlab_token);

  /// Credentials for `name`'s remote (`url`: the remote's, to tell an ssh one; its deploy key
  /// is made on first use).
  git::Credentials credentials(const std::string& name, const std::string& url = "") const;

  const GitConfig& options() const { return opts_; }

  /// Where each workspace's deploy key and pinned host keys live (DATA/git/keys/<name>);
  /// empty: ssh remotes get no key. Set before start().
  void set_keys_dir(std::filesystem::path dir) { keys_dir_ = std::move(dir); }

  /// Told (on the worker) when a branch preview `preview` of `workspace` was made (true) or
  /// removed (false): the daemon gives it its workspace's owner. Set before start().
  std::function<void(const std::string& preview, const std::string& workspace, bool added)> on_preview;

  /// Brings `name`'s branch previews in step with its remote's branches (after a fetch): a
  /// worktree `<name>--<branch>` beside it per branch other than the one it follows, updated
  /// by fast-forward, removed with the branch. Worker thread (pull_now calls it).
  void sync_previews(const std::string& name);

 private:
  struct State {
    std::int64_t last_pull_ms = 0;
    std::int64_t last_push_ms = 0;
    std::string error;
    std::string conflict_branch;
    std::string busy;  // "pulling", "pushing", ""
    bool pending_commit = false;
    std::vector<std::string> pending_what;
    std::string pending_author_name, pending_author_email;
    std::vector<std::string> previews_refused;
  };
  void post(std::function<void()> fn);
  void worker_loop();
  void schedule_loop();
  void commit_and_push(const std::string& name);
  std::vector<std::string> bound_names() const;
  void prune_orphan_previews();
  void event(const std::string& name, nlohmann::json data);

  std::filesystem::path root_;
  std::filesystem::path keys_dir_;
  StateDb* db_;
  EventBus& events_;
  GitConfig opts_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::map<std::string, State> states_;
  bool stopping_ = false;
  std::thread worker_;
  std::thread scheduler_;
};

}  // namespace ck
