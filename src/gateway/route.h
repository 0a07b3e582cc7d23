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
  dashboard_elsewhere,  // /monitor/... on a host that is not gateway.control_host: 404
  control_host_only,    // anything but /monitor/... and / on the control host: 404
};

/// The host-based part of routing (DESIGN.md "Gateway routing"): gateway.domain and
/// gateway.control_host, normalised (lower case, no trailing dot, no port). Empty = unset.
struct HostRouting {
  std::string domain;
  std::string control_host;
};

/// "Name.Example.Test.:8080" -> "name.example.test": the port (also after "[v6]") and one
/// trailing dot dropped, lower-cased. Empty for an empty or malformed Host.
std::string normalize_host(std::string_view host_header);

struct RouteDecision {
  RouteKind kind = RouteKind::bad_request;
  std::string workspace;        // workspace or not_found: the name
  std::string upstream_target;  // workspace: "/rest?query"
  std::string prefix;           // workspace: "/name", or "" for www at the root
  std::string location;         // redirect: where to; dashboard_elsewhere: the control host
  bool by_host = false;         // workspace or not_found: named by the Host header
};

/// Decides where `target` ("/path?query") goes. `exists(name)` says whether a workspace of
/// that name is known.
RouteDecision route_request(std::string_view target,
                            const std::function<bool(std::string_view)>& exists);

/// The same with the Host header: on the control host only /monitor/... (and / redirecting to
/// /monitor/); `<name>.<domain>` is workspace <name> at its root for every path (nothing
/// stripped, no prefix; with a control host, /monitor/... there is dashboard_elsewhere);
/// `<domain>` and any other host route by path, where /monitor/... is dashboard_elsewhere when a
/// control host is set.
RouteDecision route_request(std::string_view host_header, std::string_view target,
                            const HostRouting& hosts,
                            const std::function<bool(std::string_view)>& exists);

/// A workspace in "prefix": "keep" mode (workspace.json): `d`, a workspace decision, is
/// rewritten so that the app sees its base /<name>/. By path the target goes on unchanged
/// (/<name>/rest?query; X-Forwarded-Prefix stays). By host a target already under /<name>/, or
/// exactly /<name>, goes on as is, and any other gets /<name> in front (<name>.<domain>/ shows
/// the app, and its own /<name>/... URLs keep working). www (at the root) is left alone.
void keep_prefix(RouteDecision& d);

/// True for a files API upload: PUT /monitor/api/v1/workspaces/<name>/files/<path> (the target
/// may carry a query). Such a body may be as large as gateway.max_file_body. Pure.
bool is_files_upload(std::string_view method, std::string_view target);

/// True for a deploy's tar: PUT /monitor/api/v1/workspaces/<name>/source (the target may carry
/// a query). Such a body may be as large as gateway.max_body. Pure.
bool is_source_upload(std::string_view method, std::string_view target);

/// True for a git push or fetch body: POST /monitor/git/<name>.git/git-receive-pack or
/// git-upload-pack. Such a body (a pack) may be as large as gateway.max_body. Pure.
bool is_git_upload(std::string_view method, std::string_view target);

}  // namespace ck
