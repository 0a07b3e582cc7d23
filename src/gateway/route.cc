#include "gateway/route.h"

#include <optional>

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

std::string normalize_host(std::string_view h) {
  constexpr std::size_t kMaxHost = 255;
  if (h.empty() || h.size() > kMaxHost + 6) return {};
  if (h.front() == '[') {  // an IPv6 literal: never a name under the domain
    auto close = h.find(']');
    if (close == std::string_view::npos) return {};
    h = h.substr(0, close + 1);
  } else if (auto colon = h.rfind(':'); colon != std::string_view::npos) {
    h = h.substr(0, colon);
  }
  if (!h.empty() && h.back() == '.') h.remove_suffix(1);
  if (h.empty() || h.size() > kMaxHost) return {};
  std::string out;
  out.reserve(h.size());
  for (char c : h) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '/' || c == '\\' || c == '@') return {};
    out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  }
  return out;
}

RouteDecision route_request(std::string_view host_header, std::string_view target,
                            const HostRouting& hosts,
                            const std::function<bool(std::string_view)>& exists) {
  if (hosts.domain.empty() && hosts.control_host.empty()) return route_request(target, exists);
  RouteDecision d;
  if (target.empty() || target.front() != '/') return d;  // bad_request
  std::string_view path = http::split_target(target).first;
  const bool monitor = path == "/monitor" || path.starts_with("/monitor/");
  const std::string host = normalize_host(host_header);
  if (!hosts.control_host.empty() && !host.empty() && host == hosts.control_host) {
    if (monitor) {
      d.kind = RouteKind::control;
    } else if (path == "/") {
      d.kind = RouteKind::redirect;
      d.location = "/monitor/";
    } else {
      d.kind = RouteKind::control_host_only;
      d.location = hosts.control_host;
    }
    return d;
  }
  auto elsewhere = [&] {
    d.kind = RouteKind::dashboard_elsewhere;
    d.location = hosts.control_host;
    return d;
  };
  const std::string& domain = hosts.domain;
  if (!domain.empty() && host.size() > domain.size() + 1 && host.ends_with(domain) &&
      host[host.size() - domain.size() - 1] == '.') {
    std::string name = host.substr(0, host.size() - domain.size() - 1);
    if (monitor && !hosts.control_host.empty()) return elsewhere();
    d.by_host = true;
    d.workspace = name;
    if (is_valid_workspace_name(name) && exists(name)) {
      d.kind = RouteKind::workspace;
      d.upstream_target = std::string(target);
      d.prefix.clear();
      return d;
    }
    if (name != kHomeWorkspace) {
      d.kind = RouteKind::not_found;
      return d;
    }
    // www.<domain> without a www workspace: the same as <domain> itself.
    d = RouteDecision{};
  }
  if (monitor && !hosts.control_host.empty()) return elsewhere();
  return route_request(target, exists);
}

void keep_prefix(RouteDecision& d) {
  if (d.kind != RouteKind::workspace || d.workspace == kHomeWorkspace) return;
  std::string base = "/" + d.workspace;
  if (!d.by_host) {
    if (d.prefix == base) d.upstream_target = base + d.upstream_target;
    return;
  }
  std::string_view path = http::split_target(d.upstream_target).first;
  if (path == base || (path.starts_with(base) && path[base.size()] == '/')) return;
  d.upstream_target = base + d.upstream_target;
}

namespace {

// What follows /monitor/api/v1/workspaces/<name>/ in a PUT's target (the query left out), or
// nullopt for any other request.
std::optional<std::string_view> put_under_workspace(std::string_view method, std::string_view target) {
  constexpr std::string_view kPrefix = "/monitor/api/v1/workspaces/";
  if (method != "PUT" || !target.starts_with(kPrefix)) return std::nullopt;
  target.remove_prefix(kPrefix.size());
  target = target.substr(0, target.find('?'));
  auto slash = target.find('/');
  if (slash == 0 || slash == std::string_view::npos) return std::nullopt;
  return target.substr(slash + 1);
}

}  // namespace

bool is_files_upload(std::string_view method, std::string_view target) {
  auto sub = put_under_workspace(method, target);
  return sub && sub->starts_with("files/");
}

bool is_source_upload(std::string_view method, std::string_view target) {
  auto sub = put_under_workspace(method, target);
  return sub && *sub == "source";
}

bool is_git_upload(std::string_view method, std::string_view target) {
  constexpr std::string_view kPrefix = "/monitor/git/";
  if (method != "POST" || !target.starts_with(kPrefix)) return false;
  target.remove_prefix(kPrefix.size());
  if (target.find('?') != std::string_view::npos) return false;
  auto slash = target.find('/');
  if (slash == 0 || slash == std::string_view::npos) return false;
  auto service = target.substr(slash + 1);
  return service == "git-receive-pack" || service == "git-upload-pack";
}

}  // namespace ck
