// Upgrade requests (WebSocket): the app's 101 relayed, then a byte tunnel both ways under the
// idle timeout. The plain reverse proxy is in proxy.cc; the design is in impl.h.
#include <memory>

#include "gateway/impl.h"

namespace ck {
using namespace gw;

namespace {

struct Tunnel {
  Tunnel(ClientStream& a, Socket b) : client(a), upstream(std::move(b)) {}
  ClientStream& client;  // owned by the session's Conn, which outlives the tunnel
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
template <class From, class To>
Task<void> pump(std::shared_ptr<Conn> conn, std::shared_ptr<Tunnel> t, From& from, To& to,
                Duration idle) {
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
                                 const WorkspaceView& ws, Worker& w, const tcp::endpoint& ep,
                                 UpstreamRetry* retry) {
  error_code ec;
  auto up = co_await connect_upstream(conn, w, ep, ec);
  if (ec && retry && !conn.timed_out && app_went_away(ec)) {
    *retry = {true, ec};
    co_return false;
  }
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
  if (!hsts.empty() && conn.client.tls()) res.set(bhttp::field::strict_transport_security, hsts);
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
  spawn(w.io.get_executor(),
        pump(conn.shared_from_this(), t, t->upstream, t->client, opts.ws_idle_timeout),
        "websocket tunnel");
  co_await pump(conn.shared_from_this(), t, t->client, t->upstream, opts.ws_idle_timeout);
  activity->socket_closed();
  co_return false;
}

}  // namespace ck
