#include "api/api.h"

#include <algorithm>
#include <charconv>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "api/metrics.h"
#include "api/respond.h"
#include "auth/auth.h"
#include "auth/authorize.h"
#include "core/names.h"
#include "http/url.h"
#include "metrics/metrics.h"

namespace ck {

namespace api {

http::Response json_response(int status, const nlohmann::json& body) {
  http::Response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

http::Response no_content() {
  http::Response r;
  r.status = 204;
  r.content_type.clear();
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

Result<nlohmann::json> body_object(const http::Request& req, bool empty_ok) {
  if (empty_ok && req.body.empty()) return nlohmann::json::object();
  auto doc = nlohmann::json::parse(req.body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return fail(Errc::invalid_argument, "the body must be a JSON object");
  }
  return outcome::success(std::move(doc));
}

Result<std::string> string_member(const nlohmann::json& doc, const char* key) {
  auto it = doc.find(key);
  if (it == doc.end() || !it->is_string()) {
    return fail(Errc::invalid_argument, fmt::format("\"{}\" must be a string", key));
  }
  return it->get<std::string>();
}

Result<std::string> optional_string_member(const nlohmann::json& doc, const char* key) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return std::string();
  return string_member(doc, key);
}

http::Response method_not_allowed(const http::Request& req, const char* allow) {
  auto r = error_response(Errc::invalid_argument, req.method + " is not allowed on " + req.path + "; use " + allow);
  r.status = 405;
  r.headers.emplace_back("Allow", allow);
  return r;
}

}  // namespace api

using api::json_response;
using json = nlohmann::json;

namespace {

constexpr std::string_view kApi = "/monitor/api/v1";


std::string activity_of(const WorkspaceView& w, const Snapshot&) {
  if (w.status == "stopped" && !w.frozen) return std::string(level_name(ActivityLevel::stop));
  if (!w.activity) return "idle";
  return std::string(level_name(activity_level(w.activity->sample(), w.idle, unix_ms())));
}

json job_json(const Job& j) {
  json out = {{"id", j.id},
              {"kind", j.kind},
              {"workspace", j.workspace},
              {"state", std::string(job_state_name(j.state))},
              {"attempts", j.attempts},
              {"max_attempts", j.max_attempts},
              {"created_ms", j.created_ms},
              {"updated_ms", j.updated_ms}};
  if (j.state == JobState::queued) out["next_run_ms"] = j.next_run_ms;
  if (!j.last_error.empty()) out["error"] = j.last_error;
  auto payload = json::parse(j.payload, nullptr, false);
  if (!payload.is_discarded()) out["payload"] = payload;
  return out;
}

// A query parameter's decoded value ("" if absent).
std::string query_param(const std::string& query, std::string_view key) {
  return http::query_param(query, key).value_or("");
}

}  // namespace

namespace {
// Written once by the ControlApi's constructor, before the gateway's threads start.
ApiInfo& url_info() {
  static ApiInfo info;
  return info;
}
}  // namespace

std::string workspace_url(std::string_view name, const ApiInfo& info) {
  return workspace_link(name, info.address);
}

void set_workspace_urls(const ApiInfo& info) { url_info() = info; }

json workspace_json(const WorkspaceView& w, const Snapshot& snap) {
  json j = {
      {"name", w.name},
      {"type", w.type},
      {"matched", w.matched},
      {"status", w.status},
      {"activity", activity_of(w, snap)},
      {"url", workspace_url(w.name, url_info())},
      {"public", w.is_public},
      {"prefix", w.keep_prefix ? "keep" : "strip"},
      {"description", w.description},
      {"icon", w.icon},
      {"restarts", w.restarts},
  };
  if (!w.phase.empty()) j["phase"] = w.phase;
  if (w.port > 0) j["port"] = w.port;
  if (w.pid > 0) j["pid"] = w.pid;
  if (!w.error.empty()) j["error"] = w.error;
  if (!w.reason.empty()) j["reason"] = w.reason;
  if (w.frozen) j["frozen"] = true;
  if (w.held) j["held"] = true;
  if (!w.log_tail.empty()) j["log_tail"] = w.log_tail;
  if (!w.preview_of.empty()) {
    j["preview_of"] = w.preview_of;
    j["branch"] = w.preview_branch;
  } else {
    // Its branch previews are named "<name>--<branch>": they sort right after it.
    const std::string prefix = w.name + "--";
    auto it = std::lower_bound(snap.workspaces.begin(), snap.workspaces.end(), prefix,
                               [](const WorkspaceView& v, const std::string& p) { return v.name < p; });
    json previews = json::array();
    for (; it != snap.workspaces.end() && it->name.compare(0, prefix.size(), prefix) == 0; ++it) {
      if (it->preview_of == w.name) previews.push_back({{"name", it->name}, {"branch", it->preview_branch}});
    }
    if (!previews.empty()) j["previews"] = std::move(previews);
  }
  return j;
}

namespace {

long rss_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  long pages = 0, rss = 0;
  if (std::fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
  std::fclose(f);
  return rss * sysconf(_SC_PAGESIZE);
}

// A JSON string member of an object, or "".
std::string string_at(const json& j, std::string_view key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

Result<BucketNotification> parse_bucket_notification(std::string_view body) {
  BucketNotification out;
  auto blank = body.find_first_not_of(" \t\r\n");
  if (blank == std::string_view::npos) return out;  // an empty test payload
  auto doc = json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return fail(Errc::invalid_argument,
                "the body is not a JSON object: a bucket notification looks like {\"EventName\": "
                "\"s3:ObjectCreated:Put\", \"Key\": \"bucket/key\", \"Records\": [...]}");
  }
  auto records = doc.find("Records");
  if (records == doc.end() || records->is_null()) {
    // MinIO's single-event form without records, or a test event.
    if (auto key = string_at(doc, "Key"); !key.empty()) {
      out.events = 1;
      out.keys.push_back(std::move(key));
    }
    return out;
  }
  if (!records->is_array()) {
    return fail(Errc::invalid_argument, "\"Records\" must be an array of event records");
  }
  for (const auto& r : *records) {
    ++out.events;
    auto s3 = r.is_object() ? r.find("s3") : r.end();
    if (!r.is_object() || s3 == r.end() || !s3->is_object()) continue;
    std::string bucket = s3->contains("bucket") ? string_at((*s3)["bucket"], "name") : "";
    std::string key = s3->contains("object") ? string_at((*s3)["object"], "key") : "";
    if (key.empty()) continue;
    // Keys in records are URL-encoded the way S3 does it: '+' for a space.
    std::replace(key.begin(), key.end(), '+', ' ');
    auto decoded = http::percent_decode(key);
    out.keys.push_back(bucket + "/" + (decoded ? *decoded : key));
  }
  return out;
}

namespace {

// GET /workspaces[?limit=&after=]: by name (the snapshot's order), `limit` (default 100,
// 1..1000) after the name `after` (the "next" of the previous page, which need not exist any
// more); "next" is null on the last page.
http::Response workspace_list(const http::Request& req, const Snapshot& snap,
                              const std::function<bool(const WorkspaceView&)>& visible) {
  int limit = 100;
  if (auto v = query_param(req.query, "limit"); !v.empty()) {
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), limit);
    if (ec != std::errc() || p != v.data() + v.size() || limit < 1 || limit > 1000) {
      return error_response(Errc::invalid_argument, "limit must be a number from 1 to 1000");
    }
  }
  std::string after = query_param(req.query, "after");
  json list = json::array();
  json next = nullptr;
  for (const auto& w : snap.workspaces) {  // sorted by name
    if (!after.empty() && w.name <= after) continue;
    if (!visible(w)) continue;
    if (static_cast<int>(list.size()) == limit) {
      next = list.back()["name"];
      break;
    }
    list.push_back(workspace_json(w, snap));
  }
  return json_response(200, {{"workspaces", list}, {"next", next}});
}

}  // namespace

int http_status_for(Errc code) {
  switch (code) {
    case Errc::invalid_argument: return 400;
    case Errc::not_found: return 404;
    case Errc::already_exists: return 409;
    case Errc::conflict: return 409;
    case Errc::forbidden: return 403;
    case Errc::unauthenticated: return 401;
    case Errc::rate_limited: return 429;
    case Errc::precondition_failed: return 412;
    case Errc::too_large: return 413;
    case Errc::unavailable: return 503;
    case Errc::timeout: return 504;
    case Errc::io: return 500;
    case Errc::internal: return 500;
  }
  return 500;
}

http::Response error_response(Errc code, const std::string& message) {
  return json_response(http_status_for(code),
                       {{"error", {{"code", std::string(errc_name(code))}, {"message", message}}}});
}

// Behind handle() (routes.cc), which has matched the request against routes().
http::Response ControlApi::dispatch(const http::Request& req) const {
  const std::string& path = req.path;
  bool read = req.method == "GET" || req.method == "HEAD";
  auto snap = snapshots_.load();
  auto method_not_allowed = [&](const char* allow) {
    auto r = error_response(Errc::invalid_argument,
                            req.method + " is not allowed on " + path + "; use " + allow);
    r.status = 405;
    r.headers.emplace_back("Allow", allow);
    return r;
  };

  // git push to deploy (git_api.cc): its own credentials (Basic) and text answers for git.
  if (path.starts_with("/monitor/git/")) return git_request(req, *snap);
  if (auto secured = handle_secured(req, *snap)) return std::move(*secured);
  if (path == "/monitor/healthz") {
    if (!read) return method_not_allowed("GET");
    return json_response(200, {{"status", "ok"}, {"workspaces", snap->workspaces.size()}});
  }
  if (path == "/monitor/metrics") {  // scraping is read-only: no token needed
    if (!read) return method_not_allowed("GET");
    http::Response r;
    r.content_type = std::string(metrics::kContentType);
    r.body = render_metrics(metrics::global(), *snap, db_, info_.version);
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
  }
  if (path == std::string(kApi) + "/workspaces") {
    if (!read) return method_not_allowed("GET");
    auto who = principal_of(req);
    auto visible = [&](const WorkspaceView& w) {
      return decide(who ? &*who : nullptr, w.name, &w, auth::Access::see) ==
             auth::Decision::allowed;
    };
    return workspace_list(req, *snap, visible);
  }
  std::string prefix = std::string(kApi) + "/workspaces/";
  if (path.starts_with(prefix)) {
    std::string rest = path.substr(prefix.size());
    std::string name = rest.substr(0, rest.find('/'));
    std::string sub = rest.size() > name.size() ? rest.substr(name.size() + 1) : "";
    auto decoded = http::percent_decode(name);
    if (!decoded) return error_response(Errc::invalid_argument, "malformed percent-encoding in the workspace name");
    if (auto v = validate_workspace_name(*decoded); v.has_error()) {
      return error_response(Errc::invalid_argument, v.error().message);
    }
    const WorkspaceView* w = snap->find(*decoded);
    if (w) {
      auto who = principal_of(req);
      if (decide(who ? &*who : nullptr, w->name, w, auth::Access::see) != auth::Decision::allowed) {
        w = nullptr;  // as if it did not exist
      }
    }
    if (!w) {
      return error_response(Errc::not_found, "there is no workspace named '" + *decoded +
                                                 "'; GET " + std::string(kApi) + "/workspaces lists them");
    }
    if (sub.empty()) {
      if (!read) return method_not_allowed("GET");
      return json_response(200, workspace_json(*w, *snap));
    }
    if (sub == "status") {
      if (!read) return method_not_allowed("GET");
      json sync = {{"storage", services_.sync_state ? "s3" : "dir"},
                   {"location", snap->storage_location},
                   {"error", snap->storage_error}};
      if (services_.sync_state) {
        auto st = services_.sync_state(w->name);
        if (!st.error.empty()) sync["error"] = st.error;
        sync["last_pass_ms"] = st.last_pass_ms;
      }
      json container = {{"runtime", snap->runtime_kind}, {"isolation", snap->isolation},
                        {"pid", w->pid}, {"port", w->port}, {"held", w->held}};
      return json_response(200, {{"name", w->name}, {"status", w->status}, {"activity", activity_of(*w, *snap)},
                                 {"frozen", w->frozen}, {"reason", w->reason},
                                 {"error", w->error}, {"restarts", w->restarts},
                                 {"runtime", snap->runtime_kind}, {"container", container},
                                 {"sync", sync},
                                 {"git", services_.git_status ? services_.git_status(w->name) : json(nullptr)}});
    }
    if (sub == "history") {
      if (!read) return method_not_allowed("GET");
      if (!db_) return error_response(Errc::unavailable, "this control plane keeps no history");
      auto h = db_->history(w->name, 100);
      if (h.has_error()) return error_response(Errc::io, h.error().message);
      json list = json::array();
      for (const auto& c : h.value()) {
        list.push_back({{"status", c.status}, {"reason", c.reason}, {"at_ms", c.at_ms}});
      }
      return json_response(200, {{"name", w->name}, {"history", list}});
    }
    return error_response(Errc::not_found, "no such endpoint: " + path);
  }
  if (path == std::string(kApi) + "/templates") {
    if (!read) return method_not_allowed("GET");
    return templates(req);
  }
  if (path == std::string(kApi) + "/jobs" || path.starts_with(std::string(kApi) + "/jobs/")) {
    if (!read) return method_not_allowed("GET");
    return jobs(req, *snap);
  }
  if (path == std::string(kApi) + "/storage/events") {
    if (req.method != "POST") return method_not_allowed("POST");
    return storage_events(req);
  }
  if (path == std::string(kApi) + "/git/hook") {
    if (req.method != "POST") return method_not_allowed("POST");
    return git_hook(req);
  }
  if (path == std::string(kApi) + "/status") {
    if (!read) return method_not_allowed("GET");
    json counts = json::object();
    for (const auto& w : snap->workspaces) counts[w.status] = counts.value(w.status, 0) + 1;
    json invalid = json::array();
    for (const auto& i : snap->invalid) invalid.push_back({{"folder", i.folder}, {"error", i.error}});
    auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - info_.started);
    json j = {{"version", info_.version},
              {"url", info_.listen_url},
              {"runtime", snap->runtime_kind},
              {"isolation", snap->isolation},
              {"storage", snap->storage_location},
              {"workspaces", snap->workspaces.size()},
              {"by_status", counts},
              {"invalid", invalid},
              {"uptime_seconds", uptime.count()},
              {"rss_bytes", rss_bytes()}};
    // How the gateway routes: the dashboard reads this, never guesses it.
    j["routing"] = {{"domain", info_.domain},
                    {"control_host", info_.control_host},
                    {"workspace_url", workspace_url("{name}", info_)}};
    if (!snap->storage_error.empty()) j["storage_error"] = snap->storage_error;
    if (db_) {
      if (auto jc = db_->job_counts(); jc.has_value()) j["jobs"] = jc.value();
    }
    return json_response(200, j);
  }
  return error_response(Errc::not_found, "no such endpoint: " + req.method + " " + path +
                                             " (the API lives under " + std::string(kApi) + ")");
}

// POST /git/hook: a git host's push webhook (GitHub, Gitea, GitLab). The signature is the
// authentication (git.webhook_secret); the answer names the workspaces whose pull it queued.
http::Response ControlApi::git_hook(const http::Request& req) const {
  if (!services_.git_hook) {
    return error_response(Errc::unavailable, "git workspaces need folder storage (storage.kind: dir)");
  }
  auto header = [&](std::string_view name) { return std::string(req.header(name)); };
  auto r = services_.git_hook(req.body, header("X-Hub-Signature-256"), header("X-Gitea-Signature"),
                              header("X-Gitlab-Token"));
  if (r.has_error()) return error_response(r.error().code, r.error().message);
  return json_response(202, {{"pulling", r.value()}});
}

// POST /storage/events: MinIO's webhook target (bucket notifications). A notification only
// triggers a listing of the bucket, which passes coalesce; handle_secured has checked its token
// (the webhook's auth_token).
http::Response ControlApi::storage_events(const http::Request& req) const {
  if (!storage_events_) {
    return error_response(Errc::conflict,
                          "bucket notifications apply to S3 storage only; this control plane "
                          "serves a folder (storage.kind: dir), whose changes it watches itself");
  }
  if (req.body.size() > kMaxNotificationBody) {
    auto r = error_response(Errc::invalid_argument,
                            fmt::format("a bucket notification body is at most {} bytes (got {})",
                                        kMaxNotificationBody, req.body.size()));
    r.status = 413;
    return r;
  }
  auto parsed = parse_bucket_notification(req.body);
  if (parsed.has_error()) return error_response(parsed.error().code, parsed.error().message);
  storage_events_(parsed.value().keys);
  return json_response(202, {{"accepted", parsed.value().events}});
}

// GET /jobs[?state=&workspace=&limit=&before=] and GET /jobs/{id}: the persistent job queue,
// dead letters included.
http::Response ControlApi::jobs(const http::Request& req, const Snapshot& snap) const {
  if (!db_) return error_response(Errc::unavailable, "this control plane has no job queue");
  // A job shows to those who see its workspace (jobs of no workspace to everyone).
  auto who = principal_of(req);
  auto visible = [&](const Job& j) {
    if (j.workspace.empty()) return true;
    return decide(who ? &*who : nullptr, j.workspace, snap.find(j.workspace),
                  auth::Access::see) == auth::Decision::allowed;
  };
  std::string prefix = std::string(kApi) + "/jobs/";
  if (req.path.starts_with(prefix)) {
    std::string id_text = req.path.substr(prefix.size());
    std::int64_t id = 0;
    auto [p, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
    if (ec != std::errc() || p != id_text.data() + id_text.size() || id <= 0) {
      return error_response(Errc::invalid_argument, "'" + id_text + "' is not a job id (a positive number)");
    }
    auto job = db_->job(id);
    if (job.has_error()) return error_response(Errc::io, job.error().message);
    if (!job.value() || !visible(*job.value())) {
      return error_response(Errc::not_found, "there is no job #" + id_text);
    }
    return json_response(200, job_json(*job.value()));
  }
  JobFilter f;
  if (auto state = query_param(req.query, "state"); !state.empty()) {
    for (auto s : {JobState::queued, JobState::running, JobState::done, JobState::dead, JobState::cancelled}) {
      if (job_state_name(s) == state) f.state = s;
    }
    if (!f.state) {
      return error_response(Errc::invalid_argument,
                            "state must be one of queued, running, done, dead, cancelled (got '" + state + "')");
    }
  }
  f.workspace = query_param(req.query, "workspace");
  if (auto v = query_param(req.query, "limit"); !v.empty()) {
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), f.limit);
    if (ec != std::errc() || p != v.data() + v.size() || f.limit < 1 || f.limit > 1000) {
      return error_response(Errc::invalid_argument, "limit must be a number from 1 to 1000");
    }
  }
  if (auto v = query_param(req.query, "before"); !v.empty()) {
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), f.before_id);
    if (ec != std::errc() || p != v.data() + v.size() || f.before_id <= 0) {
      return error_response(Errc::invalid_argument, "before must be a job id (the \"next\" of the last page)");
    }
  }
  auto list = db_->jobs(f);
  if (list.has_error()) return error_response(Errc::io, list.error().message);
  json out = json::array();
  for (const auto& j : list.value()) {
    if (visible(j)) out.push_back(job_json(j));
  }
  json next = nullptr;
  if (static_cast<int>(list.value().size()) == f.limit && !list.value().empty()) next = list.value().back().id;
  return json_response(200, {{"jobs", out}, {"next", next}});
}

}  // namespace ck
