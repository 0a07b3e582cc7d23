// git/repo.h against real repositories: a bare "remote" on disk and a second clone made with the
// git CLI (the CLI plays the other developer; everything CloudyKnight does goes through
// libgit2).

#include "git/repo.h"

#include "git/pcre2_sweep.h"

#include <gtest/gtest.h>

#include <malloc.h>

#include <cstdlib>

#include "core/testing/temp_dir.h"
#include "git/tests/git_testing.h"

namespace ck::git {
namespace {
namespace fs = std::filesystem;

using namespace git::testing;

class GitRepoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    remote_ = tmp_.path / "remote.git";
    dev_ = tmp_.path / "dev";
    ws_ = tmp_.path / "ws";
    run(tmp_.path, "git init -q --bare -b main remote.git");
    run(tmp_.path, "git clone -q remote.git dev");
    write(dev_ / "index.js", "console.log(1)\n");
    write(dev_ / "lib/a.txt", "a\n");
    run(dev_, "git add -A && git commit -q -m first && git push -q origin main");
  }
  void dev_commit(const std::string& file, const std::string& text, const std::string& msg = "change") {
    write(dev_ / file, text);
    run(dev_, "git add -A && git commit -q -m " + shell_quote(msg) + " && git push -q origin HEAD");
  }
  Remote remote(const std::string& branch = "") { return Remote{remote_.string(), branch}; }

  test_util::TempDir tmp_{"git"};
  fs::path remote_, dev_, ws_;
  Credentials none_;
};

TEST_F(GitRepoTest, ClonesIntoAFolderAndFollowsTheDefaultBranch) {
  auto r = pull(ws_, remote(), none_);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(r.value().cloned);
  EXPECT_EQ(read(ws_ / "index.js"), "console.log(1)\n");
  EXPECT_EQ(read(ws_ / "lib/a.txt"), "a\n");
  auto st = git::status(ws_);
  ASSERT_TRUE(st.has_value()) << st.error().message;
  EXPECT_EQ(st.value().branch, "main");
  EXPECT_EQ(st.value().head, run(dev_, "git rev-parse HEAD"));
  EXPECT_EQ(st.value().ahead, 0);
  EXPECT_EQ(st.value().behind, 0);
  EXPECT_FALSE(st.value().dirty);
}

// A first clone from a local remote shares the remote's object files (packs and loose
// objects, hard-linked on the same filesystem) instead of having libgit2 repack them, and
// is a complete repository: fsck finds nothing missing, and later pulls fetch normally.
TEST_F(GitRepoTest, AFirstCloneFromALocalRemoteSharesItsObjectFiles) {
  run(remote_, "git repack -q -a -d");
  dev_commit("index.js", "console.log(2)\n");  // a loose object or three beside the pack
  auto r = pull(ws_, Remote{"file://" + remote_.string(), "main"}, none_);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(read(ws_ / "index.js"), "console.log(2)\n");
  int packs = 0;
  for (const auto& e : fs::directory_iterator(ws_ / ".git" / "objects" / "pack")) {
    if (e.path().extension() != ".pack") continue;
    ++packs;
    EXPECT_TRUE(fs::equivalent(e.path(), remote_ / "objects" / "pack" / e.path().filename()))
        << e.path() << " is the remote's pack file, linked";
  }
  EXPECT_EQ(packs, 1);
  std::string head = run(dev_, "git rev-parse HEAD");
  std::string loose = head.substr(0, 2) + "/" + head.substr(2);
  EXPECT_TRUE(fs::equivalent(ws_ / ".git" / "objects" / loose, remote_ / "objects" / loose));
  run(ws_, "git fsck --strict --no-dangling --no-progress");
  dev_commit("lib/a.txt", "a2\n");
  auto again = pull(ws_, Remote{"file://" + remote_.string(), "main"}, none_);
  ASSERT_TRUE(again.has_value()) << again.error().message;
  EXPECT_EQ(again.value().changed, std::vector<std::string>{"lib/a.txt"});
  EXPECT_EQ(read(ws_ / "lib/a.txt"), "a2\n");
}

// A first clone skips the checkout's filter lookups only when no attribute or setting could
// make a filter act: line endings a .gitattributes asks for are still applied, whether it is
// in the branch or already in the folder.
TEST_F(GitRepoTest, AFirstCloneStillAppliesTheLineEndingsAttributesAskFor) {
  dev_commit(".gitattributes", "*.txt text eol=crlf\n");
  auto r = pull(ws_, remote(), none_);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(read(ws_ / "lib/a.txt"), "a\r\n");
  EXPECT_EQ(read(ws_ / "index.js"), "console.log(1)\n");

  fs::path other = tmp_.path / "other";
  run(dev_, "git rm -q .gitattributes && git commit -q -m plain && git push -q origin HEAD");
  write(other / "lib" / ".gitattributes", "*.txt text eol=crlf\n");
  auto r2 = pull(other, remote(), none_);
  ASSERT_TRUE(r2.has_value()) << r2.error().message;
  EXPECT_EQ(read(other / "lib/a.txt"), "a\r\n");

  fs::path plain = tmp_.path / "plain";
  auto r3 = pull(plain, remote(), none_);
  ASSERT_TRUE(r3.has_value()) << r3.error().message;
  EXPECT_EQ(read(plain / "lib/a.txt"), "a\n");
}

TEST_F(GitRepoTest, KeepsFilesTheFolderHeldAndLeavesThemOutOfCommits) {
  write(ws_ / "workspace.json", R"({"git": {"url": "x"}})");
  auto r = pull(ws_, remote("main"), none_);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(fs::exists(ws_ / "workspace.json"));
  auto st = git::status(ws_);
  ASSERT_TRUE(st.has_value());
  EXPECT_FALSE(st.value().dirty) << "workspace.json is excluded, not an untracked change";
  auto c = commit_all(ws_, {"ann", "ann@test"}, "nothing");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_FALSE(c.value().has_value());
}

TEST_F(GitRepoTest, RefusesToOverwriteAFileTheFolderAlreadyHas) {
  write(ws_ / "index.js", "mine\n");
  auto r = pull(ws_, remote(), none_);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code, Errc::conflict);
  EXPECT_NE(r.error().message.find("index.js"), std::string::npos) << r.error().message;
  EXPECT_EQ(read(ws_ / "index.js"), "mine\n");
  EXPECT_FALSE(is_repository(ws_)) << "a failed first pull leaves no half-made repository";
}

TEST_F(GitRepoTest, FastForwardsAndReportsTheChangedPaths) {
  ASSERT_TRUE(pull(ws_, remote(), none_).has_value());
  dev_commit("index.js", "console.log(2)\n");
  dev_commit("new/b.txt", "b\n");
  auto r = pull(ws_, remote(), none_);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(r.value().updated);
  EXPECT_NE(r.value().old_head, r.value().new_head);
  EXPECT_EQ(read(ws_ / "index.js"), "console.log(2)\n");
  std::vector<std::string> expect{"index.js", "new/b.txt"};
  EXPECT_EQ(r.value().changed, expect);
  auto again = pull(ws_, remote(), none_);
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again.value().updated);
}

TEST_F(GitRepoTest, KeepsALocalEditThePullDoesNotTouchAndRefusesOneItWouldOverwrite) {
  ASSERT_TRUE(pull(ws_, remote(), none_).has_value());
  write(ws_ / "lib/a.txt", "local edit\n");
  dev_commit("index.js", "console.log(3)\n");
  auto r = pull(ws_, remote(), none_);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(read(ws_ / "lib/a.txt"), "local edit\n");
  EXPECT_EQ(read(ws_ / "index.js"), "console.log(3)\n");
  dev_commit("lib/a.txt", "remote edit\n");
  auto clash = pull(ws_, remote(), none_);
  ASSERT_TRUE(clash.has_error());
  EXPECT_EQ(clash.error().code, Errc::conflict);
  EXPECT_NE(clash.error().message.find("lib/a.txt"), std::string::npos) << clash.error().message;
  EXPECT_EQ(read(ws_ / "lib/a.txt"), "local edit\n");
}

TEST_F(GitRepoTest, CommitsAsTheAuthorAndPushes) {
  ASSERT_TRUE(pull(ws_, remote(), none_).has_value());
  write(ws_ / "index.js", "console.log('edited')\n");
  fs::remove(ws_ / "lib/a.txt");
  write(ws_ / "added.txt", "new\n");
  auto c = commit_all(ws_, {"Ann Example", "ann@example.test"}, "edit through the API");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  ASSERT_TRUE(c.value().has_value());
  auto st = git::status(ws_);
  EXPECT_EQ(st.value().ahead, 1);
  EXPECT_FALSE(st.value().dirty);
  auto p = push(ws_, none_);
  ASSERT_TRUE(p.has_value()) << p.error().message;
  EXPECT_TRUE(p.value().pushed);
  EXPECT_FALSE(p.value().rebased);
  EXPECT_TRUE(p.value().conflict_branch.empty());
  run(dev_, "git pull -q");
  EXPECT_EQ(read(dev_ / "index.js"), "console.log('edited')\n");
  EXPECT_FALSE(fs::exists(dev_ / "lib/a.txt"));
  EXPECT_EQ(run(dev_, "git log -1 --format=%an/%ae/%s"), "Ann Example/ann@example.test/edit through the API");
  EXPECT_EQ(git::status(ws_).value().ahead, 0);
}

TEST_F(GitRepoTest, APushTheRemoteRefusesIsRebasedWhenItApplies) {
  ASSERT_TRUE(pull(ws_, remote(), none_).has_value());
  dev_commit("lib/a.txt", "remote\n");
  write(ws_ / "index.js", "local\n");
  ASSERT_TRUE(commit_all(ws_, {"ann", "ann@test"}, "local").has_value());
  auto p = push(ws_, none_);
  ASSERT_TRUE(p.has_value()) << p.error().message;
  EXPECT_TRUE(p.value().pushed);
  EXPECT_TRUE(p.value().rebased);
  EXPECT_EQ(read(ws_ / "lib/a.txt"), "remote\n");
  EXPECT_EQ(read(ws_ / "index.js"), "local\n");
  run(dev_, "git pull -q");
  EXPECT_EQ(read(dev_ / "index.js"), "local\n");
  EXPECT_EQ(run(dev_, "git rev-list --count HEAD"), "3");
}

TEST_F(GitRepoTest, APushThatConflictsKeepsBothSides) {
  ASSERT_TRUE(pull(ws_, remote(), none_).has_value());
  dev_commit("index.js", "theirs\n");
  std::string theirs = run(dev_, "git rev-parse HEAD");
  write(ws_ / "index.js", "ours\n");
  auto ours = commit_all(ws_, {"ann", "ann@test"}, "ours");
  ASSERT_TRUE(ours.has_value() && ours.value().has_value());
  auto p = push(ws_, none_);
  ASSERT_TRUE(p.has_value()) << p.error().message;
  EXPECT_FALSE(p.value().pushed);
  ASSERT_EQ(p.value().conflict_branch.rfind("ck/conflict-", 0), 0u) << p.value().conflict_branch;
  // The working copy follows the remote again...
  EXPECT_EQ(read(ws_ / "index.js"), "theirs\n");
  EXPECT_EQ(p.value().head, theirs);
  // ...and our commit is on the conflict branch, there and on the remote.
  EXPECT_EQ(run(remote_, "git rev-parse " + p.value().conflict_branch), *ours.value());
  EXPECT_EQ(run(remote_, "git show " + p.value().conflict_branch + ":index.js"), "ours");
  EXPECT_EQ(run(remote_, "git rev-parse main"), theirs);
}

TEST_F(GitRepoTest, DivergedBranchIsNotMergedByPull) {
  ASSERT_TRUE(pull(ws_, remote(), none_).has_value());
  dev_commit("index.js", "theirs\n");
  write(ws_ / "lib/a.txt", "ours\n");
  ASSERT_TRUE(commit_all(ws_, {"ann", "ann@test"}, "ours").has_value());
  auto r = pull(ws_, remote(), none_);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code, Errc::conflict);
  EXPECT_NE(r.error().message.find("1 local commit"), std::string::npos) << r.error().message;
}

TEST_F(GitRepoTest, SwitchesToTheBranchTheBindingNames) {
  run(dev_, "git checkout -q -b redesign");
  dev_commit("index.js", "redesign\n");
  ASSERT_TRUE(pull(ws_, remote(), none_).has_value());
  EXPECT_EQ(read(ws_ / "index.js"), "console.log(1)\n");
  auto r = pull(ws_, remote("redesign"), none_);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(read(ws_ / "index.js"), "redesign\n");
  EXPECT_EQ(git::status(ws_).value().branch, "redesign");
  auto missing = pull(ws_, remote("nope"), none_);
  ASSERT_TRUE(missing.has_error());
  EXPECT_EQ(missing.error().code, Errc::not_found) << missing.error().message;
}

TEST_F(GitRepoTest, WorktreesShareTheObjectStoreAndFollowTheirBranch) {
  run(dev_, "git checkout -q -b feature/x");
  dev_commit("index.js", "feature\n");
  ASSERT_TRUE(pull(ws_, remote("main"), none_).has_value());
  auto branches = remote_branches(ws_);
  ASSERT_TRUE(branches.has_value());
  std::vector<std::string> expect{"feature/x", "main"};
  EXPECT_EQ(branches.value(), expect);
  fs::path wt = tmp_.path / "previews" / "ws--feature-x";
  auto added = add_worktree(ws_, "ws--feature-x", wt, "feature/x");
  ASSERT_TRUE(added.has_value()) << added.error().message;
  EXPECT_EQ(read(wt / "index.js"), "feature\n");
  EXPECT_TRUE(fs::is_regular_file(wt / ".git")) << "a worktree, not a second clone";
  dev_commit("index.js", "feature 2\n");
  ASSERT_TRUE(fetch(ws_, none_).has_value());
  auto up = update_worktree(wt);
  ASSERT_TRUE(up.has_value()) << up.error().message;
  EXPECT_TRUE(up.value().updated);
  EXPECT_EQ(read(wt / "index.js"), "feature 2\n");
  EXPECT_EQ(read(ws_ / "index.js"), "console.log(1)\n");
  ASSERT_TRUE(remove_worktree(ws_, "ws--feature-x").has_value());
  EXPECT_FALSE(fs::exists(wt));
  run(dev_, "git push -q origin --delete feature/x");
  ASSERT_TRUE(fetch(ws_, none_).has_value());
  EXPECT_EQ(remote_branches(ws_).value(), std::vector<std::string>{"main"});
}

TEST_F(GitRepoTest, AMissingRemoteIsNotFoundAndLeavesNothingBehind) {
  auto r = pull(ws_, Remote{(tmp_.path / "nope.git").string(), ""}, none_);
  ASSERT_TRUE(r.has_error());
  EXPECT_FALSE(is_repository(ws_));
}

// Debian's libgit2 1.5 leaks a PCRE2 match block per configuration entry a glob iterates
// (pcre2_sweep.cc); none may outlive the call (the sanitizer build's leak check is the proof).
TEST_F(GitRepoTest, NoRegexMatchBlockOutlivesACall) {
  ASSERT_TRUE(pull(ws_, remote(), none_).has_value());
  ASSERT_TRUE(fetch(ws_, none_).has_value());
  // The heap in use after 200 fetches and status reads: without the sweep it grew by about
  // 200 KiB a fetch (40 MB here). (mallinfo2 says nothing under the sanitizers' allocator.)
  const auto before = mallinfo2().uordblks;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(git::status(ws_).has_value());
    ASSERT_TRUE(fetch(ws_, none_).has_value());
  }
  const auto after = mallinfo2().uordblks;
  EXPECT_LT(after, before + (2u << 20)) << "the heap grew by " << (after - before) << " bytes";
  EXPECT_EQ(sweep_regex_leaks(), 0u) << "every call swept what it leaked";
}

TEST(GitUrl, RedactsCredentials) {
  EXPECT_EQ(redact_url("https://tok:secret@host.test/a/b.git"), "https://host.test/a/b.git");
  EXPECT_EQ(redact_url("https://host.test/a@b.git"), "https://host.test/a@b.git");
  EXPECT_EQ(redact_url("git@host.test:a/b.git"), "git@host.test:a/b.git");
  EXPECT_EQ(redact_url("ssh://git:pw@host.test:22/a.git"), "ssh://git@host.test:22/a.git");
  EXPECT_EQ(redact_url("ssh://git@host.test/a.git"), "ssh://git@host.test/a.git");
  EXPECT_EQ(redact_url("http://user:tok@host.test/a.git"), "http://host.test/a.git");
}

TEST(GitUrl, ChecksSchemesAndRefusesOptionsInDisguise) {
  EXPECT_TRUE(check_url("https://host.test/a.git", false).has_value());
  EXPECT_TRUE(check_url("ssh://git@host.test/a.git", false).has_value());
  EXPECT_TRUE(check_url("git@host.test:a/b.git", false).has_value());
  EXPECT_TRUE(check_url("/srv/git/a.git", true).has_value());
  EXPECT_EQ(check_url("/srv/git/a.git", false).error().code, Errc::forbidden);
  EXPECT_EQ(check_url("file:///etc", false).error().code, Errc::forbidden);
  EXPECT_EQ(check_url("-uhack", true).error().code, Errc::invalid_argument);
  EXPECT_EQ(check_url("ext::sh -c id", true).error().code, Errc::invalid_argument);
  EXPECT_EQ(check_url("https://host.test/a\n.git", false).error().code, Errc::invalid_argument);
  EXPECT_EQ(check_url("", false).error().code, Errc::invalid_argument);
  EXPECT_EQ(check_url("https:///a.git", false).error().code, Errc::invalid_argument);
  EXPECT_EQ(check_url("just-a-word", false).error().code, Errc::invalid_argument);
}

TEST(GitBranch, FollowsGitsRules) {
  for (const char* ok : {"main", "feature/x", "release-1.2", "ck/conflict-1"}) {
    EXPECT_TRUE(check_branch(ok).has_value()) << ok;
  }
  for (const char* bad : {"", "-x", "a..b", "a b", "a~1", "a:b", "HEAD", "x.lock", "/a", "a//b"}) {
    EXPECT_TRUE(check_branch(bad).has_error()) << bad;
  }
}

}  // namespace
}  // namespace ck::git
