// push(): the branch to origin; when the remote moved, a rebase in memory or a conflict branch.
#include <git2.h>

#include <filesystem>
#include <string>
#include <ctime>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "git/internal.h"
#include "git/pcre2_sweep.h"
#include "git/repo.h"

namespace ck::git {
namespace fs = std::filesystem;

namespace {

int push_update_cb(const char* /*refname*/, const char* status, void* data) {
  auto* ctx = static_cast<Context*>(data);
  if (status) ctx->rejected = status;
  return 0;
}

bool looks_rejected(const git_error* e) {
  if (!e || !e->message) return false;
  std::string_view m = e->message;
  return m.find("fast-forward") != m.npos || m.find("rejected") != m.npos || m.find("fetch first") != m.npos;
}

// Pushes refs/heads/<branch> to the same name on origin. Rejected because the remote moved:
// false; other failures: an error.
Result<bool> push_branch(git_repository* repo, const std::string& branch, const Credentials& creds) {
  std::string url;
  BOOST_OUTCOME_TRY(remote, origin(repo, &url));
  Context ctx{"pushing '" + branch + "' to " + redact_url(url), url, &creds};
  git_push_options opts = GIT_PUSH_OPTIONS_INIT;
  opts.callbacks = callbacks_for(ctx);
  opts.callbacks.push_update_reference = push_update_cb;
  std::string spec = branch_ref(branch) + ":" + branch_ref(branch);
  char* specs[] = {spec.data()};
  git_strarray refspecs{specs, 1};
  int rc = git_remote_push(remote.get(), &refspecs, &opts);
  if (rc == GIT_ENONFASTFORWARD || (rc < 0 && looks_rejected(git_error_last()))) return false;
  CK_GIT(rc, ctx);
  if (!ctx.rejected.empty()) {
    if (ctx.rejected.find("fast-forward") != std::string::npos || ctx.rejected.find("fetch first") != std::string::npos ||
        ctx.rejected.find("rejected") != std::string::npos) {
      return false;
    }
    return fail(Errc::conflict, ctx.doing + ": the remote refused it: " + ctx.rejected);
  }
  return true;
}

// Replays the commits of `branch` not on origin/<branch> onto it, in memory. The new head, or
// nullopt when a commit does not apply cleanly.
Result<std::optional<git_oid>> rebase_in_memory(git_repository* repo, const std::string& branch) {
  Context ctx{"replaying the local commits of '" + branch + "' on the remote's", "", nullptr};
  git_annotated_commit *local_raw = nullptr, *up_raw = nullptr;
  git_reference* ref_raw = nullptr;
  CK_GIT(git_reference_lookup(&ref_raw, repo, branch_ref(branch).c_str()), ctx);
  RefPtr local_ref(ref_raw);
  CK_GIT(git_annotated_commit_from_ref(&local_raw, repo, local_ref.get()), ctx);
  AnnotatedPtr local(local_raw);
  CK_GIT(git_reference_lookup(&ref_raw, repo, tracking_ref(branch).c_str()), ctx);
  RefPtr up_ref(ref_raw);
  CK_GIT(git_annotated_commit_from_ref(&up_raw, repo, up_ref.get()), ctx);
  AnnotatedPtr up(up_raw);
  git_rebase_options opts = GIT_REBASE_OPTIONS_INIT;
  opts.inmemory = 1;
  git_rebase* rebase_raw = nullptr;
  CK_GIT(git_rebase_init(&rebase_raw, repo, local.get(), up.get(), nullptr, &opts), ctx);
  RebasePtr rebase(rebase_raw);
  git_oid last = *git_annotated_commit_id(up.get());
  git_rebase_operation* op = nullptr;
  int rc = 0;
  while ((rc = git_rebase_next(&op, rebase.get())) == 0) {
    git_index* idx_raw = nullptr;
    CK_GIT(git_rebase_inmemory_index(&idx_raw, rebase.get()), ctx);
    IndexPtr idx(idx_raw);
    if (git_index_has_conflicts(idx.get())) {
      git_rebase_abort(rebase.get());
      return std::optional<git_oid>{};
    }
    git_commit* orig_raw = nullptr;
    CK_GIT(git_commit_lookup(&orig_raw, repo, &op->id), ctx);
    CommitPtr orig(orig_raw);
    git_oid id;
    rc = git_rebase_commit(&id, rebase.get(), nullptr, git_commit_committer(orig.get()), nullptr, nullptr);
    if (rc == GIT_EAPPLIED) continue;  // already on the remote: nothing to replay
    CK_GIT(rc, ctx);
    last = id;
  }
  if (rc != GIT_ITEROVER) CK_GIT(rc, ctx);
  CK_GIT(git_rebase_finish(rebase.get(), nullptr), ctx);
  return std::optional<git_oid>(last);
}

std::string utc_stamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

}  // namespace

Result<PushResult> push(const fs::path& dir, const Credentials& creds) {
  RegexSweep sweep;  // pcre2_sweep.h
  BOOST_OUTCOME_TRY(repo, open_repo(dir));
  std::string branch = head_branch(repo.get());
  if (branch.empty()) return fail(Errc::conflict, "pushing from " + dir.string() + ": HEAD is detached");
  PushResult out;
  for (int attempt = 0; attempt < 3; ++attempt) {
    BOOST_OUTCOME_TRY(pushed, push_branch(repo.get(), branch, creds));
    if (pushed) {
      out.pushed = true;
      git_oid head;
      if (git_reference_name_to_id(&head, repo.get(), "HEAD") == 0) out.head = oid_hex(head);
      // Record that origin/<branch> is now where we pushed (the push updated it already on
      // most transports; the fetch keeps ahead/behind right on all of them).
      (void)fetch_origin(repo.get(), creds, nullptr);
      return out;
    }
    BOOST_OUTCOME_TRY(fetch_origin(repo.get(), creds, nullptr));
    BOOST_OUTCOME_TRY(rebased, rebase_in_memory(repo.get(), branch));
    std::string doing = "updating " + dir.string() + " after the remote moved";
    if (rebased) {
      git_commit* raw = nullptr;
      Context ctx{doing, "", nullptr};
      CK_GIT(git_commit_lookup(&raw, repo.get(), &*rebased), ctx);
      CommitPtr target(raw);
      BOOST_OUTCOME_TRY(checkout_safe(repo.get(), target.get(), doing));
      BOOST_OUTCOME_TRY(set_branch(repo.get(), branch, *rebased, doing));
      out.rebased = true;
      continue;
    }
    // The local commits do not apply on the remote's: keep them on a branch of their own,
    // there and on the remote, and follow the remote's branch again.
    Context ctx{doing, "", nullptr};
    git_oid local;
    CK_GIT(git_reference_name_to_id(&local, repo.get(), branch_ref(branch).c_str()), ctx);
    std::string keep = "ck/conflict-" + utc_stamp();
    git_reference* ref_raw = nullptr;
    CK_GIT(git_reference_create(&ref_raw, repo.get(), branch_ref(keep).c_str(), &local, 0,
                                "cloudyknight: local commits the remote did not take"),
           ctx);
    git_reference_free(ref_raw);
    out.conflict_branch = keep;
    (void)push_branch(repo.get(), keep, creds);  // best effort: the local branch already keeps them
    BOOST_OUTCOME_TRY(up, commit_of(repo.get(), tracking_ref(branch), doing));
    git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
    co.checkout_strategy = GIT_CHECKOUT_FORCE;
    CK_GIT(git_reset(repo.get(), reinterpret_cast<git_object*>(up.get()), GIT_RESET_HARD, &co), ctx);
    out.head = oid_hex(*git_commit_id(up.get()));
    return out;
  }
  return fail(Errc::conflict, "pushing from " + dir.string() + ": the remote kept moving; try again");
}

}  // namespace ck::git
