#pragma once
// Shared by the module's files, not part of its interface.

#include <git2.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "git/repo.h"

namespace ck::git {

/// Initialises libgit2 once per process with the module's settings (repo.cc): no owner
/// validation (the daemon runs nothing from a repository), no re-hashing of objects read.
void init_library();

/// A libgit2 object that frees itself.
template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const {
    if (p) Free(p);
  }
};
template <class T, void (*Free)(T*)>
using Ptr = std::unique_ptr<T, Deleter<T, Free>>;

using RepoPtr = Ptr<git_repository, git_repository_free>;
using ConfigPtr = Ptr<git_config, git_config_free>;
using RefPtr = Ptr<git_reference, git_reference_free>;
using RemotePtr = Ptr<git_remote, git_remote_free>;
using CommitPtr = Ptr<git_commit, git_commit_free>;
using TreePtr = Ptr<git_tree, git_tree_free>;
using IndexPtr = Ptr<git_index, git_index_free>;
using SigPtr = Ptr<git_signature, git_signature_free>;
using StatusPtr = Ptr<git_status_list, git_status_list_free>;
using DiffPtr = Ptr<git_diff, git_diff_free>;
using RebasePtr = Ptr<git_rebase, git_rebase_free>;
using AnnotatedPtr = Ptr<git_annotated_commit, git_annotated_commit_free>;
using WorktreePtr = Ptr<git_worktree, git_worktree_free>;

// What the caller is doing, so a libgit2 error becomes one sentence that says what failed,
// with the URL redacted and no secret in it.
struct Context {
  Context(std::string d, std::string u, const Credentials* c) : doing(std::move(d)), url(std::move(u)), creds(c) {}
  std::string doing;  // "fetching from https://host/x"
  std::string url;    // the raw URL (scrubbed from messages)
  const Credentials* creds = nullptr;
  bool auth_refused = false;
  std::string rejected;  // a push: the remote's reason for refusing the reference
  std::string host_key_error;  // ssh: the host key is not the pinned one
};

/// The error for a failed libgit2 call (`rc`) during `ctx`: one sentence, URL redacted, no
/// secret in it, with the code callers branch on.
Error git_failure(int rc, const Context& ctx);

#define CK_GIT(expr, ctx)                             \
  do {                                                \
    int ck_git_rc_ = (expr);                          \
    if (ck_git_rc_ < 0) return outcome::failure(git_failure(ck_git_rc_, (ctx))); \
  } while (0)

/// The remote callbacks every network call uses: credentials from ctx.creds (one try each),
/// ssh host keys checked against ctx.creds->known_hosts.
git_remote_callbacks callbacks_for(Context& ctx);

std::string oid_hex(const git_oid& id);
std::string branch_ref(const std::string& b);    // refs/heads/<b>
std::string tracking_ref(const std::string& b);  // refs/remotes/origin/<b>

Result<RepoPtr> open_repo(const std::filesystem::path& dir);
/// origin as an anonymous remote of remote.origin.url (`url` gets it).
Result<RemotePtr> origin(git_repository* repo, std::string* url = nullptr);
/// Fetches every branch of origin into refs/remotes/origin/*, pruning gone ones.
Result<void> fetch_origin(git_repository* repo, const Credentials& creds, std::string* default_branch);
Result<CommitPtr> commit_of(git_repository* repo, const std::string& refname, const std::string& doing);
Result<TreePtr> tree_of(git_commit* c);
Result<std::vector<std::string>> changed_paths(git_repository* repo, git_tree* from, git_tree* to);
/// A SAFE checkout of `target` from HEAD's tree (`fresh`: into a repository just initialised).
Result<void> checkout_safe(git_repository* repo, git_commit* target, const std::string& doing,
                           bool fresh = false);
/// The checked-out branch's short name ("" when detached).
std::string head_branch(git_repository* repo);
/// refs/heads/<branch> at `id`, tracking origin/<branch>, checked out as HEAD.
Result<void> set_branch(git_repository* repo, const std::string& branch, const git_oid& id,
                        const std::string& doing);

/// first_clone.cc: whether a first checkout may skip filter lookups, and a local remote's
/// object files shared into a new repository's `objects` before its first fetch.
bool filters_are_inert(git_repository* repo, git_tree* tree);
void seed_objects_from_local(const std::string& url, const std::filesystem::path& objects);

}  // namespace ck::git
