#pragma once
// The repositories behind git push to deploy (issue 16, part 3): one bare repository per
// workspace at DATA/git/repos/<name>.git, made by the daemon on the first push of a valid name,
// its configuration and hooks written by the daemon only (a push cannot change either), and the
// hook program itself (`cloudyknight git-hook post-receive`), which hands the pushed references
// to the daemon over the descriptor the daemon gave `git http-backend` (CK_GIT_HOOK_FD) and
// copies the daemon's deploy report back to git, which shows it as "remote: ..." lines.
// Blocking calls (libgit2, files); any thread.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace ck::git {

/// The descriptor `git http-backend` and the hooks it runs inherit for the deploy channel.
inline constexpr int kHookFd = 3;
/// The environment variable that names it.
inline constexpr std::string_view kHookFdVar = "CK_GIT_HOOK_FD";
/// The most the hook sends (the "old new ref" lines of one push).
inline constexpr std::size_t kMaxHookRefs = 1u << 20;

/// Makes `repo` a bare repository when it is not one yet (HEAD on refs/heads/main), sets the
/// configuration a push repository needs (reflogs kept, so a forced push loses nothing) and
/// writes its post-receive hook (`hook_exe` git-hook post-receive), mode 0755, replacing any
/// other content. Idempotent.
Result<void> ensure_push_repo(const std::filesystem::path& repo, const std::string& hook_exe);

/// The post-receive hook script for `hook_exe`. Pure.
std::string post_receive_script(const std::string& hook_exe);

/// One line a push's hook receives: "<old> <new> <ref>".
struct RefUpdate {
  std::string old_id, new_id, ref;
  bool deleted() const;  // new is all zeros
  bool created() const;  // old is all zeros
  /// "main" for "refs/heads/main"; "" for other references (tags).
  std::string branch() const;
};

/// Parses the hook's stdin. Malformed lines are skipped. Pure.
std::vector<RefUpdate> parse_ref_updates(std::string_view text);

/// The branch HEAD names ("main" for refs/heads/main), whether or not it exists yet.
Result<std::string> head_branch(const std::filesystem::path& repo);


/// True if the repository has any reference (a branch or a tag) besides HEAD.
bool has_refs(const std::filesystem::path& repo);

/// True if commit `descendant` is `ancestor` or has it in its history (both 40/64 hex ids, in
/// `repo`); false when either is unknown there.
bool fast_forwards(const std::filesystem::path& repo, const std::string& ancestor,
                   const std::string& descendant);

/// True if refs/heads/<branch> exists.
bool has_branch(const std::filesystem::path& repo, const std::string& branch);

/// Points HEAD at refs/heads/<branch>.
Result<void> set_head_branch(const std::filesystem::path& repo, const std::string& branch);

/// `cloudyknight git-hook post-receive`: see the top of this file. Exit code 0 (git ignores a
/// post-receive hook's status, but the push must not look broken); prints why nothing was
/// deployed when the push did not come through the daemon's gateway.
int run_git_hook(int argc, char** argv);

}  // namespace ck::git
