#pragma once
// The control API's routing table: every {method, path template} ControlApi serves. The
// dispatcher's front door (ControlApi::handle, routes.cc) answers 404 for a path that matches
// no template and 405 for a method the path's templates lack, so a handler not listed here is
// unreachable, and openapi_test checks the OpenAPI document lists exactly these routes. Pure.

#include <span>
#include <string>
#include <string_view>

namespace ck {

/// One route. `path` is an OpenAPI path template: "{...}" matches one non-empty segment.
struct Route {
  std::string_view method;  // "GET", "POST", "DELETE" (GET routes also answer HEAD)
  std::string_view path;    // "/monitor/api/v1/workspaces/{name}"; a last "{path}" takes the rest
};

/// Every route, in document order.
std::span<const Route> routes();

/// What the table says about a request line.
struct RouteMatch {
  bool path_known = false;  // some template matches the path
  bool allowed = false;     // ... with this method
  std::string allow;        // the methods the path takes ("GET, POST"), for a 405
};

/// True if `path` matches `tmpl` segment by segment.
bool path_matches(std::string_view tmpl, std::string_view path);

RouteMatch match_route(std::string_view method, std::string_view path);

/// The OpenAPI 3 document (src/api/openapi.json, embedded at build time).
std::string_view openapi_document();

}  // namespace ck
