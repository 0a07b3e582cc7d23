// The gateway's session loop: reading requests, routing them, and the answers the gateway
// gives itself (home page, redirects, error pages, held and waking workspaces). Accepting
// connections is in listener.cc; the design is in impl.h.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "events/events.h"
#include "gateway/impl.h"
#include "gateway/pages.h"
#include "http/framing.h"
#include "http/url.h"

namespace ck {
using namespace gw;

namespace {

// A failed workspace whose next start is due within `d` (a start due a while ago that did
// not happen is not one: something else holds it).
bool starts_within(const WorkspaceView& ws, Duration d) {
  if (ws.retry_at_ms <= 0) return false;
  auto in_ms = ws.retry_at_ms - unix_ms();
  return in_ms > -5000 && in_ms < std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

StringResponse Gateway::Impl::make_response(const Request& req, bhttp::status status, std::string body,
                             std::string_view type) {
  StringResponse res{status, req.version()};
  res.set(bhttp::field::server, "cloudyknight");
  res.set(bhttp::field::date, http::http_date_now());
  res.set(bhttp::field::content_type, type);
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

StringResponse Gateway::Impl::error_page(const Request& req, int status, std::string_view title,
                          std::string_view message, std::string_view hint,
                          bool refresh) {
  auto res = make_response(req, static_cast<bhttp::status>(status),
                           render_error_page(status, title, message, hint, refresh),
                           "text/html; charset=utf-8");
  res.set(bhttp::field::cache_control, "no-store");
  if (req.method() == bhttp::verb::head) res.body().clear();
  return res;
}

// An error page for a request that could not be read whole; the connection closes after it.
StringResponse Gateway::Impl::closing_page(int status, std::string_view title, std::string_view message,
                            std::string_view hint) {
  Request shape;
  shape.version(11);
  auto res = error_page(shape, status, title, message, hint);
  res.keep_alive(false);
  return res;
}

StringResponse Gateway::Impl::payload_too_large() {
  return closing_page(413, "Payload Too Large",
                      fmt::format("The request body is larger than the {} this gateway accepts.",
                                  format_size(opts.max_body)),
                      "Send a smaller body or raise gateway.max_body.");
}

StringResponse Gateway::Impl::source_too_large(const Request& req) {
  auto res = json_error(req, bhttp::status::payload_too_large, "too_large",
                        fmt::format("the deploy's tar is larger than the {} this server accepts; add big "
                                    "files to .ckignore, or raise gateway.max_body (CK_GATEWAY_MAX_BODY) "
                                    "on the server",
                                    format_size(opts.max_body)));
  res.keep_alive(false);
  return res;
}

StringResponse Gateway::Impl::file_too_large(const Request& req) {
  auto res = json_error(req, bhttp::status::payload_too_large, "too_large",
                        fmt::format("the file is larger than the {} the files API accepts; raise "
                                    "gateway.max_file_body (CK_GATEWAY_MAX_FILE_BODY) to write it",
                                    format_size(opts.max_file_body)));
  res.keep_alive(false);
  return res;
}

namespace {

// Field values of every occurrence of `f`.
std::vector<std::string_view> values_of(const Request& req, bhttp::field f) {
  std::vector<std::string_view> out;
  auto range = req.equal_range(f);
  for (auto it = range.first; it != range.second; ++it) out.emplace_back(it->value());
  return out;
}

}  // namespace

std::optional<std::string> Gateway::Impl::framing_error(const Request& req) {
  if (!req.count(bhttp::field::transfer_encoding) && !req.count(bhttp::field::content_length)) {
    return std::nullopt;  // the common case, no vectors
  }
  auto bad = http::check_framing(values_of(req, bhttp::field::transfer_encoding),
                                 values_of(req, bhttp::field::content_length));
  if (!bad) return std::nullopt;
  return std::move(bad->message);
}

Gateway::Impl::BodyTaker Gateway::Impl::body_taker(const Request& req, Worker& w) {
  std::shared_ptr<const Snapshot> snap = w.routes.get();
  // The same routing as handle(), by Host too: a body sent to <name>.<domain> is the app's.
  auto decision = route_request(std::string_view(req[bhttp::field::host].data(), req[bhttp::field::host].size()),
                                std::string_view(req.target().data(), req.target().size()), opts.hosts,
                                [&](std::string_view n) { return snap->find(n) != nullptr; });
  if (decision.kind == RouteKind::control) return BodyTaker::control;
  if (decision.kind != RouteKind::workspace) return BodyTaker::none;
  const WorkspaceView* ws = snap->find(decision.workspace);
  return ws && !ws->is_static ? BodyTaker::app : BodyTaker::none;
}

Task<void> Gateway::Impl::session(std::shared_ptr<Conn> cp, Worker& w) {
  Conn& conn = *cp;
  error_code ec;
  std::string client_ip;
  auto ep = conn.client.remote_endpoint(ec);
  if (!ec) client_ip = ep.address().to_string();
  beast::flat_buffer buf;
  const bool ready = !conn.client.tls() || co_await handshake(conn);
  for (bool first = true; ready; first = false) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(std::min<std::uint64_t>(opts.max_header, UINT32_MAX)));
    parser.body_limit(opts.max_body);
    // A new connection owes its first request's headers within header_timeout; a keep-alive
    // one may idle for idle_timeout, then (the watchdog sees the first bytes) the same.
    if (first || buf.size() > 0) {
      conn.expire_in(std::min(opts.header_timeout, opts.idle_timeout));
    } else {
      conn.expire_in(opts.idle_timeout);
      conn.header_buf = &buf;
    }
    co_await read_head(conn.client, buf, parser, ec);
    conn.header_buf = nullptr;
    conn.started = std::chrono::steady_clock::now();
    conn.kind = RequestKind::other;
    if (ec == bhttp::error::header_limit) {
      auto res = closing_page(431, "Request Header Fields Too Large",
                              "The request's headers are larger than this gateway accepts.",
                              "Send smaller headers (cookies?) or raise gateway.max_header.");
      co_await write(conn, res);
      break;
    }
    if (ec == bhttp::error::body_limit) {  // Content-Length over the limit, seen in the header
      auto& h = parser.get();
      auto res = is_source_upload(std::string_view(h.method_string().data(), h.method_string().size()),
                                  std::string_view(h.target().data(), h.target().size()))
                     ? source_too_large(h)
                     : payload_too_large();
      co_await write(conn, res);
      break;
    }
    if (ec) {
      if (ec != bhttp::error::end_of_stream && !conn.timed_out && ec != net::error::operation_aborted &&
          ec != net::error::connection_reset && ec != net::error::eof) {
        // Malformed request line or headers: say so, then close.
        auto res = closing_page(400, "Bad Request", "The request could not be parsed: " + ec.message() + ".",
                                "Check the client sending it.");
        co_await write(conn, res);
      }
      break;
    }
    auto& head = parser.get();
    bool files_upload = false;
    if (auto bad = framing_error(head)) {
      // Ambiguous framing (request smuggling): nothing of it is forwarded.
      auto res = closing_page(400, "Bad Request", "The request's body framing is not accepted: " + *bad + ".",
                              "Send either Content-Length or 'Transfer-Encoding: chunked', not both.");
      co_await write(conn, res);
      break;
    }
    const bool source_upload =
        is_source_upload(std::string_view(head.method_string().data(), head.method_string().size()),
                         std::string_view(head.target().data(), head.target().size()));
    if (auto len = parser.content_length(); len && *len > opts.max_body) {
      auto res = source_upload ? source_too_large(head) : payload_too_large();
      co_await write(conn, res);
      break;
    }
    if (!parser.is_done()) {
      auto taker = body_taker(head, w);
      if (taker == BodyTaker::none) {
        // Nobody takes this body (404, home page, redirect, static file): answer without
        // reading it and close the connection.
        head.keep_alive(false);
        Request req = parser.release();
        co_await handle(conn, buf, req, w, client_ip);
        count_request(conn);
        break;
      }
      if (taker == BodyTaker::control &&
          is_files_upload(
              std::string_view(head.method_string().data(), head.method_string().size()),
              std::string_view(head.target().data(), head.target().size()))) {
        // A file for the files API: up to gateway.max_file_body, refused in the API's JSON.
        files_upload = true;
        if (auto len = parser.content_length(); len && *len > opts.max_file_body) {
          auto res = file_too_large(head);
          co_await write(conn, res);
          break;
        }
        parser.body_limit(opts.max_file_body);
      } else if (taker == BodyTaker::control &&
                 (is_git_upload(std::string_view(head.method_string().data(), head.method_string().size()),
                                std::string_view(head.target().data(), head.target().size())) ||
                  source_upload)) {
        // A git push's pack (or a fetch's negotiation), a deploy's tar: up to gateway.max_body,
        // checked above.
        parser.body_limit(opts.max_body);
      } else if (taker == BodyTaker::control) {
        if (auto len = parser.content_length(); len && *len > kControlMaxBody) {
          auto res = closing_page(413, "Payload Too Large",
                                  fmt::format("The request body is larger than the {} the control plane accepts.",
                                              format_size(kControlMaxBody)),
                                  "Send a smaller body.");
          co_await write(conn, res);
          break;
        }
        parser.body_limit(kControlMaxBody);
      }
    }
    if (http::iequals(std::string_view(head[bhttp::field::expect]), "100-continue") && !parser.is_done()) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await net::async_write(conn.client, net::buffer(kContinue.data(), kContinue.size()),
                                net::redirect_error(use_task, ec));
      if (ec) break;
    }
    if (!parser.is_done()) {
      conn.expire_in(opts.request_timeout);
      co_await bhttp::async_read(conn.client, buf, parser, net::redirect_error(use_task, ec));
      if (ec == bhttp::error::body_limit) {
        auto res = files_upload    ? file_too_large(parser.get())
                   : source_upload ? source_too_large(parser.get())
                                   : payload_too_large();
        co_await write(conn, res);
        break;
      }
      if (ec) {
        if (!conn.timed_out && ec != net::error::operation_aborted && ec != net::error::connection_reset &&
            ec != net::error::eof && ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
          // A malformed body (a bad chunk size, chunk data longer than announced): say so, then
          // close; nothing of it was forwarded.
          auto res = closing_page(400, "Bad Request", "The request body could not be parsed: " + ec.message() + ".",
                                  "Check the client sending it.");
          co_await write(conn, res);
        }
        break;
      }
    }
    Request req = parser.release();
    bool keep = co_await handle(conn, buf, req, w, client_ip);
    count_request(conn);
    if (!keep) break;
  }
  count_request(conn);  // an error page for a request that could not be read
  if (ready && conn.client.tls()) co_await tls_goodbye(conn);
  conn.done = true;
  conn.watchdog.cancel();
  conn.client.shutdown(Socket::shutdown_send, ec);
  conn.client.close(ec);
}

void Gateway::Impl::count_request(Conn& conn) {
  if (conn.status == 0) return;
  stats.request(conn.kind, conn.status, std::chrono::steady_clock::now() - conn.started);
  conn.status = 0;
}

Task<bool> Gateway::Impl::handle(Conn& conn, beast::flat_buffer& buf, Request& req,
                            Worker& w, const std::string& client_ip) {
  std::shared_ptr<const Snapshot> snap = w.routes.get();  // kept: the view outlives awaits
  std::string_view target(req.target().data(), req.target().size());
  std::string_view host = req[bhttp::field::host];
  auto decision = route_request(host, target, opts.hosts,
                                [&](std::string_view n) { return snap->find(n) != nullptr; });
  switch (decision.kind) {
    case RouteKind::dashboard_elsewhere: {
      conn.kind = RequestKind::monitor;
      auto res = error_page(req, 404, "Not Found",
                            fmt::format("The dashboard and API are not on this host: they are at "
                                        "http://{}/monitor/ only.", decision.location),
                            fmt::format("Open http://{}/monitor/ (with this server's port), or "
                                        "send API requests there.", decision.location));
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case RouteKind::control_host_only: {
      auto res = error_page(req, 404, "Not Found",
                            fmt::format("{} serves only the dashboard and API, at /monitor/; "
                                        "workspaces are not served on this host.", decision.location),
                            "Open a workspace at its own address (its link on the dashboard).");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case RouteKind::control: {
      conn.kind = RequestKind::monitor;
      if (http::split_target(target).first == "/monitor/ws" && hooks.events) {
        co_return co_await event_socket(conn, req, w);
      }
      http::Response out = call_control(req, client_ip);
      if (out.stream) co_return co_await relay_stream(conn, req, std::move(out.stream));
      auto res = to_beast(req, std::move(out));
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case RouteKind::home: {
      conn.kind = RequestKind::home;
      if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
        auto res = error_page(req, 405, "Method Not Allowed", "The home page only answers GET.", "");
        res.set(bhttp::field::allow, "GET, HEAD");
        co_return co_await write(conn, res) && res.keep_alive();
      }
      auto res = make_response(req, bhttp::status::ok, render_home_page(*snap, opts.address), "text/html; charset=utf-8");
      res.set(bhttp::field::cache_control, "no-store");
      if (req.method() == bhttp::verb::head) res.body().clear();
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case RouteKind::redirect: {
      bool safe = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;
      auto res = make_response(req, safe ? bhttp::status::moved_permanently : bhttp::status::permanent_redirect,
                               "", "text/plain");
      res.set(bhttp::field::location, decision.location);
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case RouteKind::not_found: {
      // By host, "/" is this same unknown host: the link goes to the home page's own address.
      std::string home = decision.by_host ? home_url(opts.address) : "/";
      auto res = make_response(
          req, bhttp::status::not_found,
          render_error_page(404, "Not Found",
                            fmt::format("There is no workspace named '{}'.", decision.workspace),
                            "Check the name, or open the home page for the list of workspaces.",
                            false, home),
          "text/html; charset=utf-8");
      res.set(bhttp::field::cache_control, "no-store");
      if (req.method() == bhttp::verb::head) res.body().clear();
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case RouteKind::bad_request: {
      auto res = error_page(req, 400, "Bad Request", "The request target must be a path starting with '/'.", "");
      res.keep_alive(false);
      co_await write(conn, res);
      co_return false;
    }
    case RouteKind::workspace:
      break;
  }
  const WorkspaceView* ws = snap->find(decision.workspace);
  if (ws->keep_prefix) keep_prefix(decision);
  if (!ws->is_public && hooks.private_access) {
    auto access = hooks.private_access(ws->name, req[bhttp::field::cookie]);
    if (access != PrivateAccess::allowed) {
      conn.kind = RequestKind::workspace;
      co_return co_await private_denied(conn, req, *ws, access);
    }
  }
  ws->activity->touch();
  conn.kind = ws->is_static ? RequestKind::static_files : RequestKind::workspace;
  if (ws->is_static) {
    co_return co_await serve_static(conn, req, *ws, decision, w);
  }
  // Until this request is answered, the idle policy leaves the app alone (a long download, a
  // slow answer, a request held while the app wakes). `snap` keeps the Activity alive.
  RequestInFlight in_flight(*ws->activity, w.index);
  if (ws->held) co_return co_await held_stopped(conn, req, *ws);
  if (ws->status == "running" && ws->port > 0 && !ws->frozen && !ws->restarting) {
    // An app that went away under the request (a crash, a stop for a restart) may be coming
    // back: the request waits for it and goes once more (wait_for_wake decides).
    UpstreamRetry retry;
    bool keep = co_await proxy(conn, buf, req, *ws, decision, w, client_ip, &retry);
    if (!retry.wanted) co_return keep;
    co_return co_await wait_for_wake(conn, buf, req, decision, w, client_ip, ws, retry.ec);
  }
  // Failed: 502 with the reason, unless it is coming back after it ran (a crash) in time.
  if (ws->status == "failed" && !(ws->restarting && starts_within(*ws, opts.wake_timeout))) {
    co_return co_await not_running(conn, req, *ws);
  }
  // Asleep, coming back, or being put to sleep (the wake makes it start again at once).
  if (ws->asleep() || ws->restarting || (ws->status == "stopping" && ws->reason == "idle")) {
    co_return co_await wait_for_wake(conn, buf, req, decision, w, client_ip);
  }
  // Starting for another reason (first start, restart after a change): say so at once.
  auto res = error_page(req, 503, "Starting",
                        fmt::format("Workspace '{}' is {}{}.", ws->name, ws->status,
                                    ws->phase.empty() ? "" : " (" + ws->phase + ")"),
                        "This page reloads by itself until it is ready.", true);
  res.set(bhttp::field::retry_after, "2");
  co_return co_await write(conn, res) && res.keep_alive();
}

// An API client's refusal: {"error": {"code", "message"}}, never cached.
StringResponse Gateway::Impl::json_error(const Request& req, bhttp::status status, std::string_view code,
                          const std::string& message) {
  nlohmann::json body = {{"error", {{"code", code}, {"message", message}}}};
  auto res = make_response(req, status, body.dump(), "application/json");
  res.set(bhttp::field::cache_control, "no-store");
  if (req.method() == bhttp::verb::head) res.body().clear();
  return res;
}

// A private workspace without the session it needs: a browser is sent to the dashboard's
// login (which comes back here), other clients get 401/403 JSON.
Task<bool> Gateway::Impl::private_denied(Conn& conn, const Request& req, const WorkspaceView& ws, PrivateAccess access) {
  std::string_view accept(req[bhttp::field::accept].data(), req[bhttp::field::accept].size());
  bool login = access == PrivateAccess::login;
  if (login && accept.find("text/html") != std::string_view::npos) {
    auto res = make_response(req, bhttp::status::found, "", "text/plain");
    res.set(bhttp::field::location,
            "/monitor/?next=" + http::percent_encode(std::string_view(req.target().data(), req.target().size())));
    res.set(bhttp::field::cache_control, "no-store");
    co_return co_await write(conn, res) && res.keep_alive();
  }
  std::string message =
      login ? fmt::format("Workspace '{}' is private: log in to the dashboard at /monitor/ and open "
                          "it again from the same browser.", ws.name)
            : fmt::format("Workspace '{}' is private and belongs to another user: ask its owner or "
                          "an admin to make it public (\"public\": true in its workspace.json).",
                          ws.name);
  if (accept.find("application/json") != std::string_view::npos || accept.find("text/html") == std::string_view::npos) {
    auto res = json_error(req, login ? bhttp::status::unauthorized : bhttp::status::forbidden,
                          login ? "unauthenticated" : "forbidden", message);
    co_return co_await write(conn, res) && res.keep_alive();
  }
  auto res = error_page(req, 403, "Private", message, "");
  co_return co_await write(conn, res) && res.keep_alive();
}

// Stopped from the API: it stays stopped, so the request is answered at once and does not
// wake it. JSON for API clients (Accept: application/json), else a page.
Task<bool> Gateway::Impl::held_stopped(Conn& conn, const Request& req, const WorkspaceView& ws) {
  std::string how = fmt::format("POST /monitor/api/v1/workspaces/{}/start", ws.name);
  std::string message = fmt::format("Workspace '{}' was stopped from the control plane and stays "
                                    "stopped until it is started again.", ws.name);
  std::string_view accept(req[bhttp::field::accept].data(), req[bhttp::field::accept].size());
  if (accept.find("application/json") != std::string_view::npos) {
    auto res = json_error(req, bhttp::status::service_unavailable, "unavailable",
                          message + " Start it with " + how + " or from the dashboard.");
    co_return co_await write(conn, res) && res.keep_alive();
  }
  auto res = error_page(req, 503, "Stopped", message,
                        "Start it from the dashboard at /monitor/ or with " + how + ".");
  co_return co_await write(conn, res) && res.keep_alive();
}

Task<bool> Gateway::Impl::not_running(Conn& conn, const Request& req, const WorkspaceView& ws) {
  auto res = error_page(req, 502, "Bad Gateway",
                        fmt::format("Workspace '{}' is not running: {}", ws.name, ws.error),
                        "Fix the problem in its source; CloudyKnight retries on its own. Its "
                        "log is in the data folder under logs/.");
  co_return co_await write(conn, res) && res.keep_alive();
}

// Wake on request: a frozen, stopped or starting workspace is asked to come up and the
// request is held until it runs, then forwarded. A browser gets the self-refreshing
// waiting page once a cold start takes longer than a moment; other clients wait up to
// wake_timeout and then get 503 with Retry-After. Never a 404 for a sleeping workspace.
// Through a crash: an app that goes away under the request (refused, reset: UpstreamRetry)
// and that the monitor brings back (a new instance) gets the request once more; only one
// that stays failed (given up, failing twice while the request waits, or not due to start
// again within wake_timeout) answers 502 with its reason.
Task<bool> Gateway::Impl::wait_for_wake(Conn& conn, beast::flat_buffer& buf, Request& req,
                                        const RouteDecision& decision, Worker& w,
                                        const std::string& client_ip, const WorkspaceView* failed,
                                        error_code failed_ec) {
  // The app that failed the request and when: until the monitor notices (its exit), the
  // snapshot still shows it running; if it never does, the app is alive and its answer is 502.
  constexpr auto kNoticeWithin = std::chrono::seconds(1);
  std::uint64_t failed_instance = failed ? failed->instance : 0;
  int base_restarts = failed ? failed->restarts : -1;
  auto failed_at = std::chrono::steady_clock::now();
  bool retried = failed != nullptr;
  if (!failed && hooks.wake) hooks.wake(decision.workspace);
  if (failed) {
    logger()->info(
        "[ws={}] app on port {} went away under a request ({}); holding it until the app is back",
        failed->name, failed->port, failed_ec.message());
  }
  bool browser = std::string_view(req[bhttp::field::accept]).find("text/html") != std::string_view::npos;
  auto start = std::chrono::steady_clock::now();
  auto hold = browser ? std::min<Duration>(opts.wake_timeout, std::chrono::milliseconds(1500)) : opts.wake_timeout;
  conn.expire_in(hold + opts.request_timeout);
  Timer tick(w.io);
  for (int i = 0;; ++i) {
    std::shared_ptr<const Snapshot> snap = w.routes.get();
    const WorkspaceView* ws = snap->find(decision.workspace);
    if (!ws) {
      auto res = error_page(req, 404, "Not Found",
                            fmt::format("Workspace '{}' was removed while it was starting.", decision.workspace),
                            "Open the home page for the list of workspaces.");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    if (base_restarts < 0) base_restarts = ws->restarts;
    auto now = std::chrono::steady_clock::now();
    if (ws->held) co_return co_await held_stopped(conn, req, *ws);
    bool up = ws->status == "running" && ws->port > 0 && !ws->frozen && !ws->restarting;
    if (up && failed_instance != 0 && ws->instance == failed_instance) {
      // The app that failed still counts as running: alive (it refused or closed on its
      // own) unless the monitor soon sees it exit.
      if (now - failed_at >= kNoticeWithin) {
        co_return co_await upstream_failed(conn, req, *ws, failed_ec, req.keep_alive(),
                                           req.version());
      }
    } else if (up) {
      ws->activity->touch();
      if (retried) co_return co_await proxy(conn, buf, req, *ws, decision, w, client_ip);
      UpstreamRetry retry;
      bool keep = co_await proxy(conn, buf, req, *ws, decision, w, client_ip, &retry);
      if (!retry.wanted) co_return keep;
      logger()->info(
          "[ws={}] app on port {} went away under a request ({}); holding it until the app is back",
          ws->name, ws->port, retry.ec.message());
      retried = true;
      failed_instance = ws->instance;
      failed_ec = retry.ec;
      failed_at = std::chrono::steady_clock::now();
      base_restarts = ws->restarts;
      conn.expire_in(hold -
                     std::min(hold, std::chrono::duration_cast<Duration>(failed_at - start)) +
                     opts.request_timeout);
      continue;
    }
    if (ws->status == "failed") {
      // Given up, failing again while this request waits, or not starting again in time.
      auto budget = opts.wake_timeout -
                    std::min(opts.wake_timeout, std::chrono::duration_cast<Duration>(now - start));
      if (!starts_within(*ws, budget) || ws->restarts - base_restarts >= 2) {
        co_return co_await not_running(conn, req, *ws);
      }
    }
    if (ws->asleep() && i % 200 == 199 && hooks.wake) hooks.wake(decision.workspace);  // once a second
    if (now - start >= hold) {
      auto res = error_page(req, 503, browser ? "Starting" : "Service Unavailable",
                            fmt::format("Workspace '{}' is {}{}.", ws->name,
                                        ws->asleep() ? "waking up" : ws->status,
                                        ws->phase.empty() ? "" : " (" + ws->phase + ")"),
                            browser ? "This page reloads by itself until it is ready."
                                    : "Retry in a few seconds, or raise idle.wake_timeout.",
                            browser);
      res.set(bhttp::field::retry_after, browser ? "1" : "5");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    tick.expires_after(std::chrono::milliseconds(5));
    error_code ec;
    co_await tick.async_wait(net::redirect_error(use_task, ec));
    if (conn.timed_out) co_return false;
  }
}

}  // namespace ck
