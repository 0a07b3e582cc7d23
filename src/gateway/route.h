#pragma once
// Route matching for the gateway (DESIGN.md "Gateway routing"). Pure: no I/O, so unit tests
// and the fuzzer call it directly.

#include <functional>
#include <string>
#include <string_view>

namespace ck {

enum class RouteKind {
  control,      // /monitor/... -> control plane
  workspace,    // a workspace; upstream_target is the path the app sees
  redirect,     // /name -> /name/
  home,         // / without a www workspace: the generated home page
  not_found,    // no such workspace
  bad_request,  // not an origin-form target
};

struct RouteDecision {
  RouteKind kind = RouteKind::bad_request;
  std::string workspace;        // workspace or not_found: the name
  std::string upstream_target;  // workspace: "/rest?query"
  std::string prefix;           // workspace: "/name", or "" for www at the root
  std::string location;         // redirect: where to
};

/// Decides where `target` ("/path?query") goes. `exists(name)` says whether a workspace of
/// that name is known.
RouteDecision route_request(std::string_view target,
                            const std::function<bool(std::string_view)>& exists);

}  // namespace ck
