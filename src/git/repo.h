#pragma once
// Git working copies through libgit2 (issue 16): the operations a git-backed workspace needs,
// each one blocking call on the caller's thread (the daemon runs them on its git worker, never
// on the control plane's io_context). A workspace folder is an ordinary non-bare repository
// whose remote "origin" is the URL it follows and whose checked-out branch tracks
// origin/<branch>. Nothing here runs a git hook, a filter or any program from the repository;
// credentials never appear in a message, a log line or a URL written to disk.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace ck::git {

/// How to authenticate to a remote. https: `token` as the password (with `username`, "git"
/// when empty); ssh: the key pair at `ssh_key` (private, PEM or OpenSSH) and `ssh_key`.pub.
/// file paths and plain http without a token: nothing.
struct Credentials {
  std::string username;
  std::string token;
  std::filesystem::path ssh_key;
  /// ssh: where the server's host key is pinned on first contact (git/keys.h); empty: not
  /// checked (libgit2 1.5 checks none by itself).
  std::filesystem::path known_hosts;
};

/// What a workspace follows: workspace.json "git": {"url", "branch"}. An empty branch means
/// the remote's default branch (its HEAD) at clone time, then whatever was checked out.
struct Remote {
  std::string url;
  std::string branch;
};

/// The URL without a password or token ("https://tok@host/x" -> "https://host/x"; an ssh URL
/// keeps its user: "ssh://git:pw@host/x" -> "ssh://git@host/x"). Pure.
std::string redact_url(std::string_view url);

/// The URL of `dir`'s remote "origin" as configured ("" when it has none or is no repository;
/// no search upwards); reads the configuration only, never the working tree. Never log it
/// without redact_url().
std::string remote_url(const std::filesystem::path& dir);

/// Refuses a remote URL CloudyKnight must not follow: empty, over 2 KiB, control characters,
/// a scheme other than https, http, ssh, git or file (and scp-like "user@host:path"), or
/// options in disguise ("-..."). `allow_local` admits file:// and absolute paths (the
/// operator's own remotes: push-to-deploy repositories, tests). Pure.
Result<void> check_url(std::string_view url, bool allow_local);

/// Refuses a branch name git would refuse (git check-ref-format's rules) or that is over 200
/// bytes. Pure.
Result<void> check_branch(std::string_view branch);

/// Where a working copy stands.
struct Status {
  std::string url;     // origin, redacted
  std::string branch;  // the checked-out branch ("" when HEAD is detached)
  std::string head;    // HEAD's commit id (40 hex), "" for an empty repository
  int ahead = 0;       // commits on HEAD not on origin/<branch>
  int behind = 0;      // commits on origin/<branch> not on HEAD
  bool dirty = false;  // changes to tracked files, or untracked files not ignored
};

/// What pull() did.
struct PullResult {
  bool cloned = false;    // the folder had no repository: it was initialised and checked out
  bool updated = false;   // HEAD moved (fast-forward)
  std::string old_head;   // "" when cloned
  std::string new_head;
  std::vector<std::string> changed;  // paths the checkout wrote or removed, relative
};

/// Keeps the top-level files or folders `names` of the working copy `dir` out of its commits
/// (.git/info/exclude; a file the repository tracks stays tracked): what CloudyKnight or the
/// folder had before the clone, such as a workspace.json naming the remote.
void keep_out_of_commits(const std::filesystem::path& dir, const std::vector<std::string>& names);

/// True if `dir` holds a repository of its own (a .git folder or file).
bool is_repository(const std::filesystem::path& dir);

/// Brings `dir` to `remote`: when it holds no repository yet, initialises one, fetches and
/// checks the branch out over whatever the folder holds (files the branch also has are
/// refused with their names rather than overwritten: conflict); otherwise fetches and
/// fast-forwards the checked-out branch (local edits that the update does not touch are kept;
/// ones it would overwrite fail with conflict, naming them). A branch that diverged is not
/// merged: conflict, with ahead/behind in the message (push() resolves it for workspaces
/// that commit). Errors: invalid_argument (URL, branch), unauthenticated (the remote refused
/// the credentials), not_found (no such repository or branch), unavailable (network), io.
Result<PullResult> pull(const std::filesystem::path& dir, const Remote& remote,
                        const Credentials& creds);

/// Fetches origin without touching the working tree (for ahead/behind and branch lists).
Result<void> fetch(const std::filesystem::path& dir, const Credentials& creds);

/// The working copy's status; works offline (against the last fetch).
Result<Status> status(const std::filesystem::path& dir);

/// Who made a change.
struct Author {
  std::string name;
  std::string email;
};

/// Stages every change in the working tree (new, modified and deleted files; the repository's
/// .gitignore applies) and commits it on the checked-out branch. nullopt when there was
/// nothing to commit; else the new commit's id.
Result<std::optional<std::string>> commit_all(const std::filesystem::path& dir, const Author& author,
                                              const std::string& message);

/// What push() did.
struct PushResult {
  bool pushed = false;    // the branch is on the remote (now or already was)
  bool rebased = false;   // the remote had moved: the local commits were replayed on it
  std::string conflict_branch;  // "ck/conflict-<time>": the local commits kept there, and
                                // the working copy reset to the remote's branch
  std::string head;       // HEAD after it all
};

/// Pushes the checked-out branch to origin. When the remote moved, fetches and replays the
/// local commits on it (in memory; the working tree is updated only if every commit applies
/// cleanly), then pushes again; when they do not apply, keeps them on a new branch
/// ck/conflict-<UTC time> (pushed too, so both sides are on the remote), resets the branch
/// and the working tree to the remote's, and reports it. Never loses a commit.
Result<PushResult> push(const std::filesystem::path& dir, const Credentials& creds);

/// The branches origin has (after the last fetch), without "origin/".
Result<std::vector<std::string>> remote_branches(const std::filesystem::path& dir);

/// A second working copy of `repo_dir`'s repository at `path` with `branch` checked out
/// (tracking origin/<branch>), sharing its object store (git worktree). Replaces a stale one.
Result<void> add_worktree(const std::filesystem::path& repo_dir, const std::string& id,
                          const std::filesystem::path& path, const std::string& branch);

/// Removes the worktree `id` of `repo_dir`'s repository and its folder.
Result<void> remove_worktree(const std::filesystem::path& repo_dir, const std::string& id);

/// Fast-forwards a worktree made by add_worktree() to origin/<its branch> after a fetch in
/// the main working copy (pull() on it does the same, with a fetch).
Result<PullResult> update_worktree(const std::filesystem::path& path);

}  // namespace ck::git
