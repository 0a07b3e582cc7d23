#pragma once
// The deploy after a git push (git_deploy.cc), internal to the API: what it needs and the
// helpers git_api.cc shares with it. The deploy runs on the push's own deploy thread.

#include <atomic>
#include <filesystem>
#include <functional>
#include <string>

#include "api/api.h"
#include "core/error.h"

namespace ck {
namespace auth {
class Auth;
}
namespace api {

// What a deploy needs, copied out of the request and the API (the thread outlives neither the
// ControlApi nor the objects these point to: ~GitPushes joins it first).
struct DeployJob {
  std::string name;
  std::filesystem::path repo;   // DATA/git/repos/<name>.git
  std::filesystem::path root;   // the workspace folders
  std::filesystem::path trash;  // DATA/trash
  std::string owner;            // the pusher's user id ("" for tokens that belong to nobody)
  std::string principal;        // for the log
  std::string base_url;  // "http://host:port" the push came to (for a relative workspace URL)
  std::string url;       // workspace_url()
  std::function<std::string(const std::string&)> url_of;  // workspace_url() of another name
  const SnapshotHolder* snapshots = nullptr;
  auth::Auth* auth = nullptr;
  std::function<void(const std::string&, WorkspaceAction)> act;
  std::function<std::filesystem::path(const std::string&)> log_path;
  std::function<void(const std::string&, std::function<void(Result<SyncOutcome>)>)> sync;
  std::function<void(const std::string&, std::function<void(Result<void>)>)> pull;
  Duration follow_timeout{};
  const std::atomic<bool>* stopping = nullptr;
};

/// Reads the pushed "old new ref" lines from the hook on `fd`, deploys the branch the
/// workspace follows and reports on `fd` as it goes (Dokku's "-----> " steps, the workspace's
/// log indented, "=====> NAME is running at URL" or "!!!    NAME failed: ..."), then closes it.
void deploy_push(const DeployJob& job, int fd);

/// "20261126T015500Z".
std::string utc_stamp();

/// Moves `from` to `to`: a rename, or (another file system) a checked copy, then the original goes.
Result<void> move_folder(const std::filesystem::path& from, const std::filesystem::path& to);

/// The remote other than `ours` that the workspace folder `dir` follows (its workspace.json
/// "git.url", or its clone's origin), redacted; "" when it follows `ours` or none. Reads the
/// configuration only.
std::string follows_elsewhere(const std::filesystem::path& dir, const std::filesystem::path& ours);

}  // namespace api
}  // namespace ck
