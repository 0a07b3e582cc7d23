// git push to deploy (issue 16, part 3): git's smart HTTP protocol at /monitor/git/<name>.git,
// served by Debian's `git http-backend`, and the deploy that follows a push.
//
//   GET  /monitor/git/<name>.git/info/refs?service=git-upload-pack|git-receive-pack
//   POST /monitor/git/<name>.git/git-upload-pack|git-receive-pack
//
// Credentials: an API token as the HTTP Basic password (any user name), or a Bearer token.
// upload-pack (clone, fetch) needs the read scope and may see the workspace; receive-pack (push)
// needs the deploy scope and may act on it, or the name is new and the pusher's user will own
// the workspace it makes. Refusals are text/plain, which git prints as "remote: ..." lines.
//
// A request runs on a thread of its own (GitPushes), never on the gateway's: it starts
// `git http-backend` with an environment built from nothing (http_backend.h), feeds it the
// request body and streams its answer into an http::ResponseStream. For a push, the child also
// inherits one end of a socket pair as descriptor 3 (CK_GIT_HOOK_FD): the repository's
// post-receive hook (`cloudyknight git-hook post-receive`, written by the daemon) sends the
// pushed "old new ref" lines through it and copies back what the deploy thread writes, so git
// shows the deploy as it happens. Only the processes of this one push hold that socket, so it
// needs no token and no network path, and it works the same behind TLS.
//
// The deploy that follows a push is git_deploy.cc's.

#include <fmt/format.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "api/api.h"
#include "api/git_deploy.h"
#include "auth/auth.h"
#include "auth/authorize.h"
#include "core/log.h"
#include "core/names.h"
#include "git/http_backend.h"
#include "git/push_repos.h"
#include "http/stream.h"

namespace ck {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace api {

std::shared_ptr<GitPushes> make_git_pushes() { return std::make_shared<GitPushes>(); }

}  // namespace api

namespace {

auto logger() {
  static auto l = log::get("api");
  return l;
}

constexpr std::string_view kGitPrefix = "/monitor/git";
constexpr std::size_t kMaxPendingOut = 1u << 20;  // CGI output waiting for a slow client

http::Response text_response(int status, std::string message) {
  http::Response r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(message) + "\n";
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

http::Response unauthorized(std::string message) {
  auto r = text_response(401, std::move(message));
  r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"CloudyKnight\", charset=\"UTF-8\"");
  return r;
}

}  // namespace

http::Response ControlApi::git_request(const http::Request& req, const Snapshot& snap) const {
  const auto& gp = services_.git_push;
  std::string_view rest(req.path);
  rest.remove_prefix(kGitPrefix.size());
  auto what = git::classify_git_path(req.method, rest, req.query);
  if (!what) {
    return text_response(404,
                         "CloudyKnight serves git's smart HTTP protocol here only: clone or push "
                         "http(s)://HOST/monitor/git/NAME.git");
  }
  const std::string& name = what->name;
  if (auto v = validate_workspace_name(name); v.has_error()) {
    return text_response(400,
                         fmt::format("'{}' cannot be a workspace: {}", name, v.error().message));
  }
  if (gp.repos.empty() || !services_.auth) {
    return text_response(
        503,
        "this control plane does not serve git repositories (it needs folder storage "
        "and Debian's git package: apt-get install git, then restart it)");
  }
  const bool push = what->service == git::GitService::receive_pack;
  // Credentials: a token (Basic password or Bearer). git asks for them after the 401.
  auto token = git::token_of_authorization(req.header("Authorization"));
  if (!token) {
    return unauthorized(
        "CloudyKnight needs an API token: give it as the password (any user name), e.g. "
        "with a credential helper or https://x:TOKEN@HOST/monitor/git/" +
        name + ".git");
  }
  auto who = services_.auth->verify_token(*token);
  if (who.has_error())
    return unauthorized("that API token is not valid (expired, revoked or mistyped)");
  const auth::Principal& p = who.value();
  const auth::Scope scope = push ? auth::Scope::deploy : auth::Scope::read;
  if (!p.scopes.has(scope)) {
    return text_response(
        403, fmt::format("{} may not {}: it needs the '{}' scope (it has {})", p.label(),
                         push ? "push" : "fetch", auth::scope_name(scope), p.scopes.str()));
  }
  const fs::path repo = gp.repos / (name + ".git");
  const fs::path trash =
      services_.trash_dir.empty() ? gp.repos.parent_path() / "trash" : services_.trash_dir;
  const fs::path folder = services_.workspaces_root / name;
  std::error_code ec;
  const WorkspaceView* w = snap.find(name);
  const bool folder_exists =
      !services_.workspaces_root.empty() && fs::exists(fs::symlink_status(folder, ec));
  if (w || folder_exists) {
    auto d = decide(&p, name, w, push ? auth::Access::act : auth::Access::see);
    if (d == auth::Decision::forbidden) {
      return text_response(403, fmt::format("{} may see '{}' but not push to it", p.label(), name));
    }
    if (d != auth::Decision::allowed) {
      if (!push) return text_response(404, fmt::format("there is no workspace named '{}'", name));
      return text_response(
          409, fmt::format("a workspace named '{}' already exists and {} may not push to it; "
                           "push to another name",
                           name, p.label()));
    }
  } else if (!push) {
    return text_response(404, fmt::format("there is no workspace named '{}'", name));
  }
  if (w && !w->preview_of.empty()) {
    return text_response(409, fmt::format("'{}' is the branch preview of {}'s branch {}: use "
                                          "http(s)://HOST/monitor/git/{}.git and that branch",
                                          name, w->preview_of, w->preview_branch, w->preview_of));
  }
  if (!push && !fs::exists(repo / "HEAD", ec)) {
    return text_response(
        404, fmt::format("'{}' has no git repository here yet: it is made by the first push "
                         "(git push http(s)://HOST/monitor/git/{}.git main)",
                         name, name));
  }
  if (push) {
    if (!services_.dir_storage || services_.workspaces_root.empty()) {
      return text_response(
          409,
          "git push to deploy needs folder storage (storage.kind: dir); with S3 storage, "
          "upload with `cloudyknight workspace upload`");
    }
    if (folder_exists) {
      if (auto other = api::follows_elsewhere(folder, repo); !other.empty()) {
        return text_response(
            409, fmt::format("'{}' follows {}: push there instead, and CloudyKnight pulls it "
                             "(POST /monitor/api/v1/workspaces/{}/sync, or a push webhook)",
                             name, other, name));
      }
    }
    if (!folder_exists && what->advertisement && fs::exists(repo / "HEAD", ec) &&
        git::has_refs(repo) && !git_pushes_->pushing(name)) {
      // The repository of a workspace that was deleted: whoever takes the name next must not
      // be able to fetch its history. It goes to the trash with the workspace.
      fs::create_directories(trash, ec);
      fs::path dest = trash / fmt::format("{}-{}.git", name, api::utc_stamp());
      for (int n = 2; fs::exists(fs::symlink_status(dest, ec)); ++n) {
        dest = trash / fmt::format("{}-{}-{}.git", name, api::utc_stamp(), n);
      }
      if (auto moved = api::move_folder(repo, dest); moved.has_error()) {
        logger()->error("[ws={}] {}", name, moved.error().message);
        return text_response(500, "cannot set the previous repository of '" + name +
                                      "' aside: " + moved.error().message);
      }
      logger()->info("[ws={}] its workspace is gone: moved the old push repository to {}", name,
                     dest.string());
    }
    if (auto made = git::ensure_push_repo(repo, gp.hook_exe); made.has_error()) {
      logger()->error("[ws={}] {}", name, made.error().message);
      return text_response(500, "cannot prepare the repository: " + made.error().message);
    }
  }
  fs::create_directories(gp.home, ec);

  // The request as the CGI sees it.
  git::CgiRequest cgi;
  cgi.method = req.method == "HEAD" ? "GET" : req.method;
  cgi.path_info = std::string(rest);
  cgi.query = req.query;
  cgi.content_type = req.header("Content-Type");
  cgi.content_encoding = req.header("Content-Encoding");
  cgi.content_length = req.body.size();
  cgi.git_protocol = req.header("Git-Protocol");
  cgi.remote_user = p.label();
  cgi.remote_addr = req.client_ip;

  const bool deploys = push && !what->advertisement;
  int sock[2] = {-1, -1};
  git::EnvPairs extra;
  if (deploys) {
    if (!git_pushes_->lock_name(name)) {
      return text_response(
          409,
          fmt::format("a push to '{}' is deploying now; push again when it has finished", name));
    }
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock) != 0) {
      git_pushes_->unlock_name(name);
      return text_response(500,
                           fmt::format("cannot make the deploy channel: {}", std::strerror(errno)));
    }
    extra.emplace_back(std::string(git::kHookFdVar), std::to_string(git::kHookFd));
    (void)services_.auth->audit(
        p.label(), "workspace.push", name,
        json{{"created", !folder_exists}, {"bytes", req.body.size()}}.dump(), req.client_ip);
  }
  git::CgiRun run;
  run.argv = {gp.git, "http-backend"};
  run.env = git::cgi_env(cgi, gp.repos, gp.home, extra);
  run.cwd = gp.home;
  run.body = req.body;
  run.pass_fd = sock[1];
  run.timeout = gp.timeout;

  std::optional<api::DeployJob> job;
  if (deploys) {
    job.emplace(follow_job(req, name));
    job->repo = repo;
    job->trash = trash;
    job->owner = p.user_id;
    job->principal = p.label();
    job->url_of = [info = info_](const std::string& n) { return workspace_url(n, info); };
    job->auth = services_.auth;
    job->pull = gp.pull;
  }

  auto st = std::make_shared<http::ResponseStream>();
  // Not a shared_ptr: ~GitPushes joins this thread, so it must not be the one that ends it.
  api::GitPushes* pushes = git_pushes_.get();
  const int deploy_fd = sock[0];
  auto work = [st, pushes, run = std::move(run), job = std::move(job), deploy_fd, name]() mutable {
    std::thread deployer;
    if (job) deployer = std::thread([job = *job, deploy_fd] { api::deploy_push(job, deploy_fd); });
    git::CgiSink sink;
    sink.head = [&](git::CgiHead h) {
      st->begin(h.status, std::move(h.content_type), std::move(h.headers));
    };
    sink.body = [&](std::string_view bytes) { return st->write(bytes); };
    sink.ready = [&] { return st->pending_bytes() < kMaxPendingOut; };
    sink.cancelled = [&] { return st->cancelled() || pushes->stopping(); };
    auto outcome = git::run_cgi(std::move(run), sink);
    if (!outcome.head_sent) {
      std::string why = !outcome.error.empty() ? outcome.error
                        : outcome.timed_out    ? "it took too long"
                                               : "no answer";
      logger()->warn("[ws={}] git http-backend: {}{}", name, why,
                     outcome.stderr_tail.empty() ? "" : " (stderr: " + outcome.stderr_tail + ")");
      st->respond(502, "text/plain; charset=utf-8", "git http-backend failed: " + why + "\n");
    } else if (outcome.exit_code != 0 && !outcome.cancelled) {
      logger()->warn("[ws={}] git http-backend exited with {}{}{}", name, outcome.exit_code,
                     outcome.timed_out ? " (timed out)" : "",
                     outcome.stderr_tail.empty() ? "" : ": " + outcome.stderr_tail);
    }
    st->finish();
    if (deployer.joinable()) deployer.join();
    if (job) pushes->unlock_name(name);
  };
  if (!git_pushes_->start(std::move(work))) {
    if (sock[0] >= 0) ::close(sock[0]);
    if (sock[1] >= 0) ::close(sock[1]);
    if (deploys) git_pushes_->unlock_name(name);
    return text_response(503, "too many git requests are running; try again in a moment");
  }
  http::Response res;
  res.stream = st;
  return res;
}

api::DeployJob ControlApi::follow_job(const http::Request& req, const std::string& name) const {
  api::DeployJob job;
  job.name = name;
  job.root = services_.workspaces_root;
  std::string host = req.header("Host");
  const bool host_ok =
      !host.empty() && host.size() < 256 && host.find_first_of(" /\\\t\r\n\"'<>") == std::string::npos;
  // The address the request came to, unless that is the control host (no workspace is served
  // there): then the gateway's own.
  job.base_url = host_ok && info_.control_host.empty() ? std::string(req.tls ? "https://" : "http://") + host
                                                       : info_.listen_url.substr(0, info_.listen_url.size() - 1);
  job.url = workspace_url(name, info_);
  job.snapshots = &snapshots_;
  job.act = services_.act;
  job.log_path = services_.log_path;
  job.sync = services_.sync;
  job.follow_timeout = services_.git_push.follow_timeout;
  job.stopping = &git_pushes_->stopping();
  return job;
}

}  // namespace ck
