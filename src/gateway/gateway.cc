// The gateway session. One coroutine per client connection reads requests one after the
// other (keep-alive), decides the route from the current snapshot, and either answers itself
// (home page, redirects, error pages, static files, control plane) or forwards the request to
// the workspace's app over a pooled upstream connection and relays the response as it
// arrives (buffer_body), so large and streaming responses never sit in memory. An Upgrade
// request gets its own upstream connection and, on 101, becomes a byte tunnel.
//
// Timeouts: instead of a timer armed and cancelled around every read and write (what
// beast::tcp_stream does, one extra completion per I/O), each connection has one deadline
// that the session moves forward with a plain store, and one watchdog coroutine that wakes
// once a second and cancels whatever the session is waiting on once the deadline passed.
#include "gateway/gateway.h"

#include "http/asio.h"
// clang-format off
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
// clang-format on
#include <nlohmann/json.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <limits>
#include <thread>
#include <unordered_map>

#include "core/log.h"
#include "dashboard/dashboard.h"
#include "events/events.h"
#include "gateway/gateway_metrics.h"
#include "gateway/pages.h"
#include "gateway/route.h"
#include "gateway/static_files.h"
#include "http/stream.h"
#include "http/url.h"

namespace ck {
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

// Everything in the gateway runs on a worker's io_context: use its executor type directly,
// not the type-erased any_io_executor (measurably cheaper per I/O on the hot path).
using Executor = net::io_context::executor_type;
template <class T>
using Task = net::awaitable<T, Executor>;
constexpr net::use_awaitable_t<Executor> use_task;
using Socket = net::basic_stream_socket<tcp, Executor>;
using Acceptor = net::basic_socket_acceptor<tcp, Executor>;
using Timer = net::basic_waitable_timer<std::chrono::steady_clock,
                                        net::wait_traits<std::chrono::steady_clock>, Executor>;

namespace {

auto logger() {
  static auto l = log::get("gateway");
  return l;
}

using StringResponse = bhttp::response<bhttp::string_body>;
using Request = bhttp::request<bhttp::string_body>;

constexpr std::size_t kRelayChunk = 64 * 1024;
constexpr std::size_t kMaxIdlePerUpstream = 256;
constexpr std::uint64_t kInMemoryFileLimit = 1 << 20;
constexpr std::uint64_t kGzipLimit = 8 << 20;
constexpr std::uint64_t kGzipCacheBytes = 64 << 20;
constexpr std::uint64_t kMaxRangeBytes = 16 << 20;
constexpr std::size_t kFlattenLimit = 16 * 1024;

// One idle keep-alive connection to an app.
struct UpstreamConn {
  explicit UpstreamConn(Executor ex) : socket(ex) {}
  Socket socket;
  beast::flat_buffer buffer;
};

// One client connection: its socket, the deadline of whatever it waits on, and the upstream
// socket it waits on, if any. Shared by the session and its watchdog; used on one thread.
struct Conn : std::enable_shared_from_this<Conn> {
  explicit Conn(Socket s) : client(std::move(s)), watchdog(client.get_executor()) {}
  Socket client;
  Socket* upstream = nullptr;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  bool timed_out = false;
  bool done = false;
  Timer watchdog;
  std::unique_ptr<char[]> relay;  // the relay buffer, allocated on the first proxied request
  std::string flat;               // scratch for gathering small messages into one send
  // The request being answered, for the metrics: its kind (set by handle()), the status sent
  // (by write(), proxy() and the upgrades; 0 = none yet) and when its headers arrived.
  RequestKind kind = RequestKind::other;
  int status = 0;
  std::chrono::steady_clock::time_point started;

  void expire_in(Duration d) {
    deadline = std::chrono::steady_clock::now() + d;
    timed_out = false;
  }
  void no_deadline() { deadline = std::chrono::steady_clock::time_point::max(); }
};

bool is_idempotent(bhttp::verb v) {
  return v == bhttp::verb::get || v == bhttp::verb::head || v == bhttp::verb::options ||
         v == bhttp::verb::put || v == bhttp::verb::delete_;
}

// True if the peer closed an idle pooled connection (so it must not be reused).
bool looks_closed(Socket& s) {
  char c;
  ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  if (n < 0) return !(errno == EAGAIN || errno == EWOULDBLOCK);
  return true;  // unexpected bytes on an idle connection: do not trust it
}

// Headers that describe one hop and must not be forwarded (RFC 9110 7.6.1).
template <class Fields>
void strip_hop_by_hop(Fields& f, bool keep_upgrade) {
  auto conn = f[bhttp::field::connection];
  std::vector<std::string> listed;
  std::string_view v(conn.data(), conn.size());
  while (!v.empty()) {
    auto comma = v.find(',');
    auto tok = v.substr(0, comma);
    while (!tok.empty() && tok.front() == ' ') tok.remove_prefix(1);
    while (!tok.empty() && tok.back() == ' ') tok.remove_suffix(1);
    if (!tok.empty() && !http::iequals(tok, "upgrade") && !http::iequals(tok, "keep-alive") &&
        !http::iequals(tok, "close")) {
      listed.emplace_back(tok);
    }
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  for (const auto& name : listed) f.erase(name);
  f.erase(bhttp::field::keep_alive);
  f.erase(bhttp::field::proxy_connection);
  f.erase(bhttp::field::te);
  f.erase(bhttp::field::trailer);
  if (!keep_upgrade) {
    f.erase(bhttp::field::connection);
    f.erase(bhttp::field::upgrade);
  }
}

// Small LRU-less cache of gzipped static files, per worker (so no locks).
class GzipCache {
 public:
  std::shared_ptr<const std::string> get(const std::string& key) {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second;
  }
  void put(const std::string& key, std::shared_ptr<const std::string> v) {
    if (bytes_ + v->size() > kGzipCacheBytes) {
      map_.clear();
      bytes_ = 0;
    }
    bytes_ += v->size();
    map_[key] = std::move(v);
  }

 private:
  std::unordered_map<std::string, std::shared_ptr<const std::string>> map_;
  std::uint64_t bytes_ = 0;
};

}  // namespace

struct Gateway::Impl {
  struct Worker {
    explicit Worker(const SnapshotHolder& h) : routes(h) {}
    SnapshotCache routes;
    // One thread runs each worker and every socket operation happens on it, so the reactor
    // needs no locks; the scheduler keeps them (stop() posts from another thread).
    net::io_context io{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    std::unique_ptr<Acceptor> acceptor;
    std::unordered_map<std::string, std::vector<std::unique_ptr<UpstreamConn>>> idle;
    GzipCache gzip_cache;
    std::thread thread;
  };

  Impl(GatewayOptions o, const SnapshotHolder& r, ControlHandler c, GatewayHooks h)
      : opts(std::move(o)), routes(r), control(std::move(c)), hooks(std::move(h)) {}

  GatewayOptions opts;
  const SnapshotHolder& routes;
  ControlHandler control;
  GatewayHooks hooks;
  GatewayMetrics& stats = GatewayMetrics::get();
  std::vector<std::unique_ptr<Worker>> workers;
  bool running = false;

  // ---- plumbing --------------------------------------------------------------------------

  Task<void> accept_loop(Worker& w) {
    for (;;) {
      error_code ec;
      Socket sock(w.io);
      co_await w.acceptor->async_accept(sock, net::redirect_error(use_task, ec));
      if (ec == net::error::operation_aborted || !w.acceptor->is_open()) co_return;
      if (ec) {
        logger()->warn("accept failed: {}; retrying", ec.message());
        Timer pause(w.io);
        pause.expires_after(std::chrono::milliseconds(50));
        co_await pause.async_wait(net::redirect_error(use_task, ec));
        continue;
      }
      sock.set_option(tcp::no_delay(true), ec);
      sock.non_blocking(true, ec);
      auto conn = std::make_shared<Conn>(std::move(sock));
      spawn(w.io.get_executor(), watchdog(conn), "gateway watchdog");
      spawn(w.io.get_executor(), session(conn, w), "gateway session");
    }
  }

  // Writes what the socket takes at once (sockets are non-blocking, so this never waits)
  // and only the rest asynchronously: most answers leave in one send, with no extra trip
  // through the io_context.
  // Small messages are first gathered into `flat`: one contiguous send instead of an iovec
  // per header field.
  template <bool isRequest, class Body, class Fields>
  static Task<void> send(Socket& s, bhttp::serializer<isRequest, Body, Fields>& sr, error_code& ec,
                         std::string* flat = nullptr) {
    while (flat && !sr.is_done()) {
      flat->clear();
      bool gathered = false;
      sr.next(ec, [&](error_code&, const auto& buffers) {
        for (auto b : beast::buffers_range_ref(buffers)) {
          if (flat->size() + b.size() > kFlattenLimit) return;  // large: send it as it is
          flat->append(static_cast<const char*>(b.data()), b.size());
        }
        gathered = true;
      });
      if (ec || !gathered) break;  // need_buffer (relay wants more body) or a large message
      std::size_t n = s.write_some(net::buffer(*flat), ec);
      if (ec == net::error::would_block || ec == net::error::try_again) ec = {};
      if (ec) co_return;
      sr.consume(n);
      if (n < flat->size()) break;  // the socket is full: the rest goes asynchronously
    }
    if (ec || sr.is_done()) co_return;
    bhttp::write(s, sr, ec);
    if (ec == net::error::would_block || ec == net::error::try_again) {
      ec = {};
      co_await bhttp::async_write(s, sr, net::redirect_error(use_task, ec));
    }
  }

  template <class Body>
  Task<bool> write(Conn& conn, bhttp::response<Body>& res) {
    conn.status = res.result_int();
    conn.expire_in(opts.request_timeout);
    error_code ec;
    bhttp::response_serializer<Body> sr{res};
    co_await send(conn.client, sr, ec, &conn.flat);
    co_return !ec;
  }

  // Cancels what a connection waits on once its deadline has passed; ends with the session.
  static Task<void> watchdog(std::shared_ptr<Conn> c) {
    while (!c->done) {
      c->watchdog.expires_after(std::chrono::seconds(1));
      error_code ec;
      co_await c->watchdog.async_wait(net::redirect_error(use_task, ec));
      if (c->done) break;
      if (std::chrono::steady_clock::now() < c->deadline) continue;
      c->timed_out = true;
      c->no_deadline();
      if (c->upstream) {
        c->upstream->cancel(ec);  // the session answers 504 and goes on
      } else {
        c->client.close(ec);
      }
    }
  }

  StringResponse make_response(const Request& req, bhttp::status status, std::string body,
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

  StringResponse error_page(const Request& req, int status, std::string_view title,
                            std::string_view message, std::string_view hint,
                            bool refresh = false) {
    auto res = make_response(req, static_cast<bhttp::status>(status),
                             render_error_page(status, title, message, hint, refresh),
                             "text/html; charset=utf-8");
    res.set(bhttp::field::cache_control, "no-store");
    if (req.method() == bhttp::verb::head) res.body().clear();
    return res;
  }

  // An error page for a request that could not be read whole; the connection closes after it.
  StringResponse closing_page(int status, std::string_view title, std::string_view message,
                              std::string_view hint) {
    Request shape;
    shape.version(11);
    auto res = error_page(shape, status, title, message, hint);
    res.keep_alive(false);
    return res;
  }

  StringResponse payload_too_large() {
    return closing_page(413, "Payload Too Large",
                        fmt::format("The request body is larger than the {} this gateway accepts.",
                                    format_size(opts.max_body)),
                        "Send a smaller body or raise gateway.max_body.");
  }

  // ---- the session -----------------------------------------------------------------------

  Task<void> session(std::shared_ptr<Conn> cp, Worker& w) {
    Conn& conn = *cp;
    error_code ec;
    std::string client_ip;
    auto ep = conn.client.remote_endpoint(ec);
    if (!ec) client_ip = ep.address().to_string();
    beast::flat_buffer buf;
    for (;;) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(std::min<std::uint64_t>(opts.max_header, UINT32_MAX)));
      parser.body_limit(opts.max_body);
      conn.expire_in(opts.idle_timeout);
      co_await bhttp::async_read_header(conn.client, buf, parser, net::redirect_error(use_task, ec));
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
        auto res = payload_too_large();
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
      if (auto len = parser.content_length(); len && *len > opts.max_body) {
        auto res = payload_too_large();
        co_await write(conn, res);
        break;
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
          auto res = payload_too_large();
          co_await write(conn, res);
          break;
        }
        if (ec) break;
      }
      Request req = parser.release();
      bool keep = co_await handle(conn, buf, req, w, client_ip);
      count_request(conn);
      if (!keep) break;
    }
    count_request(conn);  // an error page for a request that could not be read
    conn.done = true;
    conn.watchdog.cancel();
    conn.client.shutdown(Socket::shutdown_send, ec);
    conn.client.close(ec);
  }

  void count_request(Conn& conn) {
    if (conn.status == 0) return;
    stats.request(conn.kind, conn.status, std::chrono::steady_clock::now() - conn.started);
    conn.status = 0;
  }

  Task<bool> handle(Conn& conn, beast::flat_buffer& buf, Request& req,
                              Worker& w, const std::string& client_ip) {
    std::shared_ptr<const Snapshot> snap = w.routes.get();  // kept: the view outlives awaits
    std::string_view target(req.target().data(), req.target().size());
    auto decision = route_request(target, [&](std::string_view n) { return snap->find(n) != nullptr; });
    switch (decision.kind) {
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
        auto res = make_response(req, bhttp::status::ok, render_home_page(*snap), "text/html; charset=utf-8");
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
        auto res = error_page(req, 404, "Not Found",
                              fmt::format("There is no workspace named '{}'.", decision.workspace),
                              "Check the name, or open the home page for the list of workspaces.");
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
    if (ws->held) co_return co_await held_stopped(conn, req, *ws);
    if (ws->status == "running" && ws->port > 0 && !ws->frozen) {
      co_return co_await proxy(conn, buf, req, *ws, decision, w, client_ip);
    }
    if (ws->status == "failed") co_return co_await not_running(conn, req, *ws);
    if (ws->asleep()) co_return co_await wait_for_wake(conn, buf, req, decision, w, client_ip);
    // Starting for another reason (first start, restart after a change): say so at once.
    auto res = error_page(req, 503, "Starting",
                          fmt::format("Workspace '{}' is {}{}.", ws->name, ws->status,
                                      ws->phase.empty() ? "" : " (" + ws->phase + ")"),
                          "This page reloads by itself until it is ready.", true);
    res.set(bhttp::field::retry_after, "2");
    co_return co_await write(conn, res) && res.keep_alive();
  }

  // An API client's refusal: {"error": {"code", "message"}}, never cached.
  StringResponse json_error(const Request& req, bhttp::status status, std::string_view code,
                            const std::string& message) {
    nlohmann::json body = {{"error", {{"code", code}, {"message", message}}}};
    auto res = make_response(req, status, body.dump(), "application/json");
    res.set(bhttp::field::cache_control, "no-store");
    if (req.method() == bhttp::verb::head) res.body().clear();
    return res;
  }

  // A private workspace without the session it needs: a browser is sent to the dashboard's
  // login (which comes back here), other clients get 401/403 JSON.
  Task<bool> private_denied(Conn& conn, const Request& req, const WorkspaceView& ws, PrivateAccess access) {
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
  Task<bool> held_stopped(Conn& conn, const Request& req, const WorkspaceView& ws) {
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

  Task<bool> not_running(Conn& conn, const Request& req, const WorkspaceView& ws) {
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
  Task<bool> wait_for_wake(Conn& conn, beast::flat_buffer& buf, Request& req, const RouteDecision& decision,
                           Worker& w, const std::string& client_ip) {
    if (hooks.wake) hooks.wake(decision.workspace);
    bool browser = std::string_view(req[bhttp::field::accept]).find("text/html") != std::string_view::npos;
    auto start = std::chrono::steady_clock::now();
    auto hold = browser ? std::min<Duration>(opts.wake_timeout, std::chrono::milliseconds(1500)) : opts.wake_timeout;
    conn.expire_in(hold + opts.request_timeout);
    Timer tick(w.io);
    std::string last_status;
    for (int i = 0;; ++i) {
      std::shared_ptr<const Snapshot> snap = w.routes.get();
      const WorkspaceView* ws = snap->find(decision.workspace);
      if (!ws) {
        auto res = error_page(req, 404, "Not Found",
                              fmt::format("Workspace '{}' was removed while it was starting.", decision.workspace),
                              "Open the home page for the list of workspaces.");
        co_return co_await write(conn, res) && res.keep_alive();
      }
      if (ws->held) co_return co_await held_stopped(conn, req, *ws);
      if (ws->status == "running" && ws->port > 0 && !ws->frozen) {
        ws->activity->touch();
        co_return co_await proxy(conn, buf, req, *ws, decision, w, client_ip);
      }
      if (ws->status == "failed" && ws->reason.find("restarting in") == std::string::npos) {
        co_return co_await not_running(conn, req, *ws);
      }
      if (ws->asleep() && i % 200 == 199 && hooks.wake) hooks.wake(decision.workspace);  // once a second
      if (std::chrono::steady_clock::now() - start >= hold) {
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

  // ---- /monitor/ws: the event stream -----------------------------------------------------

  struct EventClient {
    EventClient(Socket s, Executor ex) : ws(std::move(s)), wake(ex) {}
    beast::websocket::stream<Socket> ws;
    Timer wake;  // cancelled when events are queued (or the subscription was dropped)
    std::shared_ptr<Subscription> sub;
    bool closed = false;
  };

  static Task<void> event_reader(std::shared_ptr<EventClient> c, const SnapshotHolder* routes) {
    beast::flat_buffer in;
    SnapshotCache cache(*routes);
    for (;;) {
      error_code ec;
      in.clear();
      co_await c->ws.async_read(in, net::redirect_error(use_task, ec));
      if (ec) break;
      auto msg = nlohmann::json::parse(beast::buffers_to_string(in.data()), nullptr, false);
      if (!msg.is_object()) continue;
      auto names = [](const nlohmann::json& v) {
        std::set<std::string> out;
        if (v.is_string()) out.insert(v.get<std::string>());
        if (v.is_array()) {
          for (const auto& n : v) {
            if (n.is_string()) out.insert(n.get<std::string>());
          }
        }
        return out;
      };
      if (msg.contains("subscribe")) c->sub->set_filter(names(msg["subscribe"]));
      if (msg.contains("heartbeat")) {
        // The dashboard (or a preview) is looking at these workspaces: they count as active.
        auto snap = cache.get();
        for (const auto& n : names(msg["heartbeat"])) {
          if (const auto* ws = snap->find(n)) ws->activity->touch();
        }
      }
    }
    c->closed = true;
    c->wake.cancel();
  }

  Task<bool> event_socket(Conn& conn, Request& req, Worker& w) {
    if (!beast::websocket::is_upgrade(req)) {
      auto res = make_response(req, bhttp::status::upgrade_required,
                               R"json({"error":{"code":"invalid_argument","message":"/monitor/ws is a WebSocket: connect with a WebSocket client (Upgrade: websocket)"}})json",
                               "application/json");
      res.set(bhttp::field::upgrade, "websocket");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    conn.no_deadline();
    // Without credentials, private workspaces are left out of the hello and the events.
    const bool all = !hooks.signed_in || hooks.signed_in(req[bhttp::field::cookie], req[bhttp::field::authorization]);
    auto ex = w.io.get_executor();
    auto c = std::make_shared<EventClient>(std::move(conn.client), ex);
    std::weak_ptr<EventClient> weak = c;
    c->sub = hooks.events->subscribe([weak, ex] {
      net::post(ex, [weak] {
        auto client = weak.lock();
        if (!client) return;
        if (client->sub->dropped() && client->ws.next_layer().is_open()) {
          logger()->warn("dropping a /monitor/ws client that does not keep up with the events");
          error_code ec;
          client->ws.next_layer().close(ec);  // also ends a write stuck on a full socket
        }
        client->wake.cancel();
      });
    }, opts.event_buffer);
    if (!all) {
      c->sub->set_hidden([holder = &routes](const std::string& name) {
        auto snap = holder->load();
        const WorkspaceView* ws = snap->find(name);
        return ws && !ws->is_public;
      });
    }
    c->ws.set_option(beast::websocket::stream_base::timeout::suggested(beast::role_type::server));
    c->ws.set_option(beast::websocket::stream_base::decorator(
        [](beast::websocket::response_type& r) { r.set(bhttp::field::server, "cloudyknight"); }));
    error_code ec;
    co_await c->ws.async_accept(req, net::redirect_error(use_task, ec));
    if (ec) {
      c->sub->close();
      co_return false;
    }
    conn.status = 101;
    metrics::GaugeHold connected(stats.events_clients);
    {
      auto snap = w.routes.get();
      nlohmann::json list = nlohmann::json::array();
      auto now = unix_ms();
      for (const auto& ws : snap->workspaces) {
        if (!all && !ws.is_public) continue;
        list.push_back({{"name", ws.name},
                        {"type", ws.type},
                        {"status", ws.status},
                        {"frozen", ws.frozen},
                        {"activity", std::string(level_name(ws.asleep() && !ws.frozen
                                                                ? ActivityLevel::stop
                                                                : activity_level(ws.activity->sample(), ws.idle, now)))}});
      }
      nlohmann::json hello = {{"type", "hello"}, {"workspaces", list}};
      std::string text = hello.dump();
      c->ws.text(true);
      co_await c->ws.async_write(net::buffer(text), net::redirect_error(use_task, ec));
    }
    if (!ec) spawn(ex, event_reader(c, &routes), "event socket reader");
    while (!ec && !c->closed) {
      if (c->sub->dropped()) break;
      auto batch = c->sub->take();
      if (batch.empty()) {
        c->wake.expires_at(Timer::time_point::max());
        error_code wait_ec;
        co_await c->wake.async_wait(net::redirect_error(use_task, wait_ec));
        continue;
      }
      for (const auto& m : batch) {
        co_await c->ws.async_write(net::buffer(*m), net::redirect_error(use_task, ec));
        if (ec) break;
      }
    }
    c->sub->close();
    if (!ec && !c->closed && c->ws.is_open()) {
      beast::websocket::close_reason why(beast::websocket::close_code::try_again_later,
                                         "too slow: events were dropped");
      co_await c->ws.async_close(why, net::redirect_error(use_task, ec));
    }
    error_code ignored;
    c->ws.next_layer().close(ignored);
    co_return false;
  }

  http::Response call_control(const Request& req, const std::string& client_ip) {
    http::Request r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    auto [path, query] = http::split_target(r.target);
    r.path = std::string(path);
    r.query = std::string(query);
    for (const auto& f : req) r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    r.body = req.body();
    r.client_ip = client_ip;
    http::Response out;
    try {
      // The dashboard's files first (built into the binary), then the API.
      auto page = dashboard::serve(r);
      out = page ? std::move(*page) : control(r);
    } catch (const std::exception& e) {
      logger()->error("control handler failed on {} {}: {}", r.method, r.target, e.what());
      out = http::Response{};
      out.status = 500;
      out.body = R"({"error":{"code":"internal","message":"the control plane failed; see the daemon log"}})";
    }
    return out;
  }

  StringResponse to_beast(const Request& req, http::Response out) {
    auto res = make_response(req, static_cast<bhttp::status>(out.status), std::move(out.body), out.content_type);
    for (const auto& [k, v] : out.headers) res.set(k, v);
    if (req.method() == bhttp::verb::head) res.body().clear();
    return res;
  }

  // Waits until the stream's producer calls or `wait` passes. False once the client has
  // closed its side (checked after a quiet `wait`, so a stream that never writes ends too).
  static Task<bool> wait_stream(Conn& conn, Timer& timer, Duration wait) {
    timer.expires_after(wait);
    error_code ec;
    co_await timer.async_wait(net::redirect_error(use_task, ec));
    if (ec == net::error::operation_aborted) co_return conn.client.is_open();
    char c;
    ssize_t n = ::recv(conn.client.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    co_return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
  }

  // Sends an answer that a control handler produces later (http/stream.h): the head once it is
  // set, with Content-Length if the body is complete by then, else chunked as bytes arrive.
  Task<bool> relay_stream(Conn& conn, const Request& req, std::shared_ptr<http::ResponseStream> st) {
    auto timer = std::make_shared<Timer>(conn.client.get_executor());
    std::weak_ptr<Timer> weak = timer;
    st->on_ready([ex = conn.client.get_executor(), weak] {
      net::post(ex, [weak] {
        if (auto t = weak.lock()) t->cancel();
      });
    });
    struct Cancel {  // the producer learns at once when this connection stops listening
      std::shared_ptr<http::ResponseStream> st;
      ~Cancel() { st->cancel(); }
    } cancel_on_exit{st};
    constexpr Duration kQuiet = std::chrono::seconds(5);
    conn.no_deadline();
    http::ResponseStream::Chunk first = st->take();
    while (!first.head_ready) {
      if (!co_await wait_stream(conn, *timer, kQuiet)) co_return false;
      first = st->take();
    }
    auto& head = first.head;
    if (first.finished || req.method() == bhttp::verb::head) {
      http::Response out;
      out.status = head.status;
      out.content_type = std::move(head.content_type);
      out.headers = std::move(head.headers);
      out.body = std::move(first.data);
      auto res = to_beast(req, std::move(out));
      co_return co_await write(conn, res) && res.keep_alive() && first.finished;
    }
    bhttp::response<bhttp::empty_body> res{static_cast<bhttp::status>(head.status), req.version()};
    res.set(bhttp::field::server, "cloudyknight");
    res.set(bhttp::field::date, http::http_date_now());
    res.set(bhttp::field::content_type, head.content_type);
    for (const auto& [k, v] : head.headers) res.set(k, v);
    res.set(bhttp::field::cache_control, "no-store");
    res.set("X-Accel-Buffering", "no");  // for a proxy in front of us: pass chunks on at once
    // HTTP/1.0 has no chunked encoding: its body ends when the connection closes.
    const bool chunked = req.version() >= 11;
    res.keep_alive(chunked && req.keep_alive());
    res.chunked(chunked);
    conn.status = head.status;
    error_code ec;
    bhttp::response_serializer<bhttp::empty_body> sr{res};
    conn.expire_in(opts.request_timeout);
    co_await bhttp::async_write_header(conn.client, sr, net::redirect_error(use_task, ec));
    if (ec) co_return false;
    // Counted now, by its time to the head: a followed log may stream for hours.
    count_request(conn);
    std::string data = std::move(first.data);
    bool finished = false;
    for (;;) {
      if (!data.empty()) {
        conn.expire_in(opts.request_timeout);  // a client that stops reading is dropped
        if (chunked) {
          co_await net::async_write(conn.client, bhttp::make_chunk(net::buffer(data)),
                                    net::redirect_error(use_task, ec));
        } else {
          co_await net::async_write(conn.client, net::buffer(data), net::redirect_error(use_task, ec));
        }
        if (ec) co_return false;
      }
      if (finished) break;
      conn.no_deadline();
      auto next = st->take();
      while (next.data.empty() && !next.finished) {
        if (!co_await wait_stream(conn, *timer, kQuiet)) co_return false;
        next = st->take();
      }
      data = std::move(next.data);
      finished = next.finished;
    }
    if (!chunked) co_return false;
    conn.expire_in(opts.request_timeout);
    co_await net::async_write(conn.client, bhttp::make_chunk_last(), net::redirect_error(use_task, ec));
    co_return !ec && res.keep_alive();
  }

  // ---- static files ----------------------------------------------------------------------

  Task<bool> serve_static(Conn& conn, Request& req, const WorkspaceView& ws,
                                    const RouteDecision& d, Worker& w) {
    bool head = req.method() == bhttp::verb::head;
    if (req.method() != bhttp::verb::get && !head) {
      auto res = error_page(req, 405, "Method Not Allowed",
                            fmt::format("'{}' is a static workspace; it answers GET and HEAD only.", ws.name), "");
      res.set(bhttp::field::allow, "GET, HEAD");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    auto [path, query] = http::split_target(d.upstream_target);
    auto lk = resolve_static(ws.static_root, path);
    switch (lk.kind) {
      case StaticLookup::bad_request: {
        auto res = error_page(req, 400, "Bad Request", "This path is not allowed: " + lk.reason + ".", "");
        co_return co_await write(conn, res) && res.keep_alive();
      }
      case StaticLookup::forbidden: {
        auto res = error_page(req, 403, "Forbidden", "This file cannot be served: " + lk.reason + ".", "");
        co_return co_await write(conn, res) && res.keep_alive();
      }
      case StaticLookup::not_found: {
        auto res = error_page(req, 404, "Not Found",
                              fmt::format("'{}' has no file at {}.", ws.name, std::string(path)), "");
        co_return co_await write(conn, res) && res.keep_alive();
      }
      case StaticLookup::redirect_dir: {
        auto res = make_response(req, bhttp::status::moved_permanently, "", "text/plain");
        res.set(bhttp::field::location,
                d.prefix + std::string(path) + "/" + (query.empty() ? "" : "?" + std::string(query)));
        co_return co_await write(conn, res) && res.keep_alive();
      }
      case StaticLookup::file:
        break;
    }
    struct stat st{};
    if (::stat(lk.path.c_str(), &st) != 0) {
      auto res = error_page(req, 404, "Not Found", "The file disappeared.", "");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    std::int64_t mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    std::string etag = make_etag(size, mtime_ns);
    std::string last_modified = http::http_date(st.st_mtim.tv_sec);
    std::string_view type = content_type_for(lk.path);
    // Live reload: HTML pages carry the reload script (a different representation, so a
    // different ETag), whole and uncompressed.
    bool inject = opts.live_reload && type.starts_with("text/html") && size <= kInMemoryFileLimit;
    if (inject) etag.insert(etag.size() - 1, "-lr");
    bool compressible = is_compressible(type);
    std::string_view accept_enc(req[bhttp::field::accept_encoding]);
    bool want_gzip = !inject && compressible && size > 256 && size <= kGzipLimit &&
                     accepts_gzip(accept_enc);
    std::string gz_etag = etag.substr(0, etag.size() - 1) + "-gz\"";

    auto common = [&](auto& res) {
      res.set(bhttp::field::server, "cloudyknight");
      res.set(bhttp::field::date, http::http_date_now());
      res.set(bhttp::field::etag, want_gzip ? gz_etag : etag);
      res.set(bhttp::field::last_modified, last_modified);
      res.set(bhttp::field::cache_control, "no-cache");
      res.set(bhttp::field::accept_ranges, "bytes");
      if (compressible) res.set(bhttp::field::vary, "Accept-Encoding");
      res.keep_alive(req.keep_alive());
    };

    std::string_view inm(req[bhttp::field::if_none_match]);
    bool not_modified = false;
    if (!inm.empty()) {
      not_modified = http::etag_matches(inm, etag) || http::etag_matches(inm, gz_etag);
    } else if (auto ims = http::parse_http_date(std::string_view(req[bhttp::field::if_modified_since]))) {
      not_modified = st.st_mtim.tv_sec <= *ims;
    }
    if (not_modified) {
      bhttp::response<bhttp::empty_body> res{bhttp::status::not_modified, req.version()};
      common(res);
      co_return co_await write(conn, res) && res.keep_alive();
    }

    ByteRange range;
    RangeResult rr = RangeResult::none;
    if (req.count(bhttp::field::range) && !head && !inject) {
      std::string_view if_range(req[bhttp::field::if_range]);
      if (if_range.empty() || if_range == etag || if_range == last_modified) {
        rr = parse_range(std::string_view(req[bhttp::field::range]), size, range);
      }
    }
    if (rr == RangeResult::unsatisfiable) {
      auto res = make_response(req, bhttp::status::range_not_satisfiable, "", "text/plain");
      want_gzip = false;
      common(res);
      res.set(bhttp::field::content_range, fmt::format("bytes */{}", size));
      co_return co_await write(conn, res) && res.keep_alive();
    }
    if (rr == RangeResult::ok) {
      want_gzip = false;
      std::uint64_t len = std::min<std::uint64_t>(range.last - range.first + 1, kMaxRangeBytes);
      range.last = range.first + len - 1;
      std::string body(len, '\0');
      int fd = ::open(lk.path.c_str(), O_RDONLY | O_CLOEXEC);
      ssize_t got = fd >= 0 ? ::pread(fd, body.data(), len, static_cast<off_t>(range.first)) : -1;
      if (fd >= 0) ::close(fd);
      if (got != static_cast<ssize_t>(len)) {
        auto res = error_page(req, 500, "Internal Server Error", "The file could not be read.", "");
        co_return co_await write(conn, res) && res.keep_alive();
      }
      auto res = make_response(req, bhttp::status::partial_content, std::move(body), type);
      common(res);
      res.set(bhttp::field::content_range, fmt::format("bytes {}-{}/{}", range.first, range.last, size));
      co_return co_await write(conn, res) && res.keep_alive();
    }

    if (want_gzip) {
      std::string key = lk.path.string() + etag;
      auto packed = w.gzip_cache.get(key);
      if (!packed) {
        auto raw = read_file(lk.path, size);
        if (!raw) {
          auto res = error_page(req, 500, "Internal Server Error", "The file could not be read.", "");
          co_return co_await write(conn, res) && res.keep_alive();
        }
        auto z = gzip(*raw);
        if (z.empty()) want_gzip = false;
        else packed = std::make_shared<const std::string>(std::move(z));
        if (packed) w.gzip_cache.put(key, packed);
      }
      if (packed) {
        auto res = make_response(req, bhttp::status::ok, head ? std::string() : *packed, type);
        common(res);
        res.set(bhttp::field::content_encoding, "gzip");
        if (head) res.content_length(packed->size());
        co_return co_await write(conn, res) && res.keep_alive();
      }
    }
    if (size <= kInMemoryFileLimit || head) {
      std::string body;
      if (!head || inject) {
        auto raw = read_file(lk.path, size);
        if (!raw) {
          auto res = error_page(req, 500, "Internal Server Error", "The file could not be read.", "");
          co_return co_await write(conn, res) && res.keep_alive();
        }
        body = inject ? inject_reload_script(std::move(*raw), ws.name) : std::move(*raw);
      }
      std::uint64_t length = inject ? body.size() : size;
      if (head) body.clear();
      auto res = make_response(req, bhttp::status::ok, std::move(body), type);
      common(res);
      if (head) res.content_length(length);
      co_return co_await write(conn, res) && res.keep_alive();
    }
    bhttp::response<bhttp::file_body> res{bhttp::status::ok, req.version()};
    error_code ec;
    res.body().open(lk.path.c_str(), beast::file_mode::scan, ec);
    if (ec) {
      auto err = error_page(req, 500, "Internal Server Error", "The file could not be opened.", "");
      co_return co_await write(conn, err) && err.keep_alive();
    }
    res.set(bhttp::field::content_type, type);
    common(res);
    res.prepare_payload();
    co_return co_await write(conn, res) && res.keep_alive();
  }

  static std::optional<std::string> read_file(const std::filesystem::path& p, std::uint64_t size) {
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::string out(size, '\0');
    std::uint64_t off = 0;
    while (off < size) {
      ssize_t n = ::pread(fd, out.data() + off, size - off, static_cast<off_t>(off));
      if (n <= 0) break;
      off += static_cast<std::uint64_t>(n);
    }
    ::close(fd);
    out.resize(off);
    return out;
  }

  // ---- reverse proxy ---------------------------------------------------------------------

  // Waits on an upstream socket under the connection's deadline (the watchdog cancels it).
  struct UpstreamWait {
    UpstreamWait(Conn& c, Socket& s, Duration d) : conn(c) {
      conn.upstream = &s;
      conn.expire_in(d);
    }
    ~UpstreamWait() { conn.upstream = nullptr; }
    Conn& conn;
  };

  Task<std::unique_ptr<UpstreamConn>> connect_upstream(Conn& conn, Worker& w, const tcp::endpoint& ep,
                                                                 error_code& ec) {
    auto up = std::make_unique<UpstreamConn>(w.io.get_executor());
    UpstreamWait wait(conn, up->socket, std::min<Duration>(opts.request_timeout, std::chrono::seconds(10)));
    co_await up->socket.async_connect(ep, net::redirect_error(use_task, ec));
    if (!ec) up->socket.set_option(tcp::no_delay(true), ec);
    if (!ec) up->socket.non_blocking(true, ec);
    co_return up;
  }

  // A pooled connection; for requests that must not be sent twice, only one that is
  // certainly still open (the others are retried on a fresh connection if it was closed).
  std::unique_ptr<UpstreamConn> take_idle(Worker& w, const std::string& key, bool check_open) {
    auto it = w.idle.find(key);
    if (it == w.idle.end()) return nullptr;
    auto& v = it->second;
    while (!v.empty()) {
      auto c = std::move(v.back());
      v.pop_back();
      if (!check_open || !looks_closed(c->socket)) return c;
    }
    return nullptr;
  }

  void give_back(Worker& w, const std::string& key, std::unique_ptr<UpstreamConn> c) {
    auto& v = w.idle[key];
    if (v.size() < kMaxIdlePerUpstream && c->buffer.size() == 0) v.push_back(std::move(c));
  }

  void set_forwarded(Request& req, const RouteDecision& d, const std::string& client_ip) {
    std::string_view xff = req["X-Forwarded-For"];
    req.set("X-Forwarded-For", xff.empty() ? client_ip : std::string(xff) + ", " + client_ip);
    req.set("X-Forwarded-Proto", "http");
    std::string_view host = req[bhttp::field::host];
    if (!host.empty()) req.set("X-Forwarded-Host", host);
    if (d.prefix.empty()) req.erase("X-Forwarded-Prefix");
    else req.set("X-Forwarded-Prefix", d.prefix);
    req.target(d.upstream_target);
    if (!hooks.session_cookie.empty()) {
      std::string_view cookie = req[bhttp::field::cookie];
      if (cookie.find(hooks.session_cookie) != std::string_view::npos) {
        std::string rest = http::without_cookie(cookie, hooks.session_cookie);
        if (rest.empty()) req.erase(bhttp::field::cookie);
        else req.set(bhttp::field::cookie, rest);
      }
    }
  }

  Task<bool> proxy(Conn& conn, beast::flat_buffer& client_buf, Request& req,
                             const WorkspaceView& ws, const RouteDecision& d, Worker& w,
                             const std::string& client_ip) {
    bool client_keep = req.keep_alive();
    int client_version = req.version();
    bool upgrade = http::header_has_token(req[bhttp::field::connection], "upgrade") &&
                   req.count(bhttp::field::upgrade);
    error_code ec;
    tcp::endpoint ep(net::ip::make_address(ws.upstream_host.empty() ? "127.0.0.1" : ws.upstream_host, ec),
                     static_cast<unsigned short>(ws.port));
    set_forwarded(req, d, client_ip);
    strip_hop_by_hop(req, upgrade);
    req.erase(bhttp::field::expect);
    req.version(11);
    if (upgrade) co_return co_await tunnel(conn, client_buf, req, ws, w, ep);
    req.keep_alive(true);
    if (!req.body().empty() || req.count(bhttp::field::content_length) || req.chunked()) req.prepare_payload();
    std::string key = ws.upstream_host;
    key += ':';
    key += std::to_string(ws.port);
    bool idempotent = is_idempotent(req.method());

    std::unique_ptr<UpstreamConn> up;
    std::optional<bhttp::response_parser<bhttp::buffer_body>> parser;
    for (int attempt = 0;; ++attempt) {
      bool reused = false;
      up = attempt == 0 ? take_idle(w, key, !idempotent) : nullptr;
      if (up) {
        reused = true;
      } else {
        up = co_await connect_upstream(conn, w, ep, ec);
        if (ec) co_return co_await upstream_failed(conn, req, ws, ec, client_keep, client_version);
      }
      {
        UpstreamWait wait(conn, up->socket, opts.request_timeout);
        bhttp::request_serializer<bhttp::string_body> rs{req};
        co_await send(up->socket, rs, ec, &conn.flat);
        if (!ec) {
          parser.emplace();
          parser->header_limit(64 * 1024);
          parser->body_limit(std::numeric_limits<std::uint64_t>::max());  // not boost::none: 1.74 compares it wrongly
          if (req.method() == bhttp::verb::head) parser->skip(true);
          co_await bhttp::async_read_header(up->socket, up->buffer, *parser,
                                            net::redirect_error(use_task, ec));
        }
      }
      if (!ec) break;
      // A pooled connection the app had already closed: try once more on a fresh one.
      if (reused && attempt == 0 && !conn.timed_out && idempotent) continue;
      co_return co_await upstream_failed(conn, req, ws, ec, client_keep, client_version);
    }

    auto& res = parser->get();
    conn.status = res.result_int();
    bool upstream_keep = res.keep_alive();
    strip_hop_by_hop(res, false);
    res.set(bhttp::field::server, "cloudyknight");
    bool delimited = res.has_content_length() || res.chunked() || parser->is_done();
    if (!delimited) {
      // Body runs to EOF: re-frame it as chunked so the client connection can live on.
      if (client_version >= 11) res.chunked(true);
      else client_keep = false;
      upstream_keep = false;
    }
    res.keep_alive(client_keep);
    res.version(client_version);

    if (!conn.relay) conn.relay.reset(new char[kRelayChunk]);
    char* chunk = conn.relay.get();
    bhttp::serializer<false, bhttp::buffer_body> sr{res};
    do {
      if (!parser->is_done()) {
        res.body().data = chunk;
        res.body().size = kRelayChunk;
        // Body bytes that came with the headers (all of a small response) are parsed here,
        // without another trip through the io_context.
        while (up->buffer.size() > 0 && !parser->is_done() && res.body().size > 0) {
          std::size_t used = parser->put(up->buffer.data(), ec);
          up->buffer.consume(used);
          if (ec == bhttp::error::need_buffer) ec = {};
          if (ec || used == 0) break;
        }
        if (!ec && !parser->is_done() && res.body().size == kRelayChunk) {
          UpstreamWait wait(conn, up->socket, opts.request_timeout);
          co_await bhttp::async_read(up->socket, up->buffer, *parser, net::redirect_error(use_task, ec));
        }
        if (ec == bhttp::error::need_buffer) ec = {};
        if (ec) {
          stats.upstream_errors.inc();
          logger()->warn("[ws={}] upstream failed mid-response: {}", ws.name,
                         conn.timed_out ? "timed out" : ec.message());
          co_return false;  // headers are out: all we can do is close
        }
        res.body().size = kRelayChunk - res.body().size;
        res.body().data = chunk;
        res.body().more = !parser->is_done();
      } else {
        res.body().data = nullptr;
        res.body().size = 0;
        res.body().more = false;
      }
      conn.expire_in(opts.request_timeout);
      co_await send(conn.client, sr, ec, &conn.flat);
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec) co_return false;
    } while (!parser->is_done() || !sr.is_done());

    if (upstream_keep) give_back(w, key, std::move(up));
    co_return client_keep;
  }

  Task<bool> upstream_failed(Conn& conn, const Request& req, const WorkspaceView& ws,
                                       error_code ec, bool client_keep, int client_version) {
    stats.upstream_errors.inc();
    Request shape;
    shape.version(client_version);
    shape.keep_alive(client_keep);
    shape.method(req.method());
    if (conn.timed_out) {
      logger()->warn("[ws={}] app did not answer within {}", ws.name, format_duration(opts.request_timeout));
      auto res = error_page(shape, 504, "Gateway Timeout",
                            fmt::format("Workspace '{}' did not answer within {}.", ws.name,
                                        format_duration(opts.request_timeout)),
                            "The app may be stuck or slow; check its log, or raise gateway.request_timeout.");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    logger()->warn("[ws={}] app on port {} failed: {}", ws.name, ws.port, ec.message());
    auto res = error_page(shape, 502, "Bad Gateway",
                          fmt::format("Workspace '{}' did not give a valid answer ({}).", ws.name, ec.message()),
                          "The app may have crashed or closed the connection; CloudyKnight restarts crashed "
                          "apps on its own. Check its log.");
    co_return co_await write(conn, res) && res.keep_alive();
  }

  // ---- WebSocket (and any Upgrade) passthrough ---------------------------------------

  struct Tunnel {
    Tunnel(Socket& a, Socket b) : client(a), upstream(std::move(b)) {}
    Socket& client;  // owned by the session's Conn, which outlives the tunnel
    Socket upstream;
    void close() {
      error_code ec;
      client.close(ec);
      upstream.close(ec);
    }
  };

  // `keep` holds the session's connection (whose socket the tunnel borrows) until both
  // directions are done.
  static Task<void> pump(std::shared_ptr<Conn> keep, std::shared_ptr<Tunnel> t, bool to_upstream) {
    Socket& from = to_upstream ? t->client : t->upstream;
    Socket& to = to_upstream ? t->upstream : t->client;
    std::unique_ptr<char[]> data(new char[kRelayChunk]);
    for (;;) {
      error_code ec;
      std::size_t n = co_await from.async_read_some(net::buffer(data.get(), kRelayChunk),
                                                    net::redirect_error(use_task, ec));
      if (ec) break;
      co_await net::async_write(to, net::buffer(data.get(), n), net::redirect_error(use_task, ec));
      if (ec) break;
    }
    t->close();
    keep.reset();
  }

  Task<bool> tunnel(Conn& conn, beast::flat_buffer& client_buf, Request& req,
                              const WorkspaceView& ws, Worker& w, const tcp::endpoint& ep) {
    error_code ec;
    auto up = co_await connect_upstream(conn, w, ep, ec);
    if (ec) co_return co_await upstream_failed(conn, req, ws, ec, false, req.version());
    req.prepare_payload();
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(opts.max_body);
    {
      UpstreamWait wait(conn, up->socket, opts.request_timeout);
      co_await bhttp::async_write(up->socket, req, net::redirect_error(use_task, ec));
      if (!ec) {
        co_await bhttp::async_read_header(up->socket, up->buffer, parser, net::redirect_error(use_task, ec));
      }
      if (!ec && parser.get().result() != bhttp::status::switching_protocols && !parser.is_done()) {
        co_await bhttp::async_read(up->socket, up->buffer, parser, net::redirect_error(use_task, ec));
      }
    }
    if (ec) co_return co_await upstream_failed(conn, req, ws, ec, false, req.version());
    if (parser.get().result() != bhttp::status::switching_protocols) {
      // The app declined the upgrade: pass its answer on and close.
      auto res = parser.release();
      res.keep_alive(false);
      co_await write(conn, res);
      co_return false;
    }
    auto res = parser.release();
    res.set(bhttp::field::server, "cloudyknight");
    bhttp::response_serializer<bhttp::string_body> sr{res};
    conn.expire_in(opts.request_timeout);
    conn.status = 101;
    co_await bhttp::async_write_header(conn.client, sr, net::redirect_error(use_task, ec));
    if (ec) co_return false;
    // Bytes that arrived with the handshake belong to the tunnel.
    if (up->buffer.size() > 0) {
      co_await net::async_write(conn.client, up->buffer.data(), net::redirect_error(use_task, ec));
      if (ec) co_return false;
    }
    if (client_buf.size() > 0) {
      co_await net::async_write(up->socket, client_buf.data(), net::redirect_error(use_task, ec));
      if (ec) co_return false;
      client_buf.consume(client_buf.size());
    }
    conn.no_deadline();  // a WebSocket may stay quiet for as long as it likes
    auto t = std::make_shared<Tunnel>(conn.client, std::move(up->socket));
    // An open WebSocket keeps its workspace active; its close starts the reconnect grace.
    std::shared_ptr<Activity> activity = ws.activity;
    activity->socket_opened();
    spawn(w.io.get_executor(), pump(conn.shared_from_this(), t, false), "websocket tunnel");
    co_await pump(nullptr, t, true);
    activity->socket_closed();
    co_return false;
  }
};

Gateway::Gateway(GatewayOptions opts, const SnapshotHolder& routes, ControlHandler control,
                 GatewayHooks hooks)
    : impl_(std::make_unique<Impl>(std::move(opts), routes, std::move(control), std::move(hooks))) {}

Gateway::~Gateway() { stop(); }

Result<std::uint16_t> Gateway::listen() {
  auto& o = impl_->opts;
  int n = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  error_code ec;
  auto addr = net::ip::make_address(o.host, ec);
  if (ec) return fail(Errc::invalid_argument, fmt::format("'{}' is not an IP address to listen on", o.host));
  std::uint16_t port = o.port;
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<Impl::Worker>(impl_->routes);
    auto acc = std::make_unique<Acceptor>(w->io);
    tcp::endpoint ep(addr, port);
    acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) {
      int one = 1;
      if (::setsockopt(acc->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        ec = error_code(errno, boost::system::system_category());
      }
    }
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return fail(Errc::unavailable,
                  fmt::format("cannot listen on {}:{}: {} (is another server using it? pick another "
                              "address with --listen)",
                              o.host, port, ec.message()));
    }
    if (port == 0) port = acc->local_endpoint().port();
    ::fcntl(acc->native_handle(), F_SETFD, FD_CLOEXEC);
    w->acceptor = std::move(acc);
    impl_->workers.push_back(std::move(w));
  }
  return port;
}

void Gateway::start() {
  for (auto& w : impl_->workers) {
    Impl::Worker* wp = w.get();
    spawn(wp->io.get_executor(), impl_->accept_loop(*wp), "gateway accept loop");
    wp->thread = std::thread([wp] {
      for (;;) {
        try {
          wp->io.run();
          break;
        } catch (const std::exception& e) {
          logger()->error("gateway worker caught: {}", e.what());
        }
      }
    });
  }
  impl_->running = true;
}

void Gateway::stop() {
  if (!impl_->running) return;
  impl_->running = false;
  // Event subscribers notify by posting to their worker: detach them before workers stop.
  if (impl_->hooks.events) impl_->hooks.events->close_all();
  for (auto& w : impl_->workers) {
    Impl::Worker* wp = w.get();
    net::post(wp->io, [wp] {
      error_code ec;
      wp->acceptor->close(ec);
      wp->io.stop();
    });
  }
  for (auto& w : impl_->workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  impl_->workers.clear();
}

}  // namespace ck
