#include "api/api.h"

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "core/names.h"
#include "http/url.h"

namespace ck {
using json = nlohmann::json;

namespace {

constexpr std::string_view kApi = "/monitor/api/v1";

http::Response json_response(int status, const json& body) {
  http::Response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

std::string activity_of(const WorkspaceView& w, const Snapshot& snap) {
  return w.activity ? w.activity->level(snap.idle_after) : "idle";
}

json workspace_json(const WorkspaceView& w, const Snapshot& snap) {
  json j = {
      {"name", w.name},
      {"type", w.type},
      {"matched", w.matched},
      {"status", w.status},
      {"activity", activity_of(w, snap)},
      {"url", w.name == "www" ? "/" : "/" + w.name + "/"},
      {"public", w.is_public},
      {"description", w.description},
      {"icon", w.icon},
      {"restarts", w.restarts},
  };
  if (!w.phase.empty()) j["phase"] = w.phase;
  if (w.port > 0) j["port"] = w.port;
  if (w.pid > 0) j["pid"] = w.pid;
  if (!w.error.empty()) j["error"] = w.error;
  if (!w.log_tail.empty()) j["log_tail"] = w.log_tail;
  return j;
}

long rss_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  long pages = 0, rss = 0;
  if (std::fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
  std::fclose(f);
  return rss * sysconf(_SC_PAGESIZE);
}

}  // namespace

int http_status_for(Errc code) {
  switch (code) {
    case Errc::invalid_argument: return 400;
    case Errc::not_found: return 404;
    case Errc::already_exists: return 409;
    case Errc::forbidden: return 403;
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

http::Response ControlApi::handle(const http::Request& req) const {
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

  if (path == "/monitor/healthz") {
    if (!read) return method_not_allowed("GET");
    return json_response(200, {{"status", "ok"}, {"workspaces", snap->workspaces.size()}});
  }
  if (path == std::string(kApi) + "/workspaces") {
    if (!read) return method_not_allowed("GET");
    json list = json::array();
    for (const auto& w : snap->workspaces) list.push_back(workspace_json(w, *snap));
    return json_response(200, {{"workspaces", list}, {"next", nullptr}});
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
      return json_response(200, {{"name", w->name}, {"status", w->status}, {"activity", activity_of(*w, *snap)},
                                 {"error", w->error}, {"restarts", w->restarts},
                                 {"runtime", snap->runtime_kind}});
    }
    return error_response(Errc::not_found, "no such endpoint: " + path);
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
    if (!snap->storage_error.empty()) j["storage_error"] = snap->storage_error;
    return json_response(200, j);
  }
  return error_response(Errc::not_found, "no such endpoint: " + req.method + " " + path +
                                             " (the API lives under " + std::string(kApi) + ")");
}

}  // namespace ck
