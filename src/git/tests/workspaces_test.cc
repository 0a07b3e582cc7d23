// git/workspaces.h: webhook payloads and signatures, URL matching, and GitWorkspaces against a
// real bare repository (the git CLI plays the remote's other developer).

#include "git/workspaces.h"

#include <gtest/gtest.h>

#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "auth/crypto.h"
#include "core/testing/temp_dir.h"
#include "git/tests/git_testing.h"
#include "workspace/workspace.h"

namespace ck {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

using namespace git::testing;

std::string hex(std::string_view raw) {
  std::string out;
  for (unsigned char c : raw) out += fmt::format("{:02x}", c);
  return out;
}

TEST(GitHook, ParsesGithubGiteaAndGitlabPushes) {
  auto gh = parse_git_hook(R"({"ref":"refs/heads/main","after":"abc","repository":{"clone_url":
      "https://github.com/o/r.git","ssh_url":"git@github.com:o/r.git","html_url":"https://github.com/o/r"}})");
  ASSERT_TRUE(gh.has_value());
  EXPECT_EQ(gh.value().ref, "refs/heads/main");
  EXPECT_EQ(gh.value().urls.size(), 3u);
  auto gl = parse_git_hook(R"({"object_kind":"push","ref":"refs/heads/dev","project":{"git_http_url":
      "https://gitlab.test/o/r.git","git_ssh_url":"git@gitlab.test:o/r.git"}})");
  ASSERT_TRUE(gl.has_value());
  EXPECT_EQ(gl.value().urls.size(), 2u);
  auto del = parse_git_hook(R"({"ref":"refs/heads/x","after":"0000000000000000000000000000000000000000",
      "repository":{"clone_url":"https://gitea.test/o/r.git"}})");
  ASSERT_TRUE(del.has_value());
  EXPECT_TRUE(del.value().deleted);
  for (const char* bad : {"", "[]", "{}", R"({"ref":"refs/heads/x"})", R"({"ref":1,"repository":{}})", "{\"ref\":"}) {
    EXPECT_TRUE(parse_git_hook(bad).has_error()) << bad;
  }
  EXPECT_EQ(parse_git_hook(std::string(2 << 20, ' ')).error().code, Errc::too_large);
}

TEST(GitHook, VerifiesEachStyleOfSignatureAndRefusesTheRest) {
  std::string body = R"({"ref":"refs/heads/main"})";
  std::string mac = hex(auth::hmac_sha256("s3cret", body));
  EXPECT_TRUE(verify_git_hook("s3cret", body, "sha256=" + mac, "", "").has_value());
  EXPECT_TRUE(verify_git_hook("s3cret", body, "", mac, "").has_value());
  EXPECT_TRUE(verify_git_hook("s3cret", body, "", "", "s3cret").has_value());
  EXPECT_EQ(verify_git_hook("s3cret", body, "", "", "").error().code, Errc::unauthenticated);
  EXPECT_TRUE(verify_git_hook("s3cret", body, "sha256=" + mac, "", "s3cret").has_value());
  EXPECT_EQ(verify_git_hook("s3cret", body + " ", "sha256=" + mac, "", "").error().code, Errc::unauthenticated);
  EXPECT_EQ(verify_git_hook("s3cret", body, "sha1=" + mac, "", "").error().code, Errc::unauthenticated);
  EXPECT_EQ(verify_git_hook("s3cret", body, "", "", "wrong").error().code, Errc::unauthenticated);
}

TEST(GitHook, NormalizesUrlsSoEveryFormOfOneRepositoryMatches) {
  const std::string want = "github.com/o/r";
  for (const char* u : {"https://github.com/o/r.git", "https://tok@GitHub.com/o/r", "git@github.com:o/r.git",
                        "ssh://git@github.com:22/o/r.git", "https://github.com/o/r/"}) {
    EXPECT_EQ(normalize_git_url(u), want) << u;
  }
  EXPECT_EQ(normalize_git_url("/srv/git/a.git"), "/srv/git/a");
  EXPECT_EQ(normalize_git_url("file:///srv/git/a.git"), "/srv/git/a");
  EXPECT_NE(normalize_git_url("https://github.com/o/r2"), want);
}

class GitWorkspacesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path / "workspaces";
    fs::create_directories(root_);
    remote_ = tmp_.path / "remote.git";
    dev_ = tmp_.path / "dev";
    run(tmp_.path, "git init -q --bare -b main remote.git && git clone -q remote.git dev");
    write(dev_ / "index.html", "v1\n");
    run(dev_, "git add -A && git commit -q -m first && git push -q origin main");
    cfg_.allow_local_remotes = true;
    cfg_.poll = std::chrono::seconds(0);
    cfg_.webhook_secret = "hook-secret";
  }
  test_util::TempDir tmp_{"gitws"};
  fs::path root_, remote_, dev_;
  EventBus events_;
  GitConfig cfg_;
};

TEST_F(GitWorkspacesTest, AWorkspaceJsonBindingIsClonedInPlaceAndPulled) {
  write(root_ / "blog" / "workspace.json", json{{"git", {{"url", remote_.string()}, {"branch", "main"}}}}.dump());
  GitWorkspaces g(root_, nullptr, events_, cfg_);
  ASSERT_TRUE(g.binding("blog").has_value());
  EXPECT_FALSE(g.binding("other").has_value());
  auto r = g.pull_now("blog", "start");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(r.value().cloned);
  EXPECT_EQ(read(root_ / "blog" / "index.html"), "v1\n");
  auto st = g.status("blog");
  EXPECT_EQ(st["branch"], "main");
  EXPECT_EQ(st["sync"], "ok");
  EXPECT_EQ(st["dirty"], false);
  EXPECT_TRUE(st["last_pull"].is_number());
}

TEST_F(GitWorkspacesTest, LocalRemotesNeedTheOperatorsConsent) {
  cfg_.allow_local_remotes = false;
  write(root_ / "blog" / "workspace.json", json{{"git", {{"url", "/etc"}}}}.dump());
  GitWorkspaces g(root_, nullptr, events_, cfg_);
  auto r = g.pull_now("blog", "start");
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code, Errc::forbidden);
  EXPECT_FALSE(fs::exists(root_ / "blog" / ".git"));
  EXPECT_EQ(g.clone_new("x", root_ / "x", {remote_.string(), ""}, "").error().code, Errc::forbidden);
}

TEST_F(GitWorkspacesTest, EditsAreCommittedAsTheirAuthorAndPushed) {
  GitWorkspaces g(root_, nullptr, events_, cfg_);
  auto c = g.clone_new("blog", root_ / "blog", {remote_.string(), ""}, "");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  g.start();
  write(root_ / "blog" / "index.html", "v2 from the API\n");
  g.saved("blog", {"Ann", "ann@test"}, "index.html");
  write(root_ / "blog" / "about.html", "about\n");
  g.saved("blog", {"Ann", "ann@test"}, "about.html");
  std::string log;
  for (int i = 0; i < 100; ++i) {
    log = run(remote_, "git log -1 --format=%an:%s main");
    if (log.rfind("Ann:", 0) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(log, "Ann:Edit index.html and 1 more through CloudyKnight");
  EXPECT_EQ(run(remote_, "git show main:about.html"), "about");
  g.stop();
}

TEST_F(GitWorkspacesTest, IntervalAutocommitGathersEditsUntilTheNextTickAndOffCommitsNothing) {
  cfg_.autocommit = "interval";
  cfg_.autocommit_interval = std::chrono::milliseconds(700);
  {
    GitWorkspaces g(root_, nullptr, events_, cfg_);
    ASSERT_TRUE(g.clone_new("blog", root_ / "blog", {remote_.string(), ""}, "").has_value());
    g.start();
    for (int i = 0; i < 3; ++i) {
      write(root_ / "blog" / ("f" + std::to_string(i) + ".txt"), "x\n");
      g.saved("blog", {"Ann", "ann@test"}, "f" + std::to_string(i) + ".txt");
    }
    std::string log;
    for (int i = 0; i < 100 && log.rfind("Ann:", 0) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      log = run(remote_, "git log -1 --format=%an:%s main");
    }
    EXPECT_EQ(log, "Ann:Edit f0.txt and 2 more through CloudyKnight");
    EXPECT_EQ(run(remote_, "git rev-list --count main"), "2") << "three saves, one commit";
    g.stop();
  }
  cfg_.autocommit = "off";
  GitWorkspaces off(root_, nullptr, events_, cfg_);
  off.start();
  write(root_ / "blog" / "late.txt", "x\n");
  off.saved("blog", {"Ann", "ann@test"}, "late.txt");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(run(remote_, "git rev-list --count main"), "2");
  EXPECT_TRUE(off.status("blog")["dirty"].get<bool>());
  off.stop();
}

TEST_F(GitWorkspacesTest, AWebhookPullsTheWorkspacesThatFollowThatRepository) {
  GitWorkspaces g(root_, nullptr, events_, cfg_);
  ASSERT_TRUE(g.clone_new("blog", root_ / "blog", {remote_.string(), ""}, "").has_value());
  ASSERT_TRUE(g.clone_new("other", root_ / "other", {remote_.string(), ""}, "").has_value());
  run(root_ / "other", "git checkout -q -b side");
  g.start();
  write(dev_ / "index.html", "v2\n");
  run(dev_, "git commit -qam second && git push -q origin main");
  std::string body = json{{"ref", "refs/heads/main"}, {"repository", {{"clone_url", "file://" + remote_.string()}}}}.dump();
  auto bad = g.webhook(body, "sha256=00", "", "");
  EXPECT_EQ(bad.error().code, Errc::unauthenticated);
  auto r = g.webhook(body, "sha256=" + hex(auth::hmac_sha256("hook-secret", body)), "", "");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  // Both follow that repository: blog's branch moved; other's pull fetches for its previews.
  EXPECT_EQ(r.value(), (std::vector<std::string>{"blog", "other"}));
  for (int i = 0; i < 100 && read(root_ / "blog" / "index.html") != "v2\n"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(read(root_ / "blog" / "index.html"), "v2\n");
  g.stop();
}

TEST_F(GitWorkspacesTest, EveryOtherBranchGetsAPreviewBesideItsWorkspace) {
  GitWorkspaces g(root_, nullptr, events_, cfg_);
  ASSERT_TRUE(g.clone_new("blog", root_ / "blog", {remote_.string(), ""}, "").has_value());
  run(dev_, "git checkout -q -b feature/New_UI");
  write(dev_ / "index.html", "new ui\n");
  run(dev_, "git commit -qam ui && git push -q origin feature/New_UI");
  std::vector<std::pair<std::string, bool>> told;
  g.on_preview = [&](const std::string& p, const std::string& w, bool added) {
    EXPECT_EQ(w, "blog");
    told.emplace_back(p, added);
  };
  ASSERT_TRUE(g.pull_now("blog", "test").has_value());
  fs::path preview = root_ / "blog--feature-new-ui";
  ASSERT_TRUE(fs::exists(preview / "index.html"));
  EXPECT_EQ(read(preview / "index.html"), "new ui\n");
  auto p = preview_of(preview);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->workspace, "blog");
  EXPECT_EQ(p->branch, "feature/New_UI");
  EXPECT_FALSE(g.binding("blog--feature-new-ui").has_value());
  EXPECT_FALSE(preview_of(root_ / "blog").has_value());
  run(dev_, "git push -q origin --delete feature/New_UI");
  ASSERT_TRUE(g.pull_now("blog", "test").has_value());
  EXPECT_FALSE(fs::exists(preview));
  EXPECT_EQ(told, (std::vector<std::pair<std::string, bool>>{{"blog--feature-new-ui", true},
                                                             {"blog--feature-new-ui", false}}));
}

}  // namespace
}  // namespace ck
