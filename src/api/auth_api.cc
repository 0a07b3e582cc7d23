// The API's secured part: who is calling (Authorization: Bearer <token>, or the ck_session
// cookie with X-CSRF-Token on mutations), what they may do (read < deploy < admin), and the
// endpoints that need it: /auth/login|logout|me, /users, /tokens, /audit and a workspace's
// start|stop|restart and logs. Every mutation under /monitor/api/v1 passes the check here
// (POST /storage/events too, though it is not audited) and every one served here
// writes an audit entry. GETs elsewhere stay readable without credentials for now.
//
// Runs on gateway threads. Auth calls block on SQLite on the thread that serves the request;
// login and user creation (argon2id, ~100 ms) run on the API's worker thread and answer through
// a stream.

#include <fmt/format.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "api/api.h"
#include "api/respond.h"
#include "api/auth_http.h"
#include "api/poller.h"
#include "auth/auth.h"
#include "auth/authorize.h"
#include "core/names.h"
#include "core/units.h"
#include "http/stream.h"
#include "http/url.h"

namespace ck {

using api::body_object;
using api::json_response;
using api::method_not_allowed;
using api::no_content;
using api::string_member;
using json = nlohmann::json;

namespace {

constexpr std::string_view kApi = "/monitor/api/v1";
constexpr int kDefaultTail = 200;
constexpr int kMaxTail = 5000;
constexpr std::size_t kMaxLogRead = 8u << 20;  // the end of a log read for ?tail
// A login body holds a name (<= 64 bytes) and a password (<= 1 KiB): anything much bigger is
// refused before it is copied, parsed, hashed or counted (issue 13, row 7).
constexpr std::size_t kMaxLoginBody = 8u << 10;



http::Response error_of(Errc code, const std::string& message) {
  auto r = error_response(code, message);
  if (code == Errc::unauthenticated) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

http::Response error_of(const Error& e) { return error_of(e.code, e.message); }


// A query parameter's decoded value ("" if absent).
std::string query_param(const std::string& query, std::string_view key) {
  return http::query_param(query, key).value_or("");
}

json scopes_json(const auth::Scopes& s) {
  json out = json::array();
  const std::string all = s.str();
  std::string_view text = all;
  while (!text.empty()) {
    auto comma = text.find(',');
    out.push_back(std::string(text.substr(0, comma)));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

std::string role_of(const auth::Principal& p) {
  return std::string(
      auth::role_name(p.scopes.has(auth::Scope::admin) ? auth::Role::admin : auth::Role::member));
}

// Row 3 of issue 13: without gateway.control_host every workspace shares the dashboard's origin,
// so a page in one could use a logged-in admin's cookie. Cookie logins are then for a
// single-user setup only.
constexpr std::string_view kSharedOrigin =
    "dashboard logins are turned off: this control plane shares its origin with the workspaces "
    "and has more than one user, so a workspace's page could act as whoever is logged in. The "
    "operator must set gateway.control_host (CK_GATEWAY_CONTROL_HOST) to give the dashboard a "
    "host of its own; API tokens (Authorization: Bearer) still work";

// More than one user: the users table is the authority ("one user" = at most one row).
bool several_users(auth::Auth& a) {
  auto users = a.list_users();
  return users.has_error() || users.value().size() > 1;  // unreadable: assume the worst
}

// Who called, and with which session (empty for a bearer token).
struct Caller {
  auth::Principal principal;
  std::string session;
};

class Secured {
 public:
  /// `shared_origin`: no gateway.control_host, so sessions are refused once there are several
  /// users (kSharedOrigin).
  Secured(auth::Auth& a, const http::Request& req, bool shared_origin = false)
      : auth_(a), req_(req), shared_origin_(shared_origin) {}

  /// Errc::forbidden with kSharedOrigin when a cookie login may not be used here.
  Result<void> sessions_allowed() {
    if (shared_origin_ && several_users(auth_)) return fail(Errc::forbidden, std::string(kSharedOrigin));
    return outcome::success();
  }

  // The caller's credentials, checked: a bearer token, else the session cookie.
  Result<Caller> authenticate() {
    auto authorization = req_.header("Authorization");
    if (!authorization.empty()) {
      auto token = bearer_token(authorization);
      if (!token) {
        return fail(Errc::unauthenticated, "the Authorization header must be 'Bearer <token>'");
      }
      BOOST_OUTCOME_TRY(p, auth_.verify_token(*token));
      return Caller{std::move(p), ""};
    }
    auto cookie = cookie_value(req_.header("Cookie"), auth::session_cookie_name(req_.tls));
    if (!cookie || cookie->empty()) {
      return fail(Errc::unauthenticated,
                  "this needs credentials: an API token (Authorization: Bearer <token>) or a "
                  "dashboard login (POST " +
                      std::string(kApi) + "/auth/login)");
    }
    BOOST_OUTCOME_TRY(sessions_allowed());
    auto p = auth_.lookup_session(*cookie);
    if (p.has_error()) {
      return fail(Errc::unauthenticated, "the login session has expired or ended; log in again");
    }
    return Caller{std::move(p.value()), *cookie};
  }

  // authenticate(), then the scope, then (for a mutation with a cookie) the CSRF token.
  Result<Caller> require(auth::Scope scope) {
    BOOST_OUTCOME_TRY(caller, authenticate());
    if (!caller.principal.scopes.has(scope)) {
      return fail(Errc::forbidden,
                  fmt::format("{} may not do this: it needs the '{}' scope (it has {})",
                              caller.principal.label(), auth::scope_name(scope),
                              caller.principal.scopes.str()));
    }
    bool mutation = req_.method != "GET" && req_.method != "HEAD";
    if (mutation && !caller.session.empty() &&
        !auth::Auth::verify_csrf(caller.session, req_.header("X-CSRF-Token"))) {
      return fail(Errc::forbidden,
                  "missing or wrong X-CSRF-Token header (a logged-in session must send the "
                  "\"csrf\" value from login or GET " +
                      std::string(kApi) + "/auth/me)");
    }
    return caller;
  }

  void audit(const Caller& c, const std::string& action, const std::string& target,
             const json& detail = json::object()) {
    (void)auth_.audit(c.principal.label(), action, target, detail.dump(), req_.client_ip);
  }

  auth::Auth& service() { return auth_; }

 private:
  auth::Auth& auth_;
  const http::Request& req_;
  bool shared_origin_ = false;
};

json user_json(const auth::UserInfo& u) {
  return {{"name", u.name},
          {"role", std::string(auth::role_name(u.role))},
          {"created_ms", u.created_ms}};
}

// The {"name", "password"} of a login or a new user.
Result<std::pair<std::string, std::string>> name_and_password(const json& doc) {
  BOOST_OUTCOME_TRY(name, string_member(doc, "name"));
  BOOST_OUTCOME_TRY(password, string_member(doc, "password"));
  return std::pair{std::move(name), std::move(password)};
}

http::Response login(Secured& s, const http::Request& req) {
  auto doc = body_object(req);
  if (doc.has_error()) return error_of(doc.error());
  auto creds = name_and_password(doc.value());
  if (creds.has_error()) return error_of(creds.error());
  const auto& [name, password] = creds.value();
  if (auto allowed = s.sessions_allowed(); allowed.has_error()) return error_of(allowed.error());
  auto session = s.service().login(name, password, req.client_ip);
  if (session.has_error()) {
    if (session.error().code == Errc::rate_limited) {
      auto wait = s.service().limiter().blocked(name, req.client_ip);
      auto seconds = wait ? std::max<std::int64_t>(wait->count(), 1) : 60;
      auto r = error_of(Errc::rate_limited,
                        fmt::format("too many login attempts; try again in {} s", seconds));
      r.headers.emplace_back("Retry-After", std::to_string(seconds));
      return r;
    }
    if (session.error().code == Errc::unauthenticated) {
      return error_of(Errc::unauthenticated, "wrong user name or password");
    }
    return error_of(session.error());
  }
  const auto& ns = session.value();
  auto max_age = std::chrono::seconds(
      std::max<std::int64_t>((ns.expires_ms - s.service().now_ms()) / 1000, 1));
  auto r =
      json_response(200, {{"user", {{"name", ns.principal.name}, {"role", role_of(ns.principal)}}},
                          {"csrf", ns.csrf}});
  r.headers.emplace_back("Set-Cookie", auth::session_cookie(ns.id, max_age, req.tls));
  return r;
}

http::Response logout(Secured& s, const http::Request& req) {
  auto cleared = no_content();
  cleared.headers.emplace_back("Set-Cookie", auth::clear_session_cookie(req.tls));
  auto caller = s.authenticate();
  if (caller.has_error() || caller.value().session.empty()) return cleared;  // nothing to end
  if (!auth::Auth::verify_csrf(caller.value().session, req.header("X-CSRF-Token"))) {
    return error_of(Errc::forbidden, "missing or wrong X-CSRF-Token header");
  }
  (void)s.service().destroy_session(caller.value().session);
  s.audit(caller.value(), "logout", caller.value().principal.name);
  return cleared;
}

http::Response me(Secured& s) {
  auto caller = s.authenticate();
  if (caller.has_error()) return error_of(caller.error());
  const auto& c = caller.value();
  if (!c.session.empty()) {
    return json_response(200,
                         {{"user", {{"name", c.principal.name}, {"role", role_of(c.principal)}}},
                          {"csrf", auth::Auth::csrf_token(c.session)}});
  }
  return json_response(
      200, {{"token",
             {{"id", c.principal.id}, {"name", c.principal.name}, {"scopes", scopes_json(c.principal.scopes)}}}});
}

http::Response users(Secured& s, const http::Request& req) {
  auto caller = s.require(auth::Scope::admin);
  if (caller.has_error()) return error_of(caller.error());
  if (req.method == "GET" || req.method == "HEAD") {
    auto list = s.service().list_users();
    if (list.has_error()) return error_of(list.error());
    json out = json::array();
    for (const auto& u : list.value()) out.push_back(user_json(u));
    return json_response(200, {{"users", out}});
  }
  auto doc = body_object(req);
  if (doc.has_error()) return error_of(doc.error());
  auto creds = name_and_password(doc.value());
  if (creds.has_error()) return error_of(creds.error());
  const auto& [name, password] = creds.value();
  std::string role_text = "member";
  if (doc.value().contains("role")) {
    auto r = string_member(doc.value(), "role");
    if (r.has_error()) return error_of(r.error());
    role_text = r.value();
  }
  auto role = auth::parse_role(role_text);
  if (!role) return error_of(Errc::invalid_argument, "\"role\" must be \"admin\" or \"member\"");
  auto user = s.service().create_user(name, password, *role);
  if (user.has_error()) return error_of(user.error());
  s.audit(caller.value(), "user.create", user.value().name, {{"role", role_text}});
  return json_response(201, {{"user", user_json(user.value())}});
}

// The admin scope manages every token; a member's login session its own (bound to the member,
// scopes up to deploy). Other tokens manage none (a stolen token must not mint lasting ones).
http::Response tokens(Secured& s, const http::Request& req, const std::string& id) {
  auto caller = s.require(auth::Scope::read);
  if (caller.has_error()) return error_of(caller.error());
  const auth::Principal& who = caller.value().principal;
  const bool admin = who.scopes.has(auth::Scope::admin);
  // Any token may revoke itself (`cloudyknight logout`): it only gives up its own power.
  const bool self_revoke = req.method == "DELETE" && !id.empty() && id == who.id &&
                           who.kind == auth::PrincipalKind::token;
  if (!admin && who.kind != auth::PrincipalKind::user && !self_revoke) {
    return error_of(Errc::forbidden,
                    fmt::format("{} may not manage tokens: it needs the 'admin' scope, or a "
                                "dashboard login to manage its user's own tokens",
                                who.label()));
  }
  // Whose tokens it manages ("" = all; a token revoking itself is named by its own id).
  const std::string only = admin || self_revoke ? std::string() : who.user_id;
  if (!id.empty()) {
    if (req.method != "DELETE") return method_not_allowed(req, "DELETE");
    auto r = s.service().revoke_token(id, only);
    if (r.has_error()) return error_of(r.error());
    s.audit(caller.value(), "token.revoke", id);
    return no_content();
  }
  if (req.method == "GET" || req.method == "HEAD") {
    auto list = s.service().list_tokens(only);
    if (list.has_error()) return error_of(list.error());
    json out = json::array();
    for (const auto& t : list.value()) {
      out.push_back({{"id", t.id},
                     {"name", t.name},
                     {"kind", std::string(auth::principal_kind_name(t.kind))},
                     {"scopes", scopes_json(t.scopes)},
                     {"created_ms", t.created_ms},
                     {"last_used_ms", t.last_used_ms},
                     {"expires_ms", t.expires_ms},
                     {"revoked_ms", t.revoked_ms}});
    }
    return json_response(200, {{"tokens", out}});
  }
  if (req.method != "POST") return method_not_allowed(req, "GET, POST");
  auto doc = body_object(req);
  if (doc.has_error()) return error_of(doc.error());
  auto name = string_member(doc.value(), "name");
  if (name.has_error()) return error_of(name.error());
  auto scopes_it = doc.value().find("scopes");
  if (scopes_it == doc.value().end() || !scopes_it->is_array()) {
    return error_of(Errc::invalid_argument,
                    "\"scopes\" must be an array of \"read\", \"deploy\", \"admin\"");
  }
  std::string scope_text;
  for (const auto& v : *scopes_it) {
    if (!v.is_string()) return error_of(Errc::invalid_argument, "each scope must be a string");
    scope_text += (scope_text.empty() ? "" : ",") + v.get<std::string>();
  }
  auto scopes = auth::Scopes::parse(scope_text);
  if (scopes.has_error()) return error_of(scopes.error());
  std::chrono::milliseconds ttl{0};
  if (doc.value().contains("ttl") && !doc.value()["ttl"].is_null()) {
    auto t = string_member(doc.value(), "ttl");
    if (t.has_error()) return error_of(t.error());
    auto d = parse_duration(t.value());
    if (d.has_error() || d.value().count() <= 0) {
      return error_of(Errc::invalid_argument,
                      "\"ttl\" must be a duration such as \"30d\" or \"12h\"");
    }
    ttl = d.value();
  }
  // Bound to the user who makes it (the admin token binds nothing): it acts as them.
  auto token = s.service().create_token(name.value(), scopes.value(), ttl, who.user_id);
  if (token.has_error()) return error_of(token.error());
  s.audit(caller.value(), "token.create", token.value().id,
          {{"name", name.value()}, {"scopes", scopes.value().str()}});
  return json_response(201, {{"id", token.value().id},
                             {"token", token.value().plaintext},
                             {"name", name.value()},
                             {"scopes", scopes_json(scopes.value())}});
}

http::Response audit_log(Secured& s, const http::Request& req) {
  auto caller = s.require(auth::Scope::admin);
  if (caller.has_error()) return error_of(caller.error());
  int limit = 100;
  if (auto v = query_param(req.query, "limit"); !v.empty()) {
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), limit);
    if (ec != std::errc() || p != v.data() + v.size() || limit < 1 || limit > 1000) {
      return error_of(Errc::invalid_argument, "limit must be a number from 1 to 1000");
    }
  }
  std::int64_t before = 0;
  if (auto v = query_param(req.query, "before"); !v.empty()) {
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), before);
    if (ec != std::errc() || p != v.data() + v.size() || before <= 0) {
      return error_of(Errc::invalid_argument,
                      "before must be an entry id (the \"next\" of the last page)");
    }
  }
  auto list = s.service().audit_log(limit, before);
  if (list.has_error()) return error_of(list.error());
  json out = json::array();
  for (const auto& e : list.value()) {
    auto detail = json::parse(e.detail, nullptr, false);
    out.push_back({{"id", e.id},
                   {"at_ms", e.at_ms},
                   {"principal", e.principal},
                   {"action", e.action},
                   {"target", e.target},
                   {"detail", detail.is_discarded() ? json::object() : detail},
                   {"ip", e.ip}});
  }
  json next = nullptr;
  if (static_cast<int>(list.value().size()) == limit) next = list.value().back().id;
  return json_response(200, {{"entries", out}, {"next", next}});
}

}  // namespace

std::optional<auth::Principal> credentials_of(auth::Auth& auth, std::string_view authorization,
                                              std::string_view cookie, bool tls) {
  if (authorization.empty() && !cookie_value(cookie, auth::session_cookie_name(tls))) return std::nullopt;
  http::Request req;
  req.tls = tls;
  if (!authorization.empty()) req.headers.emplace_back("Authorization", std::string(authorization));
  if (!cookie.empty()) req.headers.emplace_back("Cookie", std::string(cookie));
  auto caller = Secured(auth, req).authenticate();
  if (caller.has_error()) return std::nullopt;
  return std::move(caller.value().principal);
}

std::optional<auth::Principal> ControlApi::principal_of(const http::Request& req) const {
  if (!services_.auth) return std::nullopt;
  auto authorization = req.header("Authorization");
  // A session cookie on the workspaces' origin counts for nothing once there are several users
  // (kSharedOrigin), reads included: a session made while there was one user must not let a
  // workspace's page read what its holder may see.
  if (authorization.empty() && !req.header("Cookie").empty() && info_.control_host.empty() &&
      several_users(*services_.auth)) {
    return std::nullopt;
  }
  return credentials_of(*services_.auth, authorization, req.header("Cookie"), req.tls);
}

auth::Decision ControlApi::decide(const auth::Principal* who, const std::string& name,
                                  const WorkspaceView* w, auth::Access what) const {
  if (!services_.auth) return auth::Decision::allowed;  // no authentication: nothing is private
  return auth::authorize(who, services_.auth->owner_record(name, w ? w->is_public : false), what);
}

std::optional<http::Response> ControlApi::handle_secured(const http::Request& req,
                                                         const Snapshot& snap) const {
  const std::string api(kApi);
  const std::string& path = req.path;
  if (!path.starts_with(api + "/")) return std::nullopt;
  const bool read = req.method == "GET" || req.method == "HEAD";
  const std::string rest = path.substr(api.size() + 1);

  // A workspace's actions and logs: /workspaces/{name}/{start|stop|restart|logs}.
  std::optional<WorkspaceAction> action;
  bool logs = false, run = false, sync = false, files = false, restore = false, source = false;
  std::string ws_name, file_path;
  if (rest.starts_with("workspaces/")) {
    std::string tail = rest.substr(std::string_view("workspaces/").size());
    auto slash = tail.find('/');
    if (slash != std::string::npos) {
      std::string sub = tail.substr(slash + 1);
      ws_name = tail.substr(0, slash);
      if (sub == "start") action = WorkspaceAction::start;
      if (sub == "stop") action = WorkspaceAction::stop;
      if (sub == "restart") action = WorkspaceAction::restart;
      logs = sub == "logs";
      run = sub == "run";
      sync = sub == "sync";
      restore = sub == "restore";
      source = sub == "source";
      files = sub.starts_with("files/");
      if (files) file_path = sub.substr(std::string_view("files/").size());
    }
  }
  bool own = rest == "auth/login" || rest == "auth/logout" || rest == "auth/me" ||
             rest == "users" || rest == "tokens" || rest.starts_with("tokens/") ||
             rest == "audit" || rest == "logs" || rest == "backups" || rest == "cleanup" || action || logs || run || sync ||
             files || restore || source;
  if (!own && read) return std::nullopt;
  if (rest == "git/hook") return std::nullopt;  // signed by the git host (HMAC), not a token
  if (rest == "storage/events") {
    // A bucket notification only asks for a listing, but like every mutation it needs a token
    // that may deploy (MinIO sends one with `auth_token`). It is not audited: a bulk upload
    // sends one per object, and the pulls it causes are logged.
    if (!services_.auth) return std::nullopt;
    Secured s(*services_.auth, req);
    if (auto caller = s.require(auth::Scope::deploy); caller.has_error()) return error_of(caller.error());
    return std::nullopt;
  }
  if (!services_.auth) {
    return error_of(Errc::unavailable, "this control plane has no authentication service");
  }
  const bool shared_origin = info_.control_host.empty();
  Secured s(*services_.auth, req, shared_origin);

  if (!own) {  // any other mutation: the route decides the rest once the caller may deploy
    auto caller = s.require(auth::Scope::deploy);
    if (caller.has_error()) return error_of(caller.error());
    return workspace_mutation(req, snap, caller.value().principal);
  }
  // What hashes a password (argon2id, ~100 ms of CPU) runs on the API's worker thread, never
  // on a gateway's, and answers through a stream.
  auto on_worker = [&](http::Response (*handler)(Secured&, const http::Request&)) {
    auto st = std::make_shared<http::ResponseStream>();
    worker_->add([st, handler, a = services_.auth, copy = std::make_shared<http::Request>(req),
                  shared = shared_origin] {
      Secured there(*a, *copy, shared);
      auto r = handler(there, *copy);
      st->respond(r);
      return false;  // once
    });
    http::Response res;
    res.stream = st;
    return res;
  };
  if (rest == "auth/login") {
    if (req.method != "POST") return method_not_allowed(req, "POST");
    if (req.body.size() > kMaxLoginBody) {
      return error_of(Errc::invalid_argument,
                      fmt::format("a login body is at most {} bytes: a user name is at most {} "
                                  "bytes and a password at most {}",
                                  kMaxLoginBody, auth::kMaxLoginNameBytes, auth::kMaxPasswordBytes));
    }
    return on_worker(login);
  }
  if (rest == "auth/logout")
    return req.method == "POST" ? logout(s, req) : method_not_allowed(req, "POST");
  if (rest == "auth/me") return read ? me(s) : method_not_allowed(req, "GET");
  if (rest == "users") {
    if (req.method == "POST") return on_worker(users);
    return read ? users(s, req) : method_not_allowed(req, "GET, POST");
  }
  if (rest == "tokens" || rest.starts_with("tokens/")) {
    std::string id = rest.size() > 6 ? rest.substr(7) : "";
    if (rest.starts_with("tokens/") && id.empty())
      return error_of(Errc::not_found, "no token id in " + path);
    return tokens(s, req, id);
  }
  if (rest == "audit") return read ? audit_log(s, req) : method_not_allowed(req, "GET");
  if (rest == "logs") {  // the monitor's own log names every workspace, paths and errors: admins
    if (!read) return method_not_allowed(req, "GET");
    auto caller = s.require(auth::Scope::admin);
    if (caller.has_error()) return error_of(caller.error());
    return monitor_logs(req);
  }
  if (rest == "cleanup") {  // names every workspace's volumes and images, and deletes: admins
    if (!read && req.method != "POST") return method_not_allowed(req, "GET, POST");
    auto caller = s.require(auth::Scope::admin);
    if (caller.has_error()) return error_of(caller.error());
    return cleanup_request(req, [&](json detail) { s.audit(caller.value(), "cleanup.start", "", std::move(detail)); });
  }
  if (rest == "backups") {  // bucket names and snapshot lists: not for anonymous callers
    auto c = s.require(read ? auth::Scope::read : auth::Scope::deploy);
    if (c.has_error()) return error_of(c.error());
    if (read) return backups_status(req, snap, c.value().principal);
    if (req.method != "POST") return method_not_allowed(req, "GET, POST");
    return start_backup(req, snap, c.value().principal,
                        [&](const std::string& target, json detail) { s.audit(c.value(), "backup.start", target, std::move(detail)); });
  }

  // Workspace actions (deploy) and logs (seen like the workspace itself). Credentials and scope
  // first (their answer does not depend on the name), then authorize() on the workspace.
  std::optional<Caller> caller;
  std::optional<auth::Principal> reader;
  if (action || run || sync || restore) {
    if (req.method != "POST") return method_not_allowed(req, "POST");
    auto c = s.require(auth::Scope::deploy);
    if (c.has_error()) return error_of(c.error());
    caller = std::move(c.value());
  } else if (files) {
    // A workspace's source is not public: reading it needs credentials (read scope) even where
    // the workspace is public, writing needs deploy (and CSRF with a cookie).
    if (!read && req.method != "PUT" && req.method != "DELETE") {
      return method_not_allowed(req, "GET, PUT, DELETE");
    }
    auto c = s.require(read ? auth::Scope::read : auth::Scope::deploy);
    if (c.has_error()) return error_of(c.error());
    caller = std::move(c.value());
  } else if (source) {
    // The source's list (names and MD5s) is as private as the files; a deploy needs deploy.
    if (!read && req.method != "PUT") return method_not_allowed(req, "GET, PUT");
    auto c = s.require(read ? auth::Scope::read : auth::Scope::deploy);
    if (c.has_error()) return error_of(c.error());
    caller = std::move(c.value());
  } else if (!read) {
    return method_not_allowed(req, "GET");
  } else {
    reader = principal_of(req);
  }
  auto decoded = http::percent_decode(ws_name);
  if (!decoded)
    return error_of(Errc::invalid_argument, "malformed percent-encoding in the workspace name");
  if (auto v = validate_workspace_name(*decoded); v.has_error()) return error_of(v.error());
  const WorkspaceView* w = snap.find(*decoded);
  if (w) {
    const auth::Principal* who = caller ? &caller->principal : reader ? &*reader : nullptr;
    const bool acting = caller && !((files || source) && read);
    auto d = decide(who, w->name, w, acting ? auth::Access::act : auth::Access::see);
    if (d == auth::Decision::forbidden) {
      return error_of(Errc::forbidden,
                      fmt::format("{} may see '{}' but not act on it", who->label(), w->name));
    }
    if (d != auth::Decision::allowed) w = nullptr;  // as if it did not exist
  }
  if (!w) {
    return error_of(Errc::not_found, "there is no workspace named '" + *decoded + "'; GET " + api +
                                         "/workspaces lists them");
  }
  if (files) {
    const std::string author = caller ? caller->principal.name : std::string();
    return files_request(req, *w, file_path, author, [&](const std::string& verb, json detail) {
      s.audit(*caller, verb, w->name, std::move(detail));
    });
  }
  if (source) {
    return source_request(req, *w, caller->principal.name, [&](json detail) {
      s.audit(*caller, "workspace.deploy", w->name, std::move(detail));
    });
  }
  if (run) {
    return run_command(req, *w, [&](json detail) {
      s.audit(*caller, "workspace.run", w->name, std::move(detail));
    });
  }
  if (sync) {
    s.audit(*caller, "workspace.sync", w->name, json::object());
    return sync_workspace(*w);
  }
  if (restore) {
    return restore_workspace(req, *w, [&](json detail) { s.audit(*caller, "workspace.restore", w->name, std::move(detail)); });
  }
  // ?service=NAME: a compose workspace's service only (its lines are "NAME | ..." in the log).
  const std::string service = logs ? query_param(req.query, "service") : std::string();
  if (logs && query_param(req.query, "follow") == "1") return follow_log(req, *w);
  if (logs) {
    auto tail = parse_tail(query_param(req.query, "tail"), kDefaultTail, kMaxTail);
    if (tail.has_error()) return error_of(tail.error());
    if (!services_.log_path) return error_of(Errc::unavailable, "this control plane keeps no logs");
    if (service.empty()) {
      auto lines = tail_lines(services_.log_path(w->name), static_cast<std::size_t>(tail.value()),
                              kMaxLogRead);
      return json_response(200, {{"name", w->name}, {"lines", lines}});
    }
    const std::string prefix = service + " | ";
    std::vector<std::string> mine;
    for (auto& line : tail_lines(services_.log_path(w->name), std::size_t{1} << 20, kMaxLogRead)) {
      if (line.starts_with(prefix)) mine.push_back(line.substr(prefix.size()));
    }
    if (mine.size() > static_cast<std::size_t>(tail.value())) {
      mine.erase(mine.begin(), mine.end() - tail.value());
    }
    return json_response(200, {{"name", w->name}, {"service", service}, {"lines", mine}});
  }
  const char* verb = *action == WorkspaceAction::start  ? "start"
                     : *action == WorkspaceAction::stop ? "stop"
                                                        : "restart";
  if (!w->runs) {
    return error_of(Errc::conflict,
                    w->is_static
                        ? fmt::format("'{}' is a static workspace: the gateway serves its files, "
                                      "there is no app to {}",
                                      w->name, verb)
                        : fmt::format("'{}' has no app that can run here ({}); nothing to {}",
                                      w->name, w->error, verb));
  }
  if (!services_.act)
    return error_of(Errc::unavailable, "this control plane cannot act on workspaces");
  services_.act(w->name, *action);
  s.audit(*caller, std::string("workspace.") + verb, w->name, {{"status", w->status}});
  return json_response(202, {{"workspace", workspace_json(*w, snap)}});
}

}  // namespace ck
