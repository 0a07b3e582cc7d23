// The API's git services for folder storage (issue 16): a workspace's git status, clones for
// POST /workspaces {"git"}, push webhooks, autocommits of the files API's edits, and git push to
// deploy, all through the daemon's GitWorkspaces.
#include <unistd.h>

#include "api/api.h"
#include "core/log.h"
#include "daemon/daemon.h"
#include "git/workspaces.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

// `done` told only whether a pull (or clone) worked.
std::function<void(Result<git::PullResult>)> as_void(std::function<void(Result<void>)> done) {
  return [done = std::move(done)](Result<git::PullResult> r) {
    if (r.has_error()) return done(r.error());
    done(outcome::success());
  };
}

}  // namespace

void add_git_services(ApiServices& services, GitWorkspaces& git, const fs::path& data, const std::string& self_exe) {
  GitWorkspaces* g = &git;
  services.git_status = [g](const std::string& name) { return g->status(name); };
  services.git_clone = [g](const std::string& name, fs::path dir, std::string url, std::string branch,
                           std::string token, std::string owner, std::function<void(Result<void>)> done) {
    g->clone(name, std::move(dir), git::Remote{std::move(url), std::move(branch)}, std::move(token),
             std::move(owner), as_void(std::move(done)));
  };
  services.git_hook = [g](std::string_view body, std::string_view hub, std::string_view gitea,
                          std::string_view gitlab) { return g->webhook(body, hub, gitea, gitlab); };
  services.file_changed = [g](const std::string& name, const std::string& path, const std::string& verb,
                              const std::string& author) {
    g->saved(name, git::Author{author, author + "@cloudyknight"}, (verb == "delete" ? "delete " : "") + path);
  };
  // git push to deploy: /monitor/git/<name>.git through git http-backend. Bare repositories in
  // DATA/git/repos; their hook runs this binary. A workspace that already follows its push
  // repository is pulled on the GitWorkspaces worker, which owns its working copy (and
  // updates its branch previews).
  if (::access(services.git_push.git.c_str(), X_OK) == 0) {
    std::error_code ec;
    services.git_push.repos = data / "git" / "repos";
    services.git_push.home = data / "git" / "home";
    services.git_push.hook_exe = self_exe;
    fs::create_directories(services.git_push.repos, ec);
    fs::create_directories(services.git_push.home, ec);
  } else {
    log::get("daemon")->info("git push to deploy is off: {} is not installed (apt-get install git)",
                             services.git_push.git);
  }
  services.git_push.pull = [g](const std::string& name, std::function<void(Result<void>)> done) {
    g->pull(name, "push", as_void(std::move(done)));
  };
}

}  // namespace ck
