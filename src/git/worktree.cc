// Worktrees of a working copy, for branch previews: the remote's branches, and a worktree per
// branch made, fast-forwarded and removed.
#include <git2.h>

#include <filesystem>
#include <string>
#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "git/internal.h"
#include "git/pcre2_sweep.h"
#include "git/repo.h"

namespace ck::git {
namespace fs = std::filesystem;

Result<std::vector<std::string>> remote_branches(const fs::path& dir) {
  RegexSweep sweep;  // pcre2_sweep.h
  BOOST_OUTCOME_TRY(repo, open_repo(dir));
  git_branch_iterator* it = nullptr;
  Context ctx{"listing the remote's branches", "", nullptr};
  CK_GIT(git_branch_iterator_new(&it, repo.get(), GIT_BRANCH_REMOTE), ctx);
  std::vector<std::string> out;
  git_reference* ref = nullptr;
  git_branch_t type;
  while (git_branch_next(&ref, &type, it) == 0) {
    std::string name = git_reference_shorthand(ref);
    git_reference_free(ref);
    if (name.rfind("origin/", 0) != 0) continue;
    name = name.substr(7);
    if (name == "HEAD") continue;
    out.push_back(std::move(name));
  }
  git_branch_iterator_free(it);
  std::sort(out.begin(), out.end());
  return out;
}

Result<void> add_worktree(const fs::path& repo_dir, const std::string& id, const fs::path& path,
                          const std::string& branch) {
  RegexSweep sweep;  // pcre2_sweep.h
  BOOST_OUTCOME_TRY(check_branch(branch));
  BOOST_OUTCOME_TRY(repo, open_repo(repo_dir));
  (void)remove_worktree(repo_dir, id);
  std::string doing = "making a working copy of '" + branch + "' at " + path.string();
  Context ctx{doing, "", nullptr};
  // The worktree's own branch, named after the id so it never clashes with the main
  // checkout's: ck/preview/<id>, at origin/<branch>.
  BOOST_OUTCOME_TRY(up, commit_of(repo.get(), tracking_ref(branch), doing + ": the remote has no such branch"));
  std::string local = "ck/preview/" + id;
  git_reference* ref_raw = nullptr;
  CK_GIT(git_reference_create(&ref_raw, repo.get(), branch_ref(local).c_str(), git_commit_id(up.get()), 1,
                              "cloudyknight: preview"),
         ctx);
  RefPtr ref(ref_raw);
  (void)git_branch_set_upstream(ref.get(), ("origin/" + branch).c_str());
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  git_worktree_add_options opts = GIT_WORKTREE_ADD_OPTIONS_INIT;
  opts.ref = ref.get();
  git_worktree* wt = nullptr;
  CK_GIT(git_worktree_add(&wt, repo.get(), id.c_str(), path.c_str(), &opts), ctx);
  git_worktree_free(wt);
  return outcome::success();
}

Result<void> remove_worktree(const fs::path& repo_dir, const std::string& id) {
  RegexSweep sweep;  // pcre2_sweep.h
  BOOST_OUTCOME_TRY(repo, open_repo(repo_dir));
  git_worktree* raw = nullptr;
  if (git_worktree_lookup(&raw, repo.get(), id.c_str()) == 0) {
    WorktreePtr wt(raw);
    std::error_code ec;
    fs::path path = git_worktree_path(wt.get());
    git_worktree_prune_options opts = GIT_WORKTREE_PRUNE_OPTIONS_INIT;
    opts.flags = GIT_WORKTREE_PRUNE_VALID | GIT_WORKTREE_PRUNE_LOCKED | GIT_WORKTREE_PRUNE_WORKING_TREE;
    Context ctx{"removing the working copy '" + id + "'", "", nullptr};
    CK_GIT(git_worktree_prune(wt.get(), &opts), ctx);
    fs::remove_all(path, ec);
  }
  git_reference* ref = nullptr;
  if (git_reference_lookup(&ref, repo.get(), branch_ref("ck/preview/" + id).c_str()) == 0) {
    git_reference_delete(ref);
    git_reference_free(ref);
  }
  return outcome::success();
}

Result<PullResult> update_worktree(const fs::path& path) {
  RegexSweep sweep;  // pcre2_sweep.h
  BOOST_OUTCOME_TRY(repo, open_repo(path));
  std::string local = head_branch(repo.get());
  if (local.empty()) return fail(Errc::conflict, "updating " + path.string() + ": HEAD is detached");
  // The preview branch follows its upstream (origin/<branch>): fast-forward to it.
  git_buf buf = GIT_BUF_INIT;
  std::string upstream;
  if (git_branch_upstream_name(&buf, repo.get(), branch_ref(local).c_str()) == 0) {
    upstream.assign(buf.ptr, buf.size);
  }
  git_buf_dispose(&buf);
  if (upstream.rfind("refs/remotes/origin/", 0) != 0) {
    return fail(Errc::conflict, "updating " + path.string() + ": the branch '" + local + "' follows nothing");
  }
  std::string remote_branch = upstream.substr(20);
  std::string doing = "updating the preview of '" + remote_branch + "'";
  BOOST_OUTCOME_TRY(up, commit_of(repo.get(), upstream, doing + ": the remote has no such branch"));
  BOOST_OUTCOME_TRY(cur, commit_of(repo.get(), branch_ref(local), doing));
  PullResult out;
  out.old_head = oid_hex(*git_commit_id(cur.get()));
  out.new_head = oid_hex(*git_commit_id(up.get()));
  if (out.old_head == out.new_head) return out;
  BOOST_OUTCOME_TRY(checkout_safe(repo.get(), up.get(), doing));
  Context ctx{doing, "", nullptr};
  git_reference* ref_raw = nullptr;
  CK_GIT(git_reference_create(&ref_raw, repo.get(), branch_ref(local).c_str(), git_commit_id(up.get()), 1,
                              "cloudyknight: preview update"),
         ctx);
  git_reference_free(ref_raw);
  BOOST_OUTCOME_TRY(from, tree_of(cur.get()));
  BOOST_OUTCOME_TRY(to, tree_of(up.get()));
  BOOST_OUTCOME_TRY(changed, changed_paths(repo.get(), from.get(), to.get()));
  out.changed = std::move(changed);
  out.updated = true;
  return out;
}

}  // namespace ck::git
