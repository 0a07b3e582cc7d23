// The remote client's login, logout and contexts (issue 18): which server the API commands talk
// to, and with what token (contexts.yaml, CK_URL/CK_TOKEN/CK_CACERT).
#include <fmt/format.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/remote_cmd.h"
#include "cli/remote_internal.h"

namespace ck::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// Reads one line from stdin; without echo when `hide` and stdin is a terminal.
Result<std::string> read_line(const std::string& prompt, bool hide) {
  bool tty = ::isatty(STDIN_FILENO) == 1;
  termios old{};
  bool restore = false;
  // Echo goes off before the prompt shows, so nothing typed after it is ever echoed.
  if (hide && tty && ::tcgetattr(STDIN_FILENO, &old) == 0) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ECHONL;
    restore = ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
  }
  if (!prompt.empty()) std::cerr << prompt << std::flush;
  std::string line;
  bool too_long = false, got = false;
  for (;;) {
    char c = 0;
    ssize_t n = ::read(STDIN_FILENO, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got = true;
    if (c == '\n') break;
    if (line.size() >= kMaxSecret) {
      too_long = true;
      continue;
    }
    line += c;
  }
  if (restore) ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
  if (too_long)
    return fail(Errc::invalid_argument, fmt::format("the input is over {} bytes", kMaxSecret));
  if (!got) return fail(Errc::invalid_argument, "nothing was read from stdin");
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
    line.pop_back();
  return line;
}

namespace {

std::string hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0) return "unknown";
  return buf;
}

std::string join_scopes(const json& scopes) {
  std::string out;
  if (!scopes.is_array()) return out;
  for (const auto& s : scopes) {
    if (s.is_string()) out += (out.empty() ? "" : ",") + s.get<std::string>();
  }
  return out;
}

struct Stored {
  fs::path path;
  Contexts contexts;
};

Result<Stored> load_stored(const EnvFn& env) {
  BOOST_OUTCOME_TRY(path, contexts_path(env));
  BOOST_OUTCOME_TRY(contexts, load_contexts(path));
  return Stored{path, std::move(contexts)};
}

/// The session made by POST /auth/login: the cookie to send back and its CSRF token.
struct Session {
  std::string cookie;  // "name=value"
  std::string csrf;
  std::string role;
};

Result<Session> session_of(const ApiResponse& r) {
  Session s;
  std::string set_cookie = r.header("set-cookie");
  s.cookie = set_cookie.substr(0, set_cookie.find(';'));
  json doc = parse_object(r.body);
  s.csrf = str(doc, "csrf");
  if (doc.contains("user") && doc["user"].is_object()) s.role = str(doc["user"], "role");
  if (s.cookie.find('=') == std::string::npos || s.csrf.empty()) {
    return fail(
        Errc::internal,
        "the server's login answer has no session cookie or CSRF token: is the URL a CloudyKnight "
        "control plane?");
  }
  return s;
}

}  // namespace

std::string no_remote_message(const std::string& command) {
  return fmt::format(
      "`{}` talks to a CloudyKnight server, and none is set: log in with `cloudyknight login URL` "
      "(or set CK_URL and CK_TOKEN)",
      command);
}

Result<std::optional<Endpoint>> resolve_remote(const EnvFn& env) {
  auto get = [&](const char* name) {
    auto v = env(name);
    return v ? *v : std::string();
  };
  std::string url = get("CK_URL"), token = get("CK_TOKEN"), cacert = get("CK_CACERT");
  if (!url.empty()) {
    auto u = normalize_url(url);
    if (u.has_error()) return fail(Errc::invalid_argument, "CK_URL: " + u.error().message);
    return std::optional<Endpoint>(Endpoint{u.value(), token, cacert});
  }
  BOOST_OUTCOME_TRY(stored, load_stored(env));
  if (stored.contexts.current.empty()) return std::optional<Endpoint>();
  const Context* c = stored.contexts.find(stored.contexts.current);
  Endpoint e{c->url, token.empty() ? c->token : token, cacert.empty() ? c->cacert : cacert};
  return std::optional<Endpoint>(std::move(e));
}

// ---------------------------------------------------------------------------------- contexts

int login_command(const LoginOptions& o, const EnvFn& env) {
  auto url = normalize_url(o.url);
  if (url.has_error()) return error(url.error().message, kExitUsage);
  std::string name = o.name.empty() ? context_name_for_url(url.value()) : o.name;
  if (!is_valid_context_name(name)) {
    return error(
        fmt::format(
            "'{}' is not a valid context name: use letters, digits and . _ : @ - (at most 64)",
            name),
        kExitUsage);
  }
  std::string cacert = o.cacert;
  if (cacert.empty()) {
    if (auto v = env("CK_CACERT")) cacert = *v;
  }
  if (!cacert.empty()) {
    std::error_code ec;
    fs::path abs = fs::absolute(cacert, ec);
    if (ec || !fs::is_regular_file(abs, ec)) {
      return error(
          fmt::format("--cacert {}: no such file: give the PEM file of the CA that signed the "
                      "server's certificate",
                      cacert),
          kExitUsage);
    }
    cacert = abs.string();
  }
  auto stored = load_stored(env);
  if (stored.has_error()) return error(stored.error().message);

  ApiClient client(Endpoint{url.value(), "", cacert});
  Context ctx{name, url.value(), "", "", "", cacert};
  const bool tty = ::isatty(STDIN_FILENO) == 1;
  if (!o.user.empty()) {
    if (!tty) {
      return error(
          "cannot read a password: stdin is not a terminal. Log in with a token instead: --token "
          "TOKEN, or "
          "--token - to read it from stdin (make one on the dashboard's Tokens page)",
          kExitUsage);
    }
    auto password = read_line(fmt::format("Password for {} at {}: ", o.user, url.value()), true);
    if (password.has_error())
      return error("no password read: " + password.error().message, kExitUsage);
    ApiRequest login{"POST",
                     "/auth/login",
                     json{{"name", o.user}, {"password", password.value()}}.dump(),
                     {},
                     false};
    auto r = client.call(login);
    if (r.has_error()) return error(r.error().message);
    if (!r.value().ok()) return refused(r.value());
    auto session = session_of(r.value());
    if (session.has_error()) return error(session.error().message);
    const Session& s = session.value();
    json scopes = s.role == "admin" ? json{"read", "deploy", "admin"} : json{"read", "deploy"};
    std::string token_name = "cli@" + hostname();
    ApiRequest make{"POST",
                    "/tokens",
                    json{{"name", token_name}, {"scopes", scopes}}.dump(),
                    {{"Cookie", s.cookie}, {"X-CSRF-Token", s.csrf}},
                    false};
    auto made = client.call(make);
    // The session was only the way to the token: end it whatever happened.
    ApiRequest logout{"POST",
                      "/auth/logout",
                      std::string("{}"),
                      {{"Cookie", s.cookie}, {"X-CSRF-Token", s.csrf}},
                      false};
    (void)client.call(logout);
    if (made.has_error()) return error(made.error().message);
    if (!made.value().ok()) return refused(made.value());
    json doc = parse_object(made.value().body);
    ctx.token = str(doc, "token");
    ctx.token_id = str(doc, "id");
    ctx.user = o.user;
    if (ctx.token.empty()) return error("the server made no token (its answer has none)");
  } else {
    std::string token;
    if (o.token && *o.token != "-") {
      token = *o.token;
    } else if (o.token || !tty) {
      auto line = read_line("", false);
      if (line.has_error()) {
        return error("--token -: no token on stdin (" + line.error().message +
                             "): pipe one in, e.g. "
                             "`echo $TOKEN | cloudyknight login URL --token -`",
                         kExitUsage);
      }
      token = line.value();
    } else {
      auto line = read_line(fmt::format("API token for {}: ", url.value()), true);
      if (line.has_error()) return error("no token read: " + line.error().message, kExitUsage);
      token = line.value();
    }
    if (token.empty()) {
      return error(
          "the token is empty: give one with --token TOKEN (or --token - and stdin), or log in "
          "with --user NAME",
          kExitUsage);
    }
    ctx.token = token;
  }
  // The token must work before it is kept.
  ApiClient check(Endpoint{url.value(), ctx.token, cacert});
  auto me = check.call(ApiRequest{"GET", "/auth/me"});
  if (me.has_error()) return error(me.error().message);
  if (!me.value().ok()) {
    return error(describe_failure(me.value()) + ": nothing was saved",
                     exit_code_for(me.value().status));
  }
  json who = parse_object(me.value().body);
  std::string described;
  if (who.contains("token") && who["token"].is_object()) {
    described = fmt::format("token '{}' ({})", str(who["token"], "name"),
                            join_scopes(who["token"]["scopes"]));
  } else if (who.contains("user") && who["user"].is_object()) {
    described = fmt::format("user {}", str(who["user"], "name"));
  }
  Stored& st = stored.value();
  std::string replaced;
  if (const Context* old = st.contexts.find(name);
      old != nullptr && !old->token_id.empty() && old->token != ctx.token) {
    // The token an earlier login made for this context would be orphaned: revoke it (best
    // effort; a token may revoke itself).
    ApiClient previous(Endpoint{old->url, old->token, old->cacert});
    auto r = previous.call(ApiRequest{"DELETE", "/tokens/" + url_encode(old->token_id)});
    replaced = r.has_value() && r.value().ok()
                   ? fmt::format(" (the token {} of the earlier login was revoked)", old->token_id)
                   : fmt::format(
                         " (the token {} of the earlier login could not be revoked: revoke it on "
                         "the dashboard's Tokens page)",
                         old->token_id);
  }
  st.contexts.put(ctx);
  st.contexts.current = name;
  if (auto w = save_contexts(st.path, st.contexts); w.has_error())
    return error(w.error().message);
  std::cout << fmt::format("logged in to {}{} with {}; context '{}' is current ({}){}", url.value(),
                           ctx.user.empty() ? "" : " as " + ctx.user, described, name,
                           st.path.string(), replaced)
            << std::endl;
  return kExitOk;
}

int logout_command(const std::string& context, const EnvFn& env) {
  auto stored = load_stored(env);
  if (stored.has_error()) return error(stored.error().message);
  Stored& st = stored.value();
  std::string name = context.empty() ? st.contexts.current : context;
  if (name.empty())
    return error("no context is current: name one (see `cloudyknight context list`)",
                     kExitUsage);
  Context* c = st.contexts.find(name);
  if (c == nullptr) {
    return error(fmt::format("no context named '{}' (see `cloudyknight context list`)", name),
                     kExitNotFound);
  }
  if (c->token.empty()) {
    std::cout << fmt::format("context '{}' holds no token: already logged out", name) << std::endl;
    return kExitOk;
  }
  int code = kExitOk;
  if (!c->token_id.empty()) {
    // Made by login: revoke it on the server. Its id as the server knows it (GET /auth/me).
    ApiClient client(Endpoint{c->url, c->token, c->cacert});
    auto me = client.call(ApiRequest{"GET", "/auth/me"});
    std::string id = c->token_id;
    if (me.has_value() && me.value().ok()) {
      json who = parse_object(me.value().body);
      if (who.contains("token") && who["token"].is_object()) id = str(who["token"], "id", id);
    }
    if (me.has_value() && me.value().status == 401) {
      std::cout << fmt::format("the token of '{}' was already revoked or expired on the server",
                               name)
                << std::endl;
    } else {
      auto r = client.call(ApiRequest{"DELETE", "/tokens/" + url_encode(id)});
      if (r.has_error() || !r.value().ok()) {
        std::string why = r.has_error() ? r.error().message : describe_failure(r.value());
        error(fmt::format(
            "the token could not be revoked on the server: {}; it is forgotten here, so revoke "
            "it on the dashboard's Tokens page (id {})",
            why, id));
        code = r.has_error() ? kExitFailure : exit_code_for(r.value().status);
      } else {
        std::cout << fmt::format("revoked the token {} on {}", id, c->url) << std::endl;
      }
    }
  }
  c->token.clear();
  c->token_id.clear();
  if (auto w = save_contexts(st.path, st.contexts); w.has_error())
    return error(w.error().message);
  std::cout << fmt::format("logged out of '{}' ({}): log in again with `cloudyknight login {}`",
                           name, c->url, c->url)
            << std::endl;
  return code;
}

int context_list(bool as_json, const EnvFn& env) {
  auto stored = load_stored(env);
  if (stored.has_error()) return error(stored.error().message);
  const Contexts& cs = stored.value().contexts;
  if (as_json) {
    json out = json::array();
    for (const auto& c : cs.all) {
      out.push_back({{"name", c.name},
                     {"url", c.url},
                     {"user", c.user},
                     {"current", c.name == cs.current},
                     {"logged_in", !c.token.empty()},
                     {"cacert", c.cacert}});
    }
    std::cout << out.dump(2) << std::endl;
    return kExitOk;
  }
  if (cs.all.empty()) {
    std::cout << "no contexts yet: add one with `cloudyknight login URL`" << std::endl;
    return kExitOk;
  }
  std::cout << fmt::format("  {:<24} {:<40} {}\n", "NAME", "URL", "USER");
  for (const auto& c : cs.all) {
    std::string who = c.token.empty() ? "(logged out)" : (c.user.empty() ? "(token)" : c.user);
    std::cout << fmt::format("{} {:<24} {:<40} {}\n", c.name == cs.current ? '*' : ' ', c.name,
                             c.url, who);
  }
  std::cout << std::flush;
  return kExitOk;
}

int context_use(const std::string& name, const EnvFn& env) {
  auto stored = load_stored(env);
  if (stored.has_error()) return error(stored.error().message);
  Stored& st = stored.value();
  if (!st.contexts.find(name)) {
    return error(fmt::format("no context named '{}' (see `cloudyknight context list`)", name),
                     kExitNotFound);
  }
  st.contexts.current = name;
  if (auto w = save_contexts(st.path, st.contexts); w.has_error())
    return error(w.error().message);
  std::cout << fmt::format("context '{}' is current ({})", name, st.contexts.find(name)->url)
            << std::endl;
  return kExitOk;
}

int context_remove(const std::string& name, const EnvFn& env) {
  auto stored = load_stored(env);
  if (stored.has_error()) return error(stored.error().message);
  Stored& st = stored.value();
  bool was_current = st.contexts.current == name;
  if (!st.contexts.remove(name)) {
    return error(fmt::format("no context named '{}' (see `cloudyknight context list`)", name),
                     kExitNotFound);
  }
  if (auto w = save_contexts(st.path, st.contexts); w.has_error())
    return error(w.error().message);
  std::cout
      << fmt::format(
             "removed context '{}'{} (its token stays valid on the server; `cloudyknight logout` "
             "revokes one that login made)",
             name, was_current ? "; no context is current now" : "")
      << std::endl;
  return kExitOk;
}

}  // namespace ck::cli
