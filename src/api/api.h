#pragma once
// The control-plane HTTP API under /monitor (DESIGN.md "Control-plane HTTP API"): health,
// workspace list and detail, system status, and (auth_api.cc) auth, tokens, users, the audit log
// and workspace start/stop/restart/logs. Handlers are plain functions of a request and the
// monitor's current snapshot; they run on gateway threads. The snapshot handlers never block;
// the secured ones wait on SQLite. Slow answers (login's argon2id, a command, a sync, a
// followed log) come later through an http::ResponseStream filled on another thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/error.h"
#include "core/public_url.h"
#include "core/units.h"
#include "http/message.h"
#include "monitor/snapshot.h"
#include "runtime/exec.h"
#include "state/state.h"
#include "storage/files.h"

namespace ck {

namespace auth {
class Auth;
struct Principal;
enum class Access;    // auth/authorize.h
enum class Decision;  // auth/authorize.h
}
namespace api {
class Poller;
std::shared_ptr<Poller> make_poller();  // exec_api.cc
class GitPushes;
std::shared_ptr<GitPushes> make_git_pushes();  // git_api.cc
struct DeployJob;                              // git_deploy.h
}

struct ApiInfo {
  std::string version;
  std::string listen_url;  // "http://127.0.0.1:8080/"
  std::chrono::system_clock::time_point started;
  /// gateway.domain (normalised; empty = path routing only): a workspace's `url` is then
  /// http://<name>.<domain>[:port]/ (www: http://<domain>[:port]/).
  std::string domain;
  /// gateway.control_host (empty = the dashboard shares the workspaces' origin, and cookie
  /// logins are refused once there is more than one user).
  std::string control_host;
  std::uint16_t port = 0;  // the gateway's port (80 or 0: left out)
  /// Where the gateway is reached (gateway.public_url, gateway.domain): the `url` fields.
  PublicAddress address;
};

/// A workspace's address as the API shows it: workspace_link() of info.address, i.e. "/<name>/"
/// ("/" for www) when neither gateway.domain nor gateway.public_url is set, else its full
/// URL (the same as the app's BASE_URL). Pure.
std::string workspace_url(std::string_view name, const ApiInfo& info);

/// The address mode of workspace_json's `url`, set by the ControlApi at construction (one
/// control plane per process; before any request is served).
void set_workspace_urls(const ApiInfo& info);

/// Called (on a gateway thread; must not block) with the "bucket/key" of each record of a
/// bucket notification, none for a test event.
using StorageEventsHook = std::function<void(const std::vector<std::string>& keys)>;

/// What POST /workspaces/{name}/sync did.
struct SyncOutcome {
  std::string storage;  // "dir" (a rescan of the folder) or "s3" (a pull from the bucket)
  std::size_t pulled = 0;   // workspaces pulled (s3)
  std::size_t removed = 0;  // workspaces removed from the mirror (s3)
  std::size_t failed = 0;   // workspaces whose pull failed (s3)
  std::size_t files = 0;    // files downloaded or deleted (s3)
  /// A workspace that follows a git remote: the pull this sync made.
  bool git = false;
  bool git_updated = false;
  std::string git_head;
  std::size_t git_changed = 0;
};

/// Where a workspace's source stands against its storage (GET /workspaces/{name}/status).
struct SyncState {
  std::string error;              // the last listing's or this workspace's pull error
  std::int64_t last_pass_ms = 0;  // S3: when the mirror last listed the bucket (0: never)
};

/// What the API acts through besides the snapshot (all optional; absent ones make their
/// endpoints answer 503).
struct ApiServices {
  /// Tokens, users, sessions and the audit log. Its calls block on SQLite (and login on
  /// argon2id), on the gateway thread that runs the handler.
  auth::Auth* auth = nullptr;
  /// Asks the monitor to start/stop/restart a workspace. Called on gateway threads; must post.
  std::function<void(const std::string& name, WorkspaceAction action)> act;
  /// Where a workspace's log is (Runtime::log_path); must be callable from any thread.
  std::function<std::filesystem::path(const std::string& name)> log_path;
  /// Creating and deleting workspaces (workspaces_api.cc): the storage root (dir storage: the
  /// workspace folders; empty: no create/delete), whether it is dir storage (S3 answers 409),
  /// where deleted workspaces go (DATA/trash) and the templates folder (empty: none).
  std::filesystem::path workspaces_root;
  bool dir_storage = false;
  std::filesystem::path trash_dir;
  std::filesystem::path templates_dir;
  /// Runs a command where a workspace's app runs (Runtime::exec). Called on gateway threads;
  /// must post. `output` and then `done` are called once each run on the control plane's
  /// thread; `output` answering false stops the command.
  /// `service`: a compose workspace's service ("" = the routed one).
  std::function<void(const std::string& name, const std::string& service,
                     std::vector<std::string> argv, Duration timeout, OutputSink output,
                     std::function<void(Result<ExecOutcome>)> done)>
      run;
  /// Brings a workspace's source in step with storage now (S3: a mirror pass; a folder: a
  /// rescan). Called on gateway threads; must not block; `done` is called once, on any thread.
  std::function<void(const std::string& name, std::function<void(Result<SyncOutcome>)> done)> sync;
  /// S3 storage: uploads a folder that POST /workspaces assembled as a new workspace, and
  /// deletes a workspace's objects (DELETE, after its mirror was copied to the trash); both
  /// answer through `done` once the mirror has caught up (S3Mirror::publish/remove). Called
  /// on gateway threads; must not block. Unset for folder storage.
  std::function<void(const std::string& name, std::filesystem::path folder,
                     std::function<void(Result<void>)> done)>
      publish;
  std::function<void(const std::string& name, std::function<void(Result<std::size_t>)> done)>
      unpublish;
  /// The files API (files_api.cc): the largest file it reads or writes (gateway.max_file_body).
  /// The folder it works in is workspaces_root/NAME (S3: the mirror's).
  std::uint64_t max_file_bytes = 10ull << 20;
  /// S3 storage: a write or delete of the files API goes through the bucket first
  /// (S3Mirror::write_file/delete_file); `done` is called once, on any thread, with the result
  /// and, for precondition_failed, the current ETag. Unset for folder storage, where the API
  /// changes the folder itself. Called on gateway threads; must not block.
  std::function<void(const std::string& name, const std::string& rel, std::string body,
                     files::Conditions when,
                     std::function<void(Result<files::Written>, std::string current_etag)> done)>
      write_file;
  std::function<void(const std::string& name, const std::string& rel, files::Conditions when,
                     std::function<void(Result<void>, std::string current_etag)> done)>
      delete_file;
  /// Deploys (source_api.cc, PUT /workspaces/{name}/source): the most file bytes one tar may
  /// unpack to (gateway.max_body), and where the server keeps each workspace's digest index
  /// (DATA/deploy-index; empty: every listing hashes every file).
  std::uint64_t max_deploy_bytes = 64ull << 20;
  std::filesystem::path deploy_index_dir;
  /// S3 storage: the mirror's state for a workspace (thread-safe, never blocks for long).
  /// Unset for folder storage.
  std::function<SyncState(const std::string& name)> sync_state;
  /// git workspaces (folder storage; unset otherwise). git_status: the `git` object of
  /// GET /workspaces/{name}/status, null for one that follows no remote (any thread; reads the
  /// working tree). git_clone: POST /workspaces {"git": {"url", "branch"?, "token"?}} clones into
  /// `dir` (a new folder) off the gateway; `done` once, on any thread. git_hook: POST /git/hook
  /// (verifies the signature, queues the pulls; the names queued). file_changed: a file was
  /// written or deleted through the files API by `author` (autocommit).
  std::function<nlohmann::json(const std::string& name)> git_status;
  std::function<void(const std::string& name, std::filesystem::path dir, std::string url, std::string branch,
                     std::string token, std::string owner, std::function<void(Result<void>)> done)>
      git_clone;
  std::function<Result<std::vector<std::string>>(std::string_view body, std::string_view hub_sig256,
                                                 std::string_view gitea_sig, std::string_view gitlab_token)>
      git_hook;
  std::function<void(const std::string& name, const std::string& path, const std::string& verb,
                     const std::string& author)>
      file_changed;

  // ---- git push to deploy (git_api.cc; issue 16, part 3) ----
  /// /monitor/git/<name>.git: the bare repositories (DATA/git/repos; empty: 503), an empty
  /// folder that is git's HOME and working directory (DATA/git/home), the program the hooks run
  /// (this binary, `git-hook post-receive`) and git itself.
  struct GitPush {
    std::filesystem::path repos;
    std::filesystem::path home;
    std::string hook_exe;
    std::string git = "/usr/bin/git";
    /// Brings a workspace that already follows its push repository up to date, on the worker
    /// that owns its working copy (GitWorkspaces::pull); `done` on any thread. Unset: the
    /// deploy fast-forwards it itself (git::pull).
    std::function<void(const std::string& name, std::function<void(Result<void>)> done)> pull;
    /// How long a push may take, receiving and deploying together.
    Duration timeout = std::chrono::minutes(15);
    /// How long the deploy follows the workspace until it runs (or failed).
    Duration follow_timeout = std::chrono::minutes(10);
  } git_push;

  // ---- backups (issue 17; backup_api.cc) ----
  /// The daemon's backup service (absent: the backup endpoints answer 503). `done` callbacks
  /// may come on any thread; the hooks themselves never block.
  struct Backups {
    /// GET /backups: the schedule, the destinations and their last runs, and the last snapshot
    /// of each workspace `visible` lets through.
    std::function<nlohmann::json(const std::function<bool(const std::string&)>& visible)> status;
    /// GET /backups?workspace=W: W's snapshots on every destination (or `destination`).
    std::function<void(const std::string& workspace, const std::string& destination,
                       std::function<void(Result<nlohmann::json>)> done)>
        snapshots;
    /// POST /backups: runs now on `destination` ("" = all) for `workspace` ("" = all); the jobs.
    std::function<Result<nlohmann::json>(const std::string& destination, const std::string& workspace)> start;
    /// POST /workspaces/{name}/restore with the request's body (an object, fields checked by
    /// the service): a dry run answers the plan, else the queued restore job.
    std::function<void(const std::string& workspace, const nlohmann::json& request,
                       std::function<void(Result<nlohmann::json>)> done)>
        restore;
  } backups;

  // ---- cleanup (issue 19; cleanup_api.cc) ----
  /// The daemon's cleanup service (absent: /cleanup answers 503). Admins only.
  struct Cleanup {
    /// POST /cleanup: queues a run now; {"job": ...}.
    std::function<Result<nlohmann::json>()> start;
    /// POST /cleanup {"dry_run": true}: the plan (a report with dry_run true). `done` on any thread.
    std::function<void(std::function<void(Result<nlohmann::json>)> done)> plan;
    /// GET /cleanup: the last run's report ({} before the first).
    std::function<nlohmann::json()> last;
  } cleanup;
};

class ControlApi {
 public:
  /// `db` (optional) serves jobs and status history. `storage_events` (S3 storage only) is
  /// told about bucket notifications POSTed to /monitor/api/v1/storage/events.
  ControlApi(const SnapshotHolder& snapshots, ApiInfo info, StateDb* db = nullptr,
             StorageEventsHook storage_events = {}, ApiServices services = {})
      : snapshots_(snapshots),
        info_(std::move(info)),
        db_(db),
        storage_events_(std::move(storage_events)),
        services_(std::move(services)),
        poller_(api::make_poller()),
        worker_(api::make_poller()),
        git_pushes_(api::make_git_pushes()) {
    set_workspace_urls(info_);
  }
  /// The front door (routes.cc): the routing table's 404/405, then dispatch(), then the ETag
  /// (and 304) of every 200 JSON answer to a GET.
  http::Response handle(const http::Request& req) const;

 private:
  http::Response dispatch(const http::Request& req) const;
  http::Response jobs(const http::Request& req, const Snapshot& snap) const;
  http::Response storage_events(const http::Request& req) const;
  /// auth_api.cc: the auth, user, token and audit endpoints, workspace start/stop/restart and
  /// logs, and the credential check of every other mutation; nullopt lets handle() go on.
  std::optional<http::Response> handle_secured(const http::Request& req,
                                               const Snapshot& snap) const;
  /// workspaces_api.cc: POST /workspaces and DELETE /workspaces/{name} for a caller already
  /// checked for the deploy scope (`who` goes to the audit log, is authorized on the workspace
  /// deleted or cloned, and its user owns what it creates); nullopt for other routes.
  std::optional<http::Response> workspace_mutation(const http::Request& req, const Snapshot& snap,
                                                   const auth::Principal& who) const;
  /// auth_api.cc: the principal behind the request's credentials (the bearer token, else the
  /// session cookie); nullopt for none or invalid ones (an anonymous caller). Blocks on SQLite.
  std::optional<auth::Principal> principal_of(const http::Request& req) const;
  /// auth_api.cc: auth::authorize() for `who` (nullptr: anonymous) on workspace `name` (`w`: its
  /// snapshot entry, nullptr when the snapshot does not hold it: then it counts as private).
  /// Every per-workspace answer of the API passes through here. Without an auth service
  /// everything is allowed (nothing is private).
  auth::Decision decide(const auth::Principal* who, const std::string& name,
                        const WorkspaceView* w, auth::Access what) const;
  /// GET /templates.
  http::Response templates(const http::Request& req) const;
  /// exec_api.cc: POST /workspaces/{name}/run and /sync, GET /workspaces/{name}/logs?follow=1
  /// and GET /logs, for a caller already checked. `audit` records the mutation.
  http::Response run_command(const http::Request& req, const WorkspaceView& w,
                             const std::function<void(nlohmann::json)>& audit) const;
  http::Response sync_workspace(const WorkspaceView& w) const;
  /// files_api.cc: GET|PUT|DELETE /workspaces/{name}/files/{path} for a caller already checked
  /// (read scope and `see` for GET, deploy and `act` otherwise). `raw_path` is the part after
  /// "files/", still percent-encoded; `audit` records a mutation (action, detail).
  /// `author`: who acts (a name for the commit when the workspace follows git).
  http::Response files_request(
      const http::Request& req, const WorkspaceView& w, std::string_view raw_path, const std::string& author,
      const std::function<void(const std::string&, nlohmann::json)>& audit) const;
  /// source_api.cc: GET /workspaces/{name}/source (the source's file list with MD5s; read
  /// scope and `see`) and PUT (a deploy's tar; deploy scope and `act`), for a caller already
  /// checked. `author` names who deploys (the commit of a git workspace).
  http::Response source_request(const http::Request& req, const WorkspaceView& w, const std::string& author,
                                const std::function<void(nlohmann::json)>& audit) const;
  /// git_api.cc: what follow() needs to follow workspace `name` after a push or a deploy that
  /// came in through `req` (its Host gives the URL printed at the end).
  api::DeployJob follow_job(const http::Request& req, const std::string& name) const;
  /// POST /git/hook (signed by the git host; no bearer token).
  http::Response git_hook(const http::Request& req) const;
  http::Response follow_log(const http::Request& req, const WorkspaceView& w) const;
  /// backup_api.cc: GET /backups for a caller with the read scope (`who`), POST /backups for one
  /// with deploy (a workspace it may act on, or every workspace for an admin), POST
  /// /workspaces/{name}/restore for one already allowed to act on `w`.
  http::Response backups_status(const http::Request& req, const Snapshot& snap, const auth::Principal& who) const;
  http::Response start_backup(const http::Request& req, const Snapshot& snap, const auth::Principal& who,
                              const std::function<void(const std::string&, nlohmann::json)>& audit) const;
  http::Response restore_workspace(const http::Request& req, const WorkspaceView& w,
                                   const std::function<void(nlohmann::json)>& audit) const;
  http::Response monitor_logs(const http::Request& req) const;
  /// cleanup_api.cc: GET|POST /cleanup for an admin (`audit` records a run).
  http::Response cleanup_request(const http::Request& req, const std::function<void(nlohmann::json)>& audit) const;
  const SnapshotHolder& snapshots_;
  ApiInfo info_;
  StateDb* db_;
  StorageEventsHook storage_events_;
  ApiServices services_;
  std::shared_ptr<api::Poller> poller_;  // the follow streams' thread
  std::shared_ptr<api::Poller> worker_;  // slow one-off work off the gateway (argon2id logins)

  // ---- git push to deploy (git_api.cc) ----
  /// /monitor/git/<name>.git/info/refs and .../git-upload-pack|git-receive-pack: authenticates
  /// (an API token as the Basic password, or Bearer), authorizes, and runs git http-backend on
  /// a thread of its own; a receive-pack also deploys what was pushed.
  http::Response git_request(const http::Request& req, const Snapshot& snap) const;
  std::shared_ptr<api::GitPushes> git_pushes_;  // the running git requests; joined last
};

/// The principal behind a request's headers, by the API's rules: the Authorization header's
/// bearer token when there is one, else the session cookie; nullopt for none or invalid ones.
/// Blocks on SQLite.
/// `tls`: the gateway speaks TLS, so the session cookie is the __Host- one.
std::optional<auth::Principal> credentials_of(auth::Auth& auth, std::string_view authorization,
                                              std::string_view cookie, bool tls = false);

/// A workspace as the API shows it (GET /workspaces/{name}).
nlohmann::json workspace_json(const WorkspaceView& w, const Snapshot& snap);

/// A MinIO (or S3-style) bucket notification: {"EventName", "Key", "Records": [{"s3":
/// {"bucket": {"name"}, "object": {"key" (URL-encoded)}}}, ...]}.
struct BucketNotification {
  std::size_t events = 0;         // records (0: a test event or an empty body)
  std::vector<std::string> keys;  // "bucket/key", decoded, for the records that name one
};

/// Parses a notification body. An empty body or an object without records is a test event
/// (0 events); anything that is not a JSON object, or whose "Records" is not an array, is
/// invalid_argument. Pure: never throws.
Result<BucketNotification> parse_bucket_notification(std::string_view body);

/// The largest notification body accepted (a bigger one is answered 413).
inline constexpr std::size_t kMaxNotificationBody = std::size_t{1} << 20;

/// The HTTP status for an error code, and the JSON body {"error": {"code", "message"}}.
int http_status_for(Errc code);
http::Response error_response(Errc code, const std::string& message);

}  // namespace ck
