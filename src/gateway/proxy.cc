// The reverse proxy: requests forwarded to a workspace's app over a per-worker pool of
// keep-alive upstream connections, responses relayed as they arrive, and Upgrade requests
// (WebSocket) turned into byte tunnels.
#include <cctype>
#include <fmt/format.h>
#include <sys/socket.h>

#include <array>
#include <limits>

#include "gateway/forward.h"
#include "gateway/impl.h"
#include "http/url.h"

namespace ck {
using namespace gw;

namespace {

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

}  // namespace

// ---- reverse proxy ---------------------------------------------------------------------

// Waits on an upstream socket under the connection's deadline (the watchdog cancels it).
namespace {

struct UpstreamWait {
  UpstreamWait(Conn& c, Socket& s, Duration d) : conn(c) {
    conn.upstream = &s;
    conn.expire_in(d);
  }
  ~UpstreamWait() { conn.upstream = nullptr; }
  Conn& conn;
};

}  // namespace

Task<std::unique_ptr<UpstreamConn>> Gateway::Impl::connect_upstream(Conn& conn, Worker& w, const tcp::endpoint& ep,
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
std::unique_ptr<UpstreamConn> Gateway::Impl::take_idle(Worker& w, const std::string& key, bool check_open) {
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

void Gateway::Impl::give_back(Worker& w, const std::string& key, std::unique_ptr<UpstreamConn> c) {
  auto& v = w.idle[key];
  if (v.size() < kMaxIdlePerUpstream && c->buffer.size() == 0) v.push_back(std::move(c));
}

void Gateway::Impl::drop_session_set_cookies(bhttp::fields& f, const std::string& workspace) {
  if (hooks.session_cookie.empty() || !f.count(bhttp::field::set_cookie)) return;
  const std::string& host_name = host_session_cookie;
  for (auto it = f.begin(); it != f.end();) {
    std::string_view v(it->value().data(), it->value().size());
    if (it->name() == bhttp::field::set_cookie &&
        (http::sets_cookie(v, hooks.session_cookie) || http::sets_cookie(v, host_name))) {
      logger()->debug("[ws={}] dropped a Set-Cookie for the control plane's session cookie", workspace);
      it = f.erase(it);
    } else {
      ++it;
    }
  }
}

Task<bool> Gateway::Impl::proxy(Conn& conn, beast::flat_buffer& client_buf, Request& req,
                           const WorkspaceView& ws, const RouteDecision& d, Worker& w,
                           const std::string& client_ip) {
  bool client_keep = req.keep_alive();
  int client_version = req.version();
  bool upgrade = http::header_has_token(req[bhttp::field::connection], "upgrade") &&
                 req.count(bhttp::field::upgrade);
  error_code ec;
  tcp::endpoint ep(net::ip::make_address(ws.upstream_host.empty() ? "127.0.0.1" : ws.upstream_host, ec),
                   static_cast<unsigned short>(ws.port));
  // The request head is written straight from the parsed fields (forward.h): hop-by-hop
  // fields out, the gateway's forwarding fields in, session cookies out, its own framing.
  conn.fields.clear();
  for (const auto& f : req) conn.fields.push_back({f.name_string(), f.value()});
  UpstreamRequestHead head;
  head.method = req.method_string();
  head.target = d.upstream_target;
  head.fields = conn.fields;
  head.client_ip = client_ip;
  head.prefix = d.prefix;
  if (!hooks.session_cookie.empty()) {
    head.session_cookie = hooks.session_cookie;
    head.host_session_cookie = host_session_cookie;
  }
  head.upgrade = upgrade;
  if (!req.body().empty() || req.count(bhttp::field::content_length) || req.chunked()) {
    head.content_length = req.body().size();
  }
  conn.upstream_head.clear();
  append_upstream_request_head(head, conn.upstream_head);
  if (upgrade) co_return co_await tunnel(conn, client_buf, req, ws, w, ep);
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
      std::array<net::const_buffer, 2> out{net::buffer(conn.upstream_head), net::buffer(req.body())};
      co_await write_all(up->socket, out, ec);
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
  drop_session_set_cookies(res, ws.name);
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

Task<bool> Gateway::Impl::upstream_failed(Conn& conn, const Request& req, const WorkspaceView& ws,
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

namespace {

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

// `conn` holds the session's connection (whose socket the tunnel borrows) until both
// directions are done; its deadline, moved on by traffic either way, is the idle timeout
// (the watchdog closes the client socket, which ends both directions).
Task<void> pump(std::shared_ptr<Conn> conn, std::shared_ptr<Tunnel> t, bool to_upstream, Duration idle) {
  Socket& from = to_upstream ? t->client : t->upstream;
  Socket& to = to_upstream ? t->upstream : t->client;
  std::unique_ptr<char[]> data(new char[kRelayChunk]);
  for (;;) {
    error_code ec;
    std::size_t n = co_await from.async_read_some(net::buffer(data.get(), kRelayChunk),
                                                  net::redirect_error(use_task, ec));
    if (ec) break;
    conn->expire_in(idle);
    co_await net::async_write(to, net::buffer(data.get(), n), net::redirect_error(use_task, ec));
    if (ec) break;
  }
  t->close();
  conn.reset();
}

}  // namespace

Task<bool> Gateway::Impl::tunnel(Conn& conn, beast::flat_buffer& client_buf, Request& req,
                            const WorkspaceView& ws, Worker& w, const tcp::endpoint& ep) {
  error_code ec;
  auto up = co_await connect_upstream(conn, w, ep, ec);
  if (ec) co_return co_await upstream_failed(conn, req, ws, ec, false, req.version());
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(opts.max_body);
  {
    UpstreamWait wait(conn, up->socket, opts.request_timeout);
    std::array<net::const_buffer, 2> out{net::buffer(conn.upstream_head), net::buffer(req.body())};
    co_await write_all(up->socket, out, ec);
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
    drop_session_set_cookies(res, ws.name);
    res.keep_alive(false);
    co_await write(conn, res);
    co_return false;
  }
  auto res = parser.release();
  drop_session_set_cookies(res, ws.name);
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
  conn.expire_in(opts.ws_idle_timeout);  // a tunnel quiet both ways for this long is closed
  auto t = std::make_shared<Tunnel>(conn.client, std::move(up->socket));
  // An open WebSocket keeps its workspace active; its close starts the reconnect grace.
  std::shared_ptr<Activity> activity = ws.activity;
  activity->socket_opened();
  spawn(w.io.get_executor(), pump(conn.shared_from_this(), t, false, opts.ws_idle_timeout),
        "websocket tunnel");
  co_await pump(conn.shared_from_this(), t, true, opts.ws_idle_timeout);
  activity->socket_closed();
  co_return false;
}

}  // namespace ck
