#pragma once
// Private to the gateway (only gateway/*.cc include it): the types its translation units share
// and the Impl behind Gateway. Each .cc holds one responsibility:
//   client_stream.h  (header) the client stream, plain or TLS; the head read; the writes
//   listener.cc      acceptors, admission, balancing over the workers, watchdog, listen/start/stop
//   gateway.cc       the session loop, routing and the gateway's own answers
//   proxy.cc         reverse proxy, upstream pool
//   tunnel.cc        Upgrade tunnels (WebSocket)
//   serve_static.cc  static workspaces
//   control.cc       the control plane (/monitor API, streamed answers) and /monitor/ws
//
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
//
// TLS (gateway.tls): the client side is a ClientStream (client_stream.h), a plain socket with
// an optional TLS layer over it, so one session code path serves both; the handshake runs
// first in the session under the header deadline. The plain path costs one branch per I/O.
#include "gateway/gateway.h"

#include "http/asio.h"
// clang-format off
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/log.h"
#include "http/stream.h"
#include "gateway/client_stream.h"
#include "gateway/forward.h"
#include "gateway/gateway_metrics.h"
#include "gateway/read_ready.h"
#include "gateway/route.h"
#include "gateway/static_files.h"
#include "gateway/tls.h"

namespace ck {
namespace gw {

using Acceptor = net::basic_socket_acceptor<tcp, Executor>;
using Timer = net::basic_waitable_timer<std::chrono::steady_clock,
                                        net::wait_traits<std::chrono::steady_clock>, Executor>;

using StringResponse = bhttp::response<bhttp::string_body>;
using Request = bhttp::request<bhttp::string_body>;

inline auto logger() {
  static auto l = log::get("gateway");
  return l;
}

constexpr std::size_t kRelayChunk = 64 * 1024;
constexpr std::size_t kMaxIdlePerUpstream = 256;
// Idle pooled connections to apps are looked at this often, and closed once the app closed its
// side or once unused for kUpstreamIdleFor (an app that restarts on a new port never takes its
// old ones back).
constexpr Duration kUpstreamSweepEvery = std::chrono::seconds(5);
constexpr Duration kUpstreamIdleFor = std::chrono::seconds(30);
// Each worker accepts on its own SO_REUSEPORT listener, where the kernel spreads connections
// by a hash of their addresses: 64 connections split 38/26 as often as 32/32, and the busier
// worker then sets the throughput and the tail latency. A worker that accepts a connection while
// another serves this many fewer hands it over.
constexpr int kBalanceSlack = 2;
constexpr std::uint64_t kGzipCacheBytes = 64 << 20;
// Request bodies for the control plane are read into memory: its handlers take small JSON.
constexpr std::uint64_t kControlMaxBody = 2 << 20;

// One idle keep-alive connection to an app.
struct UpstreamConn {
  explicit UpstreamConn(Executor ex) : socket(ex) {}
  Socket socket;
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since{};  // when it went back to the pool
};

// A proxied request the app dropped before it answered anything, in a way a crash or a
// restart of the app explains (connection refused, reset or closed; for a request that is not
// idempotent only when it could not even connect, so nothing of it was sent): proxy() answers
// nothing and says so here, and the caller may hold the request until the app is back and
// send it once more (wait_for_wake).
struct UpstreamRetry {
  bool wanted = false;
  gw::error_code ec;
};

// Failures of an app that is going away or not listening (a crash, a stop for a restart):
// the app may come back, and a request that failed this way may be held and sent again.
inline bool app_went_away(const error_code& ec) {
  return ec == net::error::connection_refused || ec == net::error::connection_reset ||
         ec == net::error::connection_aborted || ec == net::error::broken_pipe ||
         ec == net::error::eof || ec == bhttp::error::end_of_stream;
}

// How many client connections a worker serves: what balance_to() compares (read by every
// worker's accept loop) and the gauge cloudyknight_gateway_worker_connections{worker}.
struct WorkerLoad {
  std::atomic<int> n{0};
  metrics::Gauge* gauge = nullptr;
  void add() {
    n.fetch_add(1, std::memory_order_relaxed);
    if (gauge) gauge->inc();
  }
  void sub() {
    n.fetch_sub(1, std::memory_order_relaxed);
    if (gauge) gauge->dec();
  }
};

// One client connection: its socket, the deadline of whatever it waits on, and the upstream
// socket it waits on, if any. Shared by the session and its watchdog; used on one thread.
struct Conn : std::enable_shared_from_this<Conn> {
  explicit Conn(Socket s) : client(std::move(s)), watchdog(client.get_executor()) {}
  ClientStream client;
  Socket* upstream = nullptr;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  bool timed_out = false;
  bool done = false;
  Timer watchdog;
  std::unique_ptr<char[]> relay;  // the relay buffer, allocated on the first proxied request
  std::string flat;               // scratch for gathering small messages into one send
  // Scratch of the proxied request being forwarded (capacity kept between requests): its
  // header fields as views into the parsed request, and the head written to the app.
  std::vector<HeaderField> fields;
  std::string upstream_head;
  // The request being answered, for the metrics: its kind (set by handle()), the status sent
  // (by write(), proxy() and the upgrades; 0 = none yet) and when its headers arrived.
  RequestKind kind = RequestKind::other;
  int status = 0;
  std::chrono::steady_clock::time_point started;
  // While the session waits for a keep-alive connection's next request under the idle
  // timeout: its read buffer. The watchdog switches to the header deadline once bytes of a
  // request arrived in it (a slow sender gets header_timeout, not the idle timeout).
  const beast::flat_buffer* header_buf = nullptr;
  // The connection's place under gateway.max_connections(_per_ip), given back on destruction.
  std::shared_ptr<void> slot;
  // Its worker's count of connections, given back on destruction.
  WorkerLoad* load = nullptr;

  ~Conn() {
    if (load) load->sub();
  }

  void expire_in(Duration d) {
    deadline = std::chrono::steady_clock::now() + d;
    timed_out = false;
  }
  void no_deadline() { deadline = std::chrono::steady_clock::time_point::max(); }
};

// Waits on an upstream socket under the connection's deadline (the watchdog cancels it).
struct UpstreamWait {
  UpstreamWait(Conn& c, Socket& s, Duration d) : conn(c) {
    conn.upstream = &s;
    conn.expire_in(d);
  }
  ~UpstreamWait() { conn.upstream = nullptr; }
  Conn& conn;
};

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

// One io_context and its thread, acceptor, upstream pool and caches.
struct Worker {
  explicit Worker(const SnapshotHolder& h) : routes(h) {}
  SnapshotCache routes;
  // One thread runs each worker and every socket operation happens on it, so the reactor
  // needs no locks; the scheduler keeps them (stop() posts from another thread).
  net::io_context io{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  std::unique_ptr<Acceptor> acceptor;
  std::unique_ptr<Acceptor> redirect_acceptor;  // gateway.redirect_http, on the first worker
  std::unordered_map<std::string, std::vector<std::unique_ptr<UpstreamConn>>> idle;
  GzipCache gzip_cache;
  StaticFileCache static_cache;
  StaticRootCache static_roots;
  std::thread thread;
  WorkerLoad load;  // its client connections
  unsigned index = 0;  // its place in Impl::workers (its slot in Activity's request counts)
};

}  // namespace gw

struct Gateway::Impl {
  using Conn = gw::Conn;
  using Worker = gw::Worker;
  using Request = gw::Request;
  using StringResponse = gw::StringResponse;
  template <class T>
  using Task = gw::Task<T>;

  Impl(GatewayOptions o, const SnapshotHolder& r, ControlHandler c, GatewayHooks h)
      : opts(std::move(o)), routes(r), control(std::move(c)), hooks(std::move(h)) {}

  GatewayOptions opts;
  const SnapshotHolder& routes;
  ControlHandler control;
  GatewayHooks hooks;
  // The session cookie's TLS name (__Host-<name>), kept from apps as well as the plain one.
  const std::string host_session_cookie = "__Host-" + hooks.session_cookie;
  GatewayMetrics& stats = GatewayMetrics::get();
  // TLS (gateway.tls): the certificates new handshakes use; null without TLS.
  std::unique_ptr<gw::TlsStore> tls;
  // "max-age=<s>" when gateway.hsts is set (sent over TLS only), else empty.
  const std::string hsts =
      opts.hsts.count() > 0 && !opts.tls.empty()
          ? "max-age=" +
                std::to_string(std::chrono::duration_cast<std::chrono::seconds>(opts.hsts).count())
          : std::string();
  std::uint16_t bound_port = 0;  // the listener's port (for redirect_http's Location)
  std::vector<std::unique_ptr<Worker>> workers;
  bool running = false;
  // Open client connections, all workers together and per client address (accept and the
  // end of a connection; not on the request path). The cap is max_connections, lowered by
  // listen() to what the open-file limit allows.
  std::atomic<int> open_connections{0};
  int connection_cap = 0;
  std::mutex per_ip_mu;
  std::unordered_map<std::string, int> per_ip;

  /// Takes a place for a new connection from `ip`; null when a cap is reached.
  std::shared_ptr<void> admit(const std::string& ip);

  // ---- listener (listener.cc) and session (gateway.cc) ------------------------------------
  // `redirect`: the gateway.redirect_http listener's loop.
  Task<void> accept_loop(Worker& w, bool redirect = false);
  // The worker a connection accepted by `w` goes to: `w`, unless another serves
  // kBalanceSlack fewer connections.
  Worker& balance_to(Worker& w);
  // Starts serving an accepted, admitted connection on `w` (its count already taken).
  void serve(Worker& w, gw::Socket sock, std::shared_ptr<void> slot, bool redirect);
  static Task<void> watchdog(std::shared_ptr<Conn> c, Duration header_timeout);
  Task<void> session(std::shared_ptr<Conn> cp, Worker& w);
  // ---- TLS (tls_session.cc) ----------------------------------------------------------------
  // The TLS handshake (under the header deadline); false: the connection is to be closed.
  Task<bool> handshake(Conn& conn);
  // Sends close_notify (briefly waiting for the peer's) before a TLS connection is closed.
  Task<void> tls_goodbye(Conn& conn);
  // A gateway.redirect_http connection: one request, answered 308 to https (or 400).
  Task<void> redirect_session(std::shared_ptr<Conn> cp);
  Task<void> reload_certificates(Worker& w);
  // Closes the worker's pooled app connections that the app closed or nobody used for
  // kUpstreamIdleFor, every kUpstreamSweepEvery (proxy.cc).
  Task<void> sweep_upstream_pool(Worker& w);
  void count_request(Conn& conn);
  // Who reads a request's body: nobody (the gateway answers without it), the control plane
  // (in memory, up to kControlMaxBody) or an app.
  enum class BodyTaker { none, control, app };
  BodyTaker body_taker(const Request& req, Worker& w);
  // Why a request's Transfer-Encoding/Content-Length is refused (http/framing.h), if it is.
  static std::optional<std::string> framing_error(const Request& req);
  Task<bool> handle(Conn& conn, beast::flat_buffer& buf, Request& req, Worker& w,
                    const std::string& client_ip);

  template <class Body>
  Task<bool> write(Conn& conn, bhttp::response<Body>& res) {
    conn.status = res.result_int();
    if (!hsts.empty() && conn.client.tls()) res.set(bhttp::field::strict_transport_security, hsts);
    conn.expire_in(opts.request_timeout);
    gw::error_code ec;
    bhttp::response_serializer<Body> sr{res};
    co_await gw::send(conn.client, sr, ec, &conn.flat);
    co_return !ec;
  }

  // The gateway's own answers (gateway.cc).
  StringResponse make_response(const Request& req, bhttp::status status, std::string body,
                               std::string_view type);
  StringResponse error_page(const Request& req, int status, std::string_view title,
                            std::string_view message, std::string_view hint,
                            bool refresh = false);
  // An error page for a request that could not be read whole; the connection closes after it.
  StringResponse closing_page(int status, std::string_view title, std::string_view message,
                              std::string_view hint);
  StringResponse payload_too_large();
  // 413 in JSON for a files API upload over gateway.max_file_body; the connection closes.
  StringResponse file_too_large(const Request& req);
  // 413 in JSON for a deploy's tar over gateway.max_body; the connection closes.
  StringResponse source_too_large(const Request& req);
  // An API client's refusal: {"error": {"code", "message"}}, never cached.
  StringResponse json_error(const Request& req, bhttp::status status, std::string_view code,
                            const std::string& message);
  Task<bool> private_denied(Conn& conn, const Request& req, const WorkspaceView& ws,
                            PrivateAccess access);
  Task<bool> held_stopped(Conn& conn, const Request& req, const WorkspaceView& ws);
  Task<bool> not_running(Conn& conn, const Request& req, const WorkspaceView& ws);
  // Holds a request until its workspace runs (waking it), then forwards it. `failed`: the
  // first attempt at the app failed that way (UpstreamRetry): the app must come back as a new
  // instance first, and the request is sent once more at most.
  Task<bool> wait_for_wake(Conn& conn, beast::flat_buffer& buf, Request& req,
                           const RouteDecision& decision, Worker& w, const std::string& client_ip,
                           const WorkspaceView* failed = nullptr, gw::error_code failed_ec = {});

  // ---- control plane and /monitor/ws (control.cc) ------------------------------------------
  Task<bool> event_socket(Conn& conn, Request& req, Worker& w);
  http::Response call_control(const Request& req, const std::string& client_ip);
  StringResponse to_beast(const Request& req, http::Response out);
  Task<bool> relay_stream(Conn& conn, const Request& req,
                          std::shared_ptr<http::ResponseStream> st);

  // ---- static files (serve_static.cc) ------------------------------------------------------
  Task<bool> serve_static(Conn& conn, Request& req, const WorkspaceView& ws,
                          const RouteDecision& d, Worker& w);

  // ---- reverse proxy and upstream pool (proxy.cc), tunnels (tunnel.cc) ---------------------
  Task<std::unique_ptr<gw::UpstreamConn>> connect_upstream(Conn& conn, Worker& w,
                                                           const gw::tcp::endpoint& ep,
                                                           gw::error_code& ec);
  std::unique_ptr<gw::UpstreamConn> take_idle(Worker& w, const std::string& key, bool check_open);
  void give_back(Worker& w, const std::string& key, std::unique_ptr<gw::UpstreamConn> c);
  // Drops an app's Set-Cookie headers that would set the control plane's session cookie.
  void drop_session_set_cookies(bhttp::fields& f, const std::string& workspace);
  // `retry` set: a failure UpstreamRetry describes is not answered but reported there.
  Task<bool> proxy(Conn& conn, beast::flat_buffer& client_buf, Request& req,
                   const WorkspaceView& ws, const RouteDecision& d, Worker& w,
                   const std::string& client_ip, gw::UpstreamRetry* retry = nullptr);
  Task<bool> upstream_failed(Conn& conn, const Request& req, const WorkspaceView& ws,
                             gw::error_code ec, bool client_keep, int client_version);
  Task<bool> tunnel(Conn& conn, beast::flat_buffer& client_buf, Request& req,
                    const WorkspaceView& ws, Worker& w, const gw::tcp::endpoint& ep,
                    gw::UpstreamRetry* retry);
};

}  // namespace ck
