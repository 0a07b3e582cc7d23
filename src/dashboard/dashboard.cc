#include "dashboard/dashboard.h"

#include <string>

#include "http/url.h"

namespace ck::dashboard {
namespace {

constexpr std::string_view kAssetsPrefix = "/monitor/assets/";

http::Response plain(int status, std::string body) {
  http::Response r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(body);
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return r;
}


http::Response file_response(const http::Request& req, const Asset& a) {
  http::Response r;
  r.headers.emplace_back("ETag", std::string(a.etag));
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("Content-Security-Policy", std::string(kContentSecurityPolicy));
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "same-origin");
  r.content_type = std::string(a.content_type);
  if (http::etag_matches(req.header("If-None-Match"), a.etag)) {
    r.status = 304;
    return r;
  }
  r.status = 200;
  r.body = std::string(a.bytes());
  return r;
}

}  // namespace

const Asset* find(std::string_view name) {
  for (const auto& a : assets()) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

std::optional<http::Response> serve(const http::Request& req) {
  const std::string& path = req.path;
  bool is_index = path == "/monitor/" || path == "/monitor/index.html";
  bool is_asset = path.starts_with(kAssetsPrefix);
  if (path != "/monitor" && !is_index && !is_asset) return std::nullopt;
  if (req.method != "GET" && req.method != "HEAD") {
    auto r =
        plain(405, req.method + " is not allowed on " + path + "; the dashboard answers GET\n");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  if (path == "/monitor") {
    auto r = plain(301, "");
    r.headers.emplace_back("Location", req.query.empty() ? "/monitor/" : "/monitor/?" + req.query);
    return r;
  }
  std::string_view name = is_index ? std::string_view("index.html")
                                   : std::string_view(path).substr(kAssetsPrefix.size());
  const Asset* a = find(name);
  // Assets are flat: a name with a slash (or anything not embedded) is simply not found.
  if (a == nullptr || (is_asset && name == "index.html")) {
    return plain(404, "no dashboard asset named '" + std::string(name) + "'\n");
  }
  return file_response(req, *a);
}

}  // namespace ck::dashboard
