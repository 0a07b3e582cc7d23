// The routing table, the API's front door (route check, then the handlers, then ETags) and
// GET /monitor/api/v1/openapi.json.

#include "api/routes.h"

#include <algorithm>

#include "api/api.h"
#include "api/openapi.h"
#include "core/hash.h"
#include "http/url.h"

namespace ck {
namespace {

constexpr Route kRoutes[] = {
    {"GET", "/monitor/healthz"},
    {"GET", "/monitor/metrics"},
    {"GET", "/monitor/api/v1/openapi.json"},
    {"GET", "/monitor/api/v1/status"},
    {"GET", "/monitor/api/v1/workspaces"},
    {"POST", "/monitor/api/v1/workspaces"},
    {"GET", "/monitor/api/v1/workspaces/{name}"},
    {"DELETE", "/monitor/api/v1/workspaces/{name}"},
    {"GET", "/monitor/api/v1/workspaces/{name}/status"},
    {"GET", "/monitor/api/v1/workspaces/{name}/history"},
    {"GET", "/monitor/api/v1/workspaces/{name}/logs"},
    {"POST", "/monitor/api/v1/workspaces/{name}/start"},
    {"POST", "/monitor/api/v1/workspaces/{name}/stop"},
    {"POST", "/monitor/api/v1/workspaces/{name}/restart"},
    {"POST", "/monitor/api/v1/workspaces/{name}/run"},
    {"POST", "/monitor/api/v1/workspaces/{name}/sync"},
    {"POST", "/monitor/api/v1/workspaces/{name}/restore"},
    {"GET", "/monitor/api/v1/workspaces/{name}/source"},
    {"PUT", "/monitor/api/v1/workspaces/{name}/source"},
    {"GET", "/monitor/api/v1/workspaces/{name}/files/{path}"},
    {"PUT", "/monitor/api/v1/workspaces/{name}/files/{path}"},
    {"DELETE", "/monitor/api/v1/workspaces/{name}/files/{path}"},
    {"GET", "/monitor/api/v1/templates"},
    {"GET", "/monitor/api/v1/jobs"},
    {"GET", "/monitor/api/v1/jobs/{id}"},
    {"POST", "/monitor/api/v1/storage/events"},
    {"POST", "/monitor/api/v1/git/hook"},
    {"POST", "/monitor/api/v1/auth/login"},
    {"POST", "/monitor/api/v1/auth/logout"},
    {"GET", "/monitor/api/v1/auth/me"},
    {"GET", "/monitor/api/v1/users"},
    {"POST", "/monitor/api/v1/users"},
    {"GET", "/monitor/api/v1/tokens"},
    {"POST", "/monitor/api/v1/tokens"},
    {"DELETE", "/monitor/api/v1/tokens/{id}"},
    {"GET", "/monitor/api/v1/audit"},
    {"GET", "/monitor/api/v1/logs"},
    {"GET", "/monitor/api/v1/backups"},
    {"POST", "/monitor/api/v1/backups"},
    {"GET", "/monitor/api/v1/cleanup"},
    {"POST", "/monitor/api/v1/cleanup"},
    // git's smart HTTP protocol (git_api.cc): {repo} is "<name>.git".
    {"GET", "/monitor/git/{repo}/info/refs"},
    {"POST", "/monitor/git/{repo}/git-upload-pack"},
    {"POST", "/monitor/git/{repo}/git-receive-pack"},
};

// The next '/'-separated segment of `s`, removed from it.
std::string_view next_segment(std::string_view& s) {
  auto slash = s.find('/');
  auto seg = s.substr(0, slash);
  s = slash == std::string_view::npos ? std::string_view() : s.substr(slash + 1);
  return seg;
}

bool is_read(std::string_view method) { return method == "GET" || method == "HEAD"; }


}  // namespace

std::span<const Route> routes() { return kRoutes; }

bool path_matches(std::string_view tmpl, std::string_view path) {
  if (!tmpl.starts_with('/') || !path.starts_with('/')) return false;
  // A last segment "{path}" takes the rest of the path: any depth, empty included.
  const bool rest = tmpl.ends_with("/{path}");
  const auto tmpl_slashes = std::count(tmpl.begin(), tmpl.end(), '/');
  const auto path_slashes = std::count(path.begin(), path.end(), '/');
  if (rest ? path_slashes < tmpl_slashes : path_slashes != tmpl_slashes) return false;
  tmpl.remove_prefix(1);
  path.remove_prefix(1);
  while (!tmpl.empty() || !path.empty()) {
    auto t = next_segment(tmpl);
    auto p = next_segment(path);
    if (rest && tmpl.empty() && t == "{path}") return true;
    bool param = t.size() > 2 && t.front() == '{' && t.back() == '}';
    if (param ? p.empty() : t != p) return false;
  }
  return true;
}

RouteMatch match_route(std::string_view method, std::string_view path) {
  RouteMatch m;
  for (const auto& r : kRoutes) {
    if (!path_matches(r.path, path)) continue;
    m.path_known = true;
    if (r.method == method || (method == "HEAD" && r.method == "GET")) m.allowed = true;
    if (m.allow.find(r.method) == std::string::npos) {
      m.allow += (m.allow.empty() ? "" : ", ") + std::string(r.method);
    }
  }
  return m;
}

std::string_view openapi_document() {
  auto all = openapi::assets();
  return all.empty() ? std::string_view("{}") : all.front().bytes();
}

http::Response ControlApi::handle(const http::Request& req) const {
  auto m = match_route(req.method, req.path);
  if (!m.path_known) {
    return error_response(Errc::not_found,
                          "no such route: " + req.method + " " + req.path + " (GET " +
                              "/monitor/api/v1/openapi.json lists the API's routes)");
  }
  if (!m.allowed) {
    auto r = error_response(Errc::invalid_argument,
                            req.method + " is not allowed on " + req.path + "; use " + m.allow);
    r.status = 405;
    r.headers.emplace_back("Allow", m.allow);
    return r;
  }
  http::Response r;
  if (req.path == "/monitor/api/v1/openapi.json") {
    r.body = std::string(openapi_document());
  } else {
    r = dispatch(req);
  }
  // Every 200 JSON answer to a GET gets a strong ETag (a hash of the body) and is revalidated
  // on each use; If-None-Match with it answers 304 without a body.
  if (!is_read(req.method) || r.stream || r.status != 200 ||
      !r.content_type.starts_with("application/json")) {
    return r;
  }
  // A handler's own validator stays (a file of the files API: the ETag of its content).
  for (const auto& h : r.headers) {
    if (h.first == "ETag") return r;
  }
  // What belongs to one caller (its session and CSRF token, users, tokens, the audit log) stays
  // out of every cache (the handlers' no-store); the rest is revalidated with its ETag.
  for (std::string_view personal : {"/monitor/api/v1/auth/", "/monitor/api/v1/users", "/monitor/api/v1/tokens",
                                    "/monitor/api/v1/audit", "/monitor/api/v1/logs"}) {
    if (req.path.starts_with(personal)) return r;
  }
  std::string etag = "\"" + stable_hash(r.body) + "\"";
  std::erase_if(r.headers, [](const auto& h) { return h.first == "Cache-Control"; });
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("ETag", etag);
  r.headers.emplace_back("Vary", "Authorization, Cookie");  // private workspaces show to callers with credentials
  if (http::etag_matches(req.header("If-None-Match"), etag)) {
    r.status = 304;
    r.body.clear();
  }
  return r;
}

}  // namespace ck
