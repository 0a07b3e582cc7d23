// Backups over the API (issue 17): GET|POST /backups and POST /workspaces/{name}/restore, for
// callers auth_api.cc already checked. The work is the daemon's backup service
// (ApiServices::Backups); what blocks on S3 answers through a stream.
#include <fmt/format.h>

#include "api/api.h"
#include "api/respond.h"
#include "auth/auth.h"
#include "auth/authorize.h"
#include "core/names.h"
#include "http/stream.h"
#include "http/url.h"

namespace ck {
using json = nlohmann::json;
using api::json_response;

namespace {

// Restore and backup request bodies are a handful of short fields.
constexpr std::size_t kMaxBackupBody = 8 * 1024;

http::Response later(const std::function<void(std::function<void(Result<json>)>)>& work, int status) {
  auto st = std::make_shared<http::ResponseStream>();
  work([st, status](Result<json> r) {
    if (r.has_error()) return st->respond(error_response(r.error().code, r.error().message));
    st->respond(json_response(status, r.value()));
  });
  http::Response res;
  res.stream = st;
  return res;
}

// The size check, then the JSON object (an empty body is {}).
Result<json> small_body_object(const http::Request& req) {
  if (req.body.size() > kMaxBackupBody) {
    return fail(Errc::too_large, fmt::format("the request body is over {} bytes; send only the fields this "
                                             "endpoint takes", kMaxBackupBody));
  }
  return api::body_object(req, true);
}

}  // namespace

http::Response ControlApi::backups_status(const http::Request& req, const Snapshot& snap,
                                          const auth::Principal& who) const {
  if (!services_.backups.status) return error_response(Errc::unavailable, "this control plane runs no backups");
  auto may_see = [this, &snap, &who](const std::string& name) {
    return decide(&who, name, snap.find(name), auth::Access::see) == auth::Decision::allowed;
  };
  auto workspace = http::query_param(req.query, "workspace").value_or("");
  if (workspace.empty()) {
    json body = services_.backups.status(may_see);
    // A run's error may name any workspace: only admins read it.
    if (!who.scopes.has(auth::Scope::admin)) {
      for (auto& d : body["destinations"]) {
        if (d["last"].is_object() && d["last"].value("error", "") != "") {
          d["last"]["error"] = "(the last run failed: an admin can read why)";
        }
      }
    }
    return json_response(200, body);
  }
  if (auto v = validate_workspace_name(workspace); v.has_error()) return error_response(v.error().code, v.error().message);
  // A workspace's snapshots: seen like the workspace (one the caller may not see does not exist).
  // A deleted workspace's snapshots are for admins.
  const WorkspaceView* w = snap.find(workspace);
  bool allowed = w ? may_see(workspace) : who.scopes.has(auth::Scope::admin);
  if (!allowed) {
    return error_response(Errc::not_found, fmt::format("there is no workspace named '{}'", workspace));
  }
  auto destination = http::query_param(req.query, "destination").value_or("");
  auto hook = services_.backups.snapshots;
  return later([hook, workspace, destination](std::function<void(Result<json>)> done) {
    hook(workspace, destination, std::move(done));
  }, 200);
}

http::Response ControlApi::start_backup(const http::Request& req, const Snapshot& snap, const auth::Principal& who,
                                        const std::function<void(const std::string&, json)>& audit) const {
  if (!services_.backups.start) return error_response(Errc::unavailable, "this control plane runs no backups");
  auto body = small_body_object(req);
  if (body.has_error()) return error_response(body.error().code, body.error().message);
  auto workspace = api::optional_string_member(body.value(), "workspace");
  auto destination = api::optional_string_member(body.value(), "destination");
  if (workspace.has_error()) return error_response(workspace.error().code, workspace.error().message);
  if (destination.has_error()) return error_response(destination.error().code, destination.error().message);
  if (workspace.value().empty()) {
    if (!who.scopes.has(auth::Scope::admin)) {
      return error_response(Errc::forbidden, "backing up every workspace needs the admin scope; name one of "
                                             "yours with {\"workspace\": NAME}");
    }
  } else {
    if (auto v = validate_workspace_name(workspace.value()); v.has_error()) {
      return error_response(v.error().code, v.error().message);
    }
    const WorkspaceView* w = snap.find(workspace.value());
    auto d = decide(&who, workspace.value(), w, auth::Access::act);
    if (d == auth::Decision::forbidden) {
      return error_response(Errc::forbidden,
                            fmt::format("{} may see '{}' but not back it up", who.label(), workspace.value()));
    }
    if (d != auth::Decision::allowed || !w) {
      return error_response(Errc::not_found, fmt::format("there is no workspace named '{}'", workspace.value()));
    }
  }
  auto jobs = services_.backups.start(destination.value(), workspace.value());
  if (jobs.has_error()) return error_response(jobs.error().code, jobs.error().message);
  audit(workspace.value(), {{"destination", destination.value()}});
  return json_response(202, jobs.value());
}

http::Response ControlApi::restore_workspace(const http::Request& req, const WorkspaceView& w,
                                             const std::function<void(json)>& audit) const {
  if (!services_.backups.restore) return error_response(Errc::unavailable, "this control plane runs no backups");
  auto body = small_body_object(req);
  if (body.has_error()) return error_response(body.error().code, body.error().message);
  for (const auto& [key, value] : body.value().items()) {
    if (key != "destination" && key != "snapshot" && key != "point_in_time" && key != "mode" && key != "dry_run") {
      return error_response(Errc::invalid_argument,
                            fmt::format("unknown field '{}': a restore takes destination, snapshot, "
                                        "point_in_time (\"YYYY-MM-DD HH:MM:SS\"), mode (merge|mirror) and dry_run",
                                        key));
    }
  }
  bool dry = false;
  if (auto it = body.value().find("dry_run"); it != body.value().end() && !it->is_null()) {
    if (!it->is_boolean()) return error_response(Errc::invalid_argument, "'dry_run' must be true or false");
    dry = it->get<bool>();
  }
  if (!dry) audit(body.value());
  auto hook = services_.backups.restore;
  return later([hook, name = w.name, b = body.value()](std::function<void(Result<json>)> done) {
    hook(name, b, std::move(done));
  }, dry ? 200 : 202);
}

}  // namespace ck
