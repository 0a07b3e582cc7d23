#include "gateway/route.h"

#include "core/names.h"
#include "http/url.h"

namespace ck {

RouteDecision route_request(std::string_view target,
                            const std::function<bool(std::string_view)>& exists) {
  RouteDecision d;
  if (target.empty() || target.front() != '/') return d;  // bad_request
  auto [path, query] = http::split_target(target);
  std::string q = query.empty() && target.find('?') == std::string_view::npos
                      ? std::string()
                      : "?" + std::string(query);

  if (path == "/monitor" || path.starts_with("/monitor/")) {
    d.kind = RouteKind::control;
    return d;
  }
  auto to_www = [&] {
    d.kind = RouteKind::workspace;
    d.workspace = std::string(kHomeWorkspace);
    d.upstream_target = std::string(target);
    d.prefix.clear();
    return d;
  };
  if (path == "/") {
    if (exists(kHomeWorkspace)) return to_www();
    d.kind = RouteKind::home;
    return d;
  }
  std::string_view rest = path.substr(1);
  auto slash = rest.find('/');
  std::string_view seg = rest.substr(0, slash);
  bool is_name = is_valid_workspace_name(seg) && seg != kHomeWorkspace;
  if (is_name && exists(seg)) {
    if (slash == std::string_view::npos) {
      d.kind = RouteKind::redirect;
      d.location = "/" + std::string(seg) + "/" + q;
      return d;
    }
    d.kind = RouteKind::workspace;
    d.workspace = std::string(seg);
    d.upstream_target = std::string(rest.substr(slash)) + q;
    d.prefix = "/" + std::string(seg);
    return d;
  }
  // Root files (/style.css) and anything that is not a workspace belong to www, if any.
  if (exists(kHomeWorkspace)) return to_www();
  d.kind = RouteKind::not_found;
  d.workspace = std::string(seg);
  return d;
}

}  // namespace ck
