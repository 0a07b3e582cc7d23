// The control plane's side of the gateway: /monitor requests handed to the ControlHandler
// (and the dashboard's files), answers it streams later (http/stream.h) and the /monitor/ws
// event socket. The only translation unit with Beast's WebSocket in it.
#include "http/asio.h"
// clang-format off
#include <boost/beast/websocket.hpp>
// clang-format on
#include <fmt/format.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>
#include <set>

#include "dashboard/dashboard.h"
#include "events/events.h"
#include "gateway/impl.h"
#include "http/url.h"

namespace ck {
using namespace gw;

// ---- /monitor/ws: the event stream -----------------------------------------------------

namespace {

}  // namespace

// beast's WebSocket closes the layer below it through these (found by ADL, so in gw): over
// TLS, a close_notify first.
namespace gw {
template <class Handler>
void async_teardown(beast::role_type role, ClientStream& s, Handler&& handler) {
  if (s.tls()) {
    s.async_close_notify([h = std::forward<Handler>(handler)](error_code ec, std::size_t) mutable {
      std::move(h)(ec);
    });
  } else {
    beast::websocket::async_teardown(role, s.next_layer(), std::forward<Handler>(handler));
  }
}
inline void teardown(beast::role_type role, ClientStream& s, error_code& ec) {
  if (s.tls()) {
    (void)s.tls_conn().close_notify(ec);  // now or not at all: teardown() must not wait
  } else {
    beast::websocket::teardown(role, s.next_layer(), ec);
  }
}
}  // namespace gw

namespace {

struct EventClient {
  // Holds the session's connection, whose stream it uses, until the reader is done too.
  EventClient(std::shared_ptr<Conn> c, Executor ex)
      : conn(std::move(c)), ws(conn->client), wake(ex) {}
  std::shared_ptr<Conn> conn;
  beast::websocket::stream<ClientStream&> ws;
  Timer wake;  // cancelled when events are queued (or the subscription was dropped)
  std::shared_ptr<Subscription> sub;
  bool closed = false;
};

Task<void> event_reader(std::shared_ptr<EventClient> c, const SnapshotHolder* routes) {
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

}  // namespace

Task<bool> Gateway::Impl::event_socket(Conn& conn, Request& req, Worker& w) {
  if (!beast::websocket::is_upgrade(req)) {
    auto res = make_response(req, bhttp::status::upgrade_required,
                             R"json({"error":{"code":"invalid_argument","message":"/monitor/ws is a WebSocket: connect with a WebSocket client (Upgrade: websocket)"}})json",
                             "application/json");
    res.set(bhttp::field::upgrade, "websocket");
    co_return co_await write(conn, res) && res.keep_alive();
  }
  conn.no_deadline();
  // What this client may not see is left out of the hello and the events (issue 13).
  GatewayHooks::WorkspaceVisible visible;
  if (hooks.event_visibility) visible = hooks.event_visibility(req[bhttp::field::cookie], req[bhttp::field::authorization]);
  auto ex = w.io.get_executor();
  auto c = std::make_shared<EventClient>(conn.shared_from_this(), ex);
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
  if (visible) {
    c->sub->set_hidden([holder = &routes, visible](const std::string& name) {
      auto snap = holder->load();
      return !visible(name, snap->find(name));
    });
  }
  c->ws.set_option(beast::websocket::stream_base::timeout::suggested(beast::role_type::server));
  std::string sts = conn.client.tls() ? hsts : std::string();
  auto decorate = [sts](beast::websocket::response_type& r) {
    r.set(bhttp::field::server, "cloudyknight");
    if (!sts.empty()) r.set(bhttp::field::strict_transport_security, sts);
  };
  c->ws.set_option(beast::websocket::stream_base::decorator(decorate));
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
      if (visible && !visible(ws.name, &ws)) continue;
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

http::Response Gateway::Impl::call_control(const Request& req, const std::string& client_ip) {
  http::Request r;
  r.method = std::string(req.method_string());
  r.target = std::string(req.target());
  auto [path, query] = http::split_target(r.target);
  r.path = std::string(path);
  r.query = std::string(query);
  for (const auto& f : req) r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  r.body = req.body();
  r.client_ip = client_ip;
  r.tls = !opts.tls.empty();
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

StringResponse Gateway::Impl::to_beast(const Request& req, http::Response out) {
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
Task<bool> Gateway::Impl::relay_stream(Conn& conn, const Request& req, std::shared_ptr<http::ResponseStream> st) {
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
  if (!hsts.empty() && conn.client.tls()) res.set(bhttp::field::strict_transport_security, hsts);
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

}  // namespace ck
