#include "cli/remote_cmd.h"

#include <fmt/format.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/names.h"
#include "core/units.h"

namespace ck::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr std::size_t kMaxSecret = 4096;       // a token or a password typed or piped in
constexpr std::size_t kMaxRunLine = 8u << 20;  // one JSON line of a streamed run

int say_error(const std::string& message, int code = kExitFailure) {
  std::cerr << "cloudyknight: " << message << std::endl;
  return code;
}

/// A non-2xx answer: its one line, and the exit code that goes with its status.
int refused(const ApiResponse& r) {
  return say_error(describe_failure(r), exit_code_for(r.status));
}

json parse_object(const std::string& body) {
  auto doc = json::parse(body, nullptr, false);
  return doc.is_object() ? doc : json::object();
}

std::string str(const json& doc, const char* key, const std::string& fallback = "") {
  auto it = doc.find(key);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : fallback;
}

/// The workspace's address: the API gives a path (/name/) or, with gateway.domain, a full URL.
std::string absolute_url(const Endpoint& e, const std::string& url) {
  if (url.starts_with("http://") || url.starts_with("https://")) return url;
  return e.url + (url.starts_with("/") ? url : "/" + url);
}

Result<void> check_name(const std::string& name) { return validate_workspace_name(name); }

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
  if (url.has_error()) return say_error(url.error().message, kExitUsage);
  std::string name = o.name.empty() ? context_name_for_url(url.value()) : o.name;
  if (!is_valid_context_name(name)) {
    return say_error(
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
      return say_error(
          fmt::format("--cacert {}: no such file: give the PEM file of the CA that signed the "
                      "server's certificate",
                      cacert),
          kExitUsage);
    }
    cacert = abs.string();
  }
  auto stored = load_stored(env);
  if (stored.has_error()) return say_error(stored.error().message);

  ApiClient client(Endpoint{url.value(), "", cacert});
  Context ctx{name, url.value(), "", "", "", cacert};
  const bool tty = ::isatty(STDIN_FILENO) == 1;
  if (!o.user.empty()) {
    if (!tty) {
      return say_error(
          "cannot read a password: stdin is not a terminal. Log in with a token instead: --token "
          "TOKEN, or "
          "--token - to read it from stdin (make one on the dashboard's Tokens page)",
          kExitUsage);
    }
    auto password = read_line(fmt::format("Password for {} at {}: ", o.user, url.value()), true);
    if (password.has_error())
      return say_error("no password read: " + password.error().message, kExitUsage);
    ApiRequest login{"POST",
                     "/auth/login",
                     json{{"name", o.user}, {"password", password.value()}}.dump(),
                     {},
                     false};
    auto r = client.call(login);
    if (r.has_error()) return say_error(r.error().message);
    if (!r.value().ok()) return refused(r.value());
    auto session = session_of(r.value());
    if (session.has_error()) return say_error(session.error().message);
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
    if (made.has_error()) return say_error(made.error().message);
    if (!made.value().ok()) return refused(made.value());
    json doc = parse_object(made.value().body);
    ctx.token = str(doc, "token");
    ctx.token_id = str(doc, "id");
    ctx.user = o.user;
    if (ctx.token.empty()) return say_error("the server made no token (its answer has none)");
  } else {
    std::string token;
    if (o.token && *o.token != "-") {
      token = *o.token;
    } else if (o.token || !tty) {
      auto line = read_line("", false);
      if (line.has_error()) {
        return say_error("--token -: no token on stdin (" + line.error().message +
                             "): pipe one in, e.g. "
                             "`echo $TOKEN | cloudyknight login URL --token -`",
                         kExitUsage);
      }
      token = line.value();
    } else {
      auto line = read_line(fmt::format("API token for {}: ", url.value()), true);
      if (line.has_error()) return say_error("no token read: " + line.error().message, kExitUsage);
      token = line.value();
    }
    if (token.empty()) {
      return say_error(
          "the token is empty: give one with --token TOKEN (or --token - and stdin), or log in "
          "with --user NAME",
          kExitUsage);
    }
    ctx.token = token;
  }
  // The token must work before it is kept.
  ApiClient check(Endpoint{url.value(), ctx.token, cacert});
  auto me = check.call(ApiRequest{"GET", "/auth/me"});
  if (me.has_error()) return say_error(me.error().message);
  if (!me.value().ok()) {
    return say_error(describe_failure(me.value()) + ": nothing was saved",
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
    return say_error(w.error().message);
  std::cout << fmt::format("logged in to {}{} with {}; context '{}' is current ({}){}", url.value(),
                           ctx.user.empty() ? "" : " as " + ctx.user, described, name,
                           st.path.string(), replaced)
            << std::endl;
  return kExitOk;
}

int logout_command(const std::string& context, const EnvFn& env) {
  auto stored = load_stored(env);
  if (stored.has_error()) return say_error(stored.error().message);
  Stored& st = stored.value();
  std::string name = context.empty() ? st.contexts.current : context;
  if (name.empty())
    return say_error("no context is current: name one (see `cloudyknight context list`)",
                     kExitUsage);
  Context* c = st.contexts.find(name);
  if (c == nullptr) {
    return say_error(fmt::format("no context named '{}' (see `cloudyknight context list`)", name),
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
        say_error(fmt::format(
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
    return say_error(w.error().message);
  std::cout << fmt::format("logged out of '{}' ({}): log in again with `cloudyknight login {}`",
                           name, c->url, c->url)
            << std::endl;
  return code;
}

int context_list(bool as_json, const EnvFn& env) {
  auto stored = load_stored(env);
  if (stored.has_error()) return say_error(stored.error().message);
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
  if (stored.has_error()) return say_error(stored.error().message);
  Stored& st = stored.value();
  if (!st.contexts.find(name)) {
    return say_error(fmt::format("no context named '{}' (see `cloudyknight context list`)", name),
                     kExitNotFound);
  }
  st.contexts.current = name;
  if (auto w = save_contexts(st.path, st.contexts); w.has_error())
    return say_error(w.error().message);
  std::cout << fmt::format("context '{}' is current ({})", name, st.contexts.find(name)->url)
            << std::endl;
  return kExitOk;
}

int context_remove(const std::string& name, const EnvFn& env) {
  auto stored = load_stored(env);
  if (stored.has_error()) return say_error(stored.error().message);
  Stored& st = stored.value();
  bool was_current = st.contexts.current == name;
  if (!st.contexts.remove(name)) {
    return say_error(fmt::format("no context named '{}' (see `cloudyknight context list`)", name),
                     kExitNotFound);
  }
  if (auto w = save_contexts(st.path, st.contexts); w.has_error())
    return say_error(w.error().message);
  std::cout
      << fmt::format(
             "removed context '{}'{} (its token stays valid on the server; `cloudyknight logout` "
             "revokes one that login made)",
             name, was_current ? "; no context is current now" : "")
      << std::endl;
  return kExitOk;
}

// ------------------------------------------------------------------------------- workspaces

int remote_list(const Endpoint& e, bool as_json) {
  ApiClient client(e);
  json all = json::array();
  std::string after;
  for (int page = 0; page < 1000; ++page) {
    std::string path = "/workspaces?limit=1000";
    if (!after.empty()) path += "&after=" + url_encode(after);
    auto r = client.call(ApiRequest{"GET", path});
    if (r.has_error()) return say_error(r.error().message);
    if (!r.value().ok()) return refused(r.value());
    json doc = parse_object(r.value().body);
    if (!doc.contains("workspaces") || !doc["workspaces"].is_array()) {
      return say_error(fmt::format(
          "{} answered GET /workspaces without a list: is it a CloudyKnight server?", e.url));
    }
    for (auto& w : doc["workspaces"]) all.push_back(std::move(w));
    std::string next = str(doc, "next");
    if (next.empty() || next == after) break;
    after = next;
  }
  if (as_json) {
    std::cout << all.dump(2) << std::endl;
    return kExitOk;
  }
  if (all.empty()) {
    std::cout << fmt::format(
                     "no workspaces on {} yet: create one with `cloudyknight ws create NAME`",
                     e.url)
              << std::endl;
    return kExitOk;
  }
  std::cout << fmt::format("{:<24} {:<13} {:<10} {:<12} {:<8} {}\n", "NAME", "STATUS", "TYPE",
                           "ACTIVITY", "PUBLIC", "URL");
  for (const auto& w : all) {
    if (!w.is_object()) continue;
    bool pub = !w.contains("public") || !w["public"].is_boolean() || w["public"].get<bool>();
    std::cout << fmt::format("{:<24} {:<13} {:<10} {:<12} {:<8} {}\n", str(w, "name"),
                             str(w, "status", "-"), str(w, "type", "-"), str(w, "activity", "-"),
                             pub ? "yes" : "no", absolute_url(e, str(w, "url")));
  }
  std::cout << std::flush;
  return kExitOk;
}

int remote_status(const Endpoint& e, const std::string& name, bool as_json) {
  if (!name.empty()) {
    if (auto v = check_name(name); v.has_error()) return say_error(v.error().message, kExitUsage);
  }
  ApiClient client(e);
  auto r =
      client.call(ApiRequest{"GET", name.empty() ? "/status" : "/workspaces/" + name + "/status"});
  if (r.has_error()) return say_error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  json doc = json::parse(r.value().body, nullptr, false);
  if (doc.is_discarded())
    return say_error(fmt::format("{} answered with something that is not JSON", e.url));
  if (as_json) {
    std::cout << doc.dump(2) << std::endl;
    return kExitOk;
  }
  auto line = [](const std::string& k, const std::string& v) {
    if (!v.empty()) std::cout << fmt::format("{:<10} {}\n", k + ":", v);
  };
  auto integer = [&](const char* k) {
    return doc.contains(k) && doc[k].is_number_integer() ? doc[k].get<long long>() : 0LL;
  };
  if (name.empty()) {  // the server's own status
    line("server", fmt::format("{} (version {})", e.url, str(doc, "version", "?")));
    line("runtime",
         str(doc, "runtime") + (str(doc, "isolation").empty() ? "" : ", " + str(doc, "isolation")));
    line("storage",
         str(doc, "storage") +
             (str(doc, "storage_error").empty() ? "" : " (" + str(doc, "storage_error") + ")"));
    std::string counts;
    if (doc.contains("by_status") && doc["by_status"].is_object()) {
      for (const auto& [state, n] : doc["by_status"].items()) {
        if (n.is_number_integer() && n.get<long long>() > 0) {
          counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n.get<long long>(), state);
        }
      }
    }
    line("workspaces",
         fmt::format("{}{}", integer("workspaces"), counts.empty() ? "" : " (" + counts + ")"));
    if (doc.contains("invalid") && doc["invalid"].is_array()) {
      for (const auto& bad : doc["invalid"]) {
        if (bad.is_object()) line("invalid", str(bad, "folder") + ": " + str(bad, "error"));
      }
    }
    long long up = integer("uptime_seconds");
    line("uptime", fmt::format("{}h{:02}m{:02}s", up / 3600, (up / 60) % 60, up % 60));
    std::cout << std::flush;
    return kExitOk;
  }
  line("name", str(doc, "name"));
  line("status", str(doc, "status"));
  line("activity", str(doc, "activity"));
  line("reason", str(doc, "reason"));
  line("error", str(doc, "error"));
  if (doc.contains("restarts") && doc["restarts"].is_number_integer()) {
    line("restarts", std::to_string(integer("restarts")));
  }
  if (doc.contains("container") && doc["container"].is_object()) {
    const json& c = doc["container"];
    std::string runs = str(c, "runtime");
    if (c.contains("pid") && c["pid"].is_number_integer())
      runs += fmt::format(", pid {}", c["pid"].get<long long>());
    if (c.contains("port") && c["port"].is_number_integer()) {
      runs += fmt::format(", port {}", c["port"].get<long long>());
    }
    if (c.contains("held") && c["held"].is_boolean() && c["held"].get<bool>())
      runs += ", held stopped";
    line("runs", runs);
  }
  if (doc.contains("sync") && doc["sync"].is_object()) {
    const json& s = doc["sync"];
    std::string err = str(s, "error");
    line("storage", fmt::format("{} {}{}", str(s, "storage"), str(s, "location"),
                                err.empty() ? "" : " (" + err + ")"));
  }
  std::cout << std::flush;
  return kExitOk;
}

int remote_create(const Endpoint& e, const CreateOptions& o) {
  if (auto v = check_name(o.name); v.has_error()) return say_error(v.error().message, kExitUsage);
  json body = {{"name", o.name}};
  if (!o.template_name.empty()) body["template"] = o.template_name;
  if (!o.clone_of.empty()) body["clone_of"] = o.clone_of;
  if (!o.git_url.empty()) body["git"] = json{{"url", o.git_url}};
  if (o.private_ws) body["public"] = false;
  ApiClient client(e);
  ApiRequest req{"POST", "/workspaces", body.dump()};
  req.timeout_ms = 300000;  // a clone or a template's first copy can take a while
  auto r = client.call(req);
  if (r.has_error()) return say_error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  json w = parse_object(r.value().body);
  if (o.json) {
    std::cout << w.dump(2) << std::endl;
    return kExitOk;
  }
  std::cout << fmt::format("created {} ({}, {}{}): {}", o.name, str(w, "type", "?"),
                           str(w, "status", "?"), o.private_ws ? ", private" : "",
                           absolute_url(e, str(w, "url")))
            << std::endl;
  return kExitOk;
}

int remote_delete(const Endpoint& e, const std::string& name, bool yes) {
  if (auto v = check_name(name); v.has_error()) return say_error(v.error().message, kExitUsage);
  if (!yes) {
    if (::isatty(STDIN_FILENO) != 1) {
      return say_error(
          fmt::format(
              "not deleting '{}' without a confirmation: stdin is not a terminal, so pass --yes",
              name),
          kExitUsage);
    }
    auto answer = read_line(
        fmt::format(
            "Delete workspace '{}' on {}? Its app stops and its folder goes to the server's "
            "trash. [y/N] ",
            name, e.url),
        false);
    if (answer.has_error() ||
        (answer.value() != "y" && answer.value() != "Y" && answer.value() != "yes")) {
      std::cerr << "cloudyknight: not deleted" << std::endl;
      return kExitFailure;
    }
  }
  ApiClient client(e);
  auto r = client.call(ApiRequest{"DELETE", "/workspaces/" + name});
  if (r.has_error()) return say_error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  std::cout << fmt::format("deleted {} on {}", name, e.url) << std::endl;
  return kExitOk;
}

int remote_action(const Endpoint& e, const std::string& name, const std::string& action) {
  if (auto v = check_name(name); v.has_error()) return say_error(v.error().message, kExitUsage);
  ApiClient client(e);
  auto r = client.call(ApiRequest{"POST", "/workspaces/" + name + "/" + action, std::string("{}")});
  if (r.has_error()) return say_error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  json doc = parse_object(r.value().body);
  json w = doc.contains("workspace") && doc["workspace"].is_object() ? doc["workspace"] : doc;
  std::cout << fmt::format("{}: {} requested (now {}); follow it with `cloudyknight ws status {}`",
                           name, action, str(w, "status", "?"), name)
            << std::endl;
  return kExitOk;
}

int remote_logs(const Endpoint& e, const std::string& name, bool follow, int tail,
                const std::string& service) {
  if (auto v = check_name(name); v.has_error()) return say_error(v.error().message, kExitUsage);
  if (tail != -1 && (tail < 1 || tail > 5000))
    return say_error("--tail must be from 1 to 5000", kExitUsage);
  std::string path = "/workspaces/" + name + "/logs";
  std::string query;
  auto add = [&](const std::string& kv) { query += (query.empty() ? "?" : "&") + kv; };
  if (tail != -1) add("tail=" + std::to_string(tail));
  if (!service.empty()) add("service=" + url_encode(service));
  if (follow) add("follow=1");
  ApiClient client(e);
  if (!follow) {
    auto r = client.call(ApiRequest{"GET", path + query});
    if (r.has_error()) return say_error(r.error().message);
    if (!r.value().ok()) return refused(r.value());
    json doc = parse_object(r.value().body);
    if (doc.contains("lines") && doc["lines"].is_array()) {
      for (const auto& l : doc["lines"]) {
        if (l.is_string()) std::cout << l.get<std::string>() << '\n';
      }
    }
    std::cout << std::flush;
    return kExitOk;
  }
  // Followed until Ctrl-C (SIGINT ends the process) or the server ends the stream; the
  // server reopens the log when the app restarts, so restarts need nothing here.
  ApiRequest req{"GET", path + query};
  req.timeout_ms = 0;
  auto write = [](std::string_view chunk) {
    std::fwrite(chunk.data(), 1, chunk.size(), stdout);
    std::fflush(stdout);
    return !std::ferror(stdout);
  };
  std::function<bool(std::string_view)> sink = write;
  auto r = client.stream(req, sink);
  if (r.has_error()) return say_error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  std::cerr << "cloudyknight: the server ended the log stream" << std::endl;
  return kExitOk;
}

int remote_run(const Endpoint& e, const std::string& name, const std::string& timeout,
               const std::vector<std::string>& argv) {
  if (auto v = check_name(name); v.has_error()) return say_error(v.error().message, kExitUsage);
  if (argv.empty()) {
    return say_error(
        fmt::format("no command: give it after --, e.g. `cloudyknight ws run {} -- npm test`",
                    name),
        kExitUsage);
  }
  auto limit = parse_duration(timeout);
  if (limit.has_error()) return say_error("--timeout: " + limit.error().message, kExitUsage);
  json body = {{"command", argv}, {"timeout", timeout}};
  ApiRequest req{"POST", "/workspaces/" + name + "/run?stream=1", body.dump()};
  req.timeout_ms = static_cast<long>(limit.value().count()) + 60000;
  std::string carry;
  std::optional<int> exit_code;
  bool timed_out = false;
  std::string stream_error;
  bool broken = false;
  auto on_line = [&](const std::string& line) {
    if (line.empty()) return true;
    auto doc = json::parse(line, nullptr, false);
    if (!doc.is_object()) {
      broken = true;
      return false;
    }
    if (doc.contains("output") && doc["output"].is_string()) {
      const auto& out = doc["output"].get_ref<const std::string&>();
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fflush(stdout);
    }
    if (doc.contains("exit_code") && doc["exit_code"].is_number_integer())
      exit_code = doc["exit_code"].get<int>();
    if (doc.contains("timed_out") && doc["timed_out"].is_boolean())
      timed_out = doc["timed_out"].get<bool>();
    if (doc.contains("error") && doc["error"].is_object()) {
      ApiResponse as{409, doc.dump(), {}};
      stream_error = describe_failure(as);
    }
    return true;
  };
  auto chunk = [&](std::string_view data) {
    carry.append(data);
    std::size_t start = 0;
    for (;;) {
      auto nl = carry.find('\n', start);
      if (nl == std::string::npos) break;
      if (!on_line(carry.substr(start, nl - start))) return false;
      start = nl + 1;
    }
    carry.erase(0, start);
    if (carry.size() > kMaxRunLine) {
      broken = true;
      return false;
    }
    return true;
  };
  std::function<bool(std::string_view)> sink = chunk;
  ApiClient client(e);
  auto r = client.stream(req, sink);
  if (r.has_error()) return say_error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  if (!carry.empty() && !broken) on_line(carry);
  if (broken)
    return say_error(fmt::format("{} sent a line of the run's stream that is not JSON", e.url));
  if (!stream_error.empty()) return say_error(stream_error);
  if (!exit_code)
    return say_error(
        "the stream ended before the command's exit code came (the server may have stopped)");
  if (timed_out) {
    std::cerr << fmt::format(
                     "cloudyknight: the command was killed after {} (raise --timeout, up to 10m)",
                     timeout)
              << std::endl;
  }
  return *exit_code < 0 ? kExitFailure : (*exit_code > 255 ? 255 : *exit_code);
}

int remote_open(const Endpoint& e, const std::string& name, bool browser) {
  if (auto v = check_name(name); v.has_error()) return say_error(v.error().message, kExitUsage);
  ApiClient client(e);
  auto r = client.call(ApiRequest{"GET", "/workspaces/" + name});
  if (r.has_error()) return say_error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  std::string url = absolute_url(e, str(parse_object(r.value().body), "url", "/" + name + "/"));
  std::cout << url << std::endl;
  if (!browser) return kExitOk;
  pid_t pid = ::fork();
  if (pid < 0) return say_error("cannot start xdg-open: fork failed");
  if (pid == 0) {
    ::execlp("xdg-open", "xdg-open", url.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return say_error(WIFEXITED(status) && WEXITSTATUS(status) == 127
                         ? "xdg-open is not installed (Debian: apt install xdg-utils): open the "
                           "URL above yourself"
                         : "xdg-open could not open the URL: open it yourself");
  }
  return kExitOk;
}

int remote_sync(const Endpoint& e, const std::string& name) {
  if (auto v = check_name(name); v.has_error()) return say_error(v.error().message, kExitUsage);
  ApiClient client(e);
  ApiRequest req{"POST", "/workspaces/" + name + "/sync", std::string("{}")};
  req.timeout_ms = 300000;
  auto r = client.call(req);
  if (r.has_error()) return say_error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  json doc = parse_object(r.value().body);
  auto num = [&](const char* k) {
    return doc.contains(k) && doc[k].is_number_integer() ? doc[k].get<long long>() : 0LL;
  };
  if (str(doc, "direction") == "pull") {
    std::cout << fmt::format("{}: pulled {} files, removed {}, {} failed (s3)", name, num("pulled"),
                             num("removed"), num("failed"))
              << std::endl;
  } else {
    std::cout << fmt::format("{}: rescanned its folder ({} storage)", name,
                             str(doc, "storage", "dir"))
              << std::endl;
  }
  return num("failed") > 0 ? kExitFailure : kExitOk;
}

}  // namespace ck::cli
