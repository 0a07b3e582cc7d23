#pragma once
// Private to the gateway (only gateway/*.cc include it): the types its translation units share
// and the Impl behind Gateway. Each .cc holds one responsibility:
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
// TLS (gateway.tls): the client side is a ClientStream, a plain socket with an optional TLS
// layer over it, so one session code path serves both; the handshake runs first in the
// session under the header deadline. The plain path costs one branch per I/O.
#include "gateway/gateway.h"

#include "http/asio.h"
// clang-format off
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/compose.hpp>
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
#include "gateway/forward.h"
#include "gateway/gateway_metrics.h"
#include "gateway/read_ready.h"
#include "gateway/route.h"
#include "gateway/static_files.h"
#include "gateway/tls.h"
#include "gateway/tls_stream.h"

namespace ck {
namespace beast = boost::beast;
namespace bhttp = beast::http;

namespace gw {

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
constexpr std::size_t kFlattenLimit = 16 * 1024;
constexpr std::uint64_t kGzipCacheBytes = 64 << 20;
// Request bodies for the control plane are read into memory: its handlers take small JSON.
constexpr std::uint64_t kControlMaxBody = 2 << 20;

// The client's side of a connection: the socket, with TLS over it once start_tls() ran
// (tls_stream.h). An AsyncStream (beast's composed operations and co_await work on it
// unchanged): each operation goes to the socket, or to the TLS layer, whose operations try
// OpenSSL now and wait on the socket only for what it asks (tls_op below). The hot paths
// (read_head(), send(), write_now()/write_rest()) call the TLS layer directly instead, with no
// composed operation. Not movable (the TLS layer refers to the socket's descriptor).
class ClientStream {
 public:
  using executor_type = Executor;
  explicit ClientStream(Socket s) : socket_(std::move(s)) {}
  ClientStream(const ClientStream&) = delete;
  ClientStream& operator=(const ClientStream&) = delete;

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  Socket& next_layer() noexcept { return socket_; }
  bool tls() const noexcept { return tls_ != nullptr; }
  /// Puts TLS over the socket with the current certificates (kept alive for the connection).
  void start_tls(std::shared_ptr<TlsContexts> certs) {
    certs_ = std::move(certs);
    tls_ = std::make_unique<TlsConn>(certs_->default_context().native_handle(),
                                     socket_.native_handle());
  }
  TlsConn& tls_conn() { return *tls_; }
  /// Scratch where writes over TLS gather small buffers into one record.
  std::string& record() { return record_; }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& b, Token&& token);
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& b, Token&& token);
  /// Over TLS: sends the close_notify (the peer's is not waited for).
  template <class Token>
  auto async_close_notify(Token&& token);

  bool is_open() const { return socket_.is_open(); }
  void close(error_code& ec) { socket_.close(ec); }
  void shutdown(Socket::shutdown_type what, error_code& ec) { socket_.shutdown(what, ec); }
  tcp::endpoint remote_endpoint(error_code& ec) const { return socket_.remote_endpoint(ec); }
  Socket::native_handle_type native_handle() { return socket_.native_handle(); }

 private:
  Socket socket_;
  std::shared_ptr<TlsContexts> certs_;
  std::unique_ptr<TlsConn> tls_;
  std::string record_;
};

// After a read of the socket into the TLS input (read_now() or async_read_some() of
// TlsConn::input(), `room` bytes): hands OpenSSL the `n` bytes, or the end of the stream.
// False with `ec` when the read failed otherwise.
inline bool took_input(ClientStream& c, std::size_t n, std::size_t room, error_code& ec) {
  if (ec == net::error::eof) {
    ec = {};
    c.tls_conn().received_eof();
    return true;
  }
  if (ec) return false;
  note_read(c.next_layer(), n, room);
  c.tls_conn().received(n);
  return true;
}

// Waits for what the TLS layer asked: bytes from the socket (read_now() first, then the wait,
// which then queues without a recv()) or room in it.
inline Task<void> tls_wait(ClientStream& c, TlsConn::Want want, error_code& ec) {
  Socket& s = c.next_layer();
  if (want == TlsConn::Want::write) {
    co_await s.async_wait(Socket::wait_write, net::redirect_error(use_task, ec));
    co_return;
  }
  auto in = c.tls_conn().input();
  std::size_t n = 0;
  if (!read_now(s, in, n, ec)) n = co_await s.async_read_some(in, net::redirect_error(use_task, ec));
  took_input(c, n, in.size(), ec);
}

// The bytes of one TLS record to write from `buffers`, after their first `skip`: a view into
// the buffer when one holds the whole record or all that is left, else gathered into c.record().
// The same buffers and `skip` always give the same bytes (a write that wanted to wait is
// retried with them). Empty when nothing is left.
template <class Buffers>
std::string_view next_record(ClientStream& c, const Buffers& buffers, std::size_t skip) {
  std::string& rec = c.record();
  bool gathering = false;
  const auto end = net::buffer_sequence_end(buffers);
  for (auto it = net::buffer_sequence_begin(buffers); it != end; ++it) {
    net::const_buffer b(*it);
    if (skip >= b.size()) {
      skip -= b.size();
      continue;
    }
    std::string_view part(static_cast<const char*>(b.data()) + skip, b.size() - skip);
    skip = 0;
    if (!gathering) {
      if (part.size() >= TlsConn::kRecord) return part.substr(0, TlsConn::kRecord);
      auto rest = std::next(it);
      while (rest != end && net::const_buffer(*rest).size() == 0) ++rest;
      if (rest == end) return part;  // the last bytes: nothing to gather them with
      rec.clear();
      gathering = true;
    }
    const std::size_t take = std::min(part.size(), TlsConn::kRecord - rec.size());
    rec.append(part.data(), take);
    if (rec.size() == TlsConn::kRecord) break;
  }
  return gathering ? std::string_view(rec) : std::string_view();
}

// One operation of the TLS layer as a composed operation: `attempt(n, ec)` is tried now, and
// again after each wait for what it wants, until it settles; a result found at once is posted
// (a composed operation never completes inside its initiation).
template <class Attempt>
struct TlsOp {
  TlsOp(ClientStream& stream, Attempt a) : c(stream), attempt(std::move(a)) {}
  ClientStream& c;
  Attempt attempt;
  enum class State { start, reading, writing, done } state = State::start;
  bool waited = false;
  std::size_t n = 0;
  error_code result;

  template <class Self>
  void operator()(Self& self, error_code ec = {}, std::size_t got = 0) {
    switch (state) {
      case State::done:
        return self.complete(result, n);
      case State::reading:
        if (!took_input(c, got, in_room, ec)) return self.complete(ec, 0);
        break;
      case State::writing:
        if (ec) return self.complete(ec, 0);
        break;
      case State::start:
        break;
    }
    for (;;) {
      const TlsConn::Want want = attempt(n, ec);
      if (want == TlsConn::Want::nothing) {
        if (waited) return self.complete(ec, n);
        state = State::done;
        result = ec;
        return net::post(c.get_executor(), std::move(self));
      }
      Socket& s = c.next_layer();
      if (want == TlsConn::Want::write) {
        state = State::writing;
        waited = true;
        return s.async_wait(Socket::wait_write, std::move(self));
      }
      auto in = c.tls_conn().input();
      if (read_now(s, in, got, ec)) {
        if (took_input(c, got, in.size(), ec)) continue;
        if (waited) return self.complete(ec, 0);
        state = State::done;
        result = ec;
        n = 0;
        return net::post(c.get_executor(), std::move(self));
      }
      state = State::reading;
      in_room = in.size();
      waited = true;
      return s.async_read_some(in, std::move(self));
    }
  }
  std::size_t in_room = 0;
};

template <class Token, class Attempt>
auto tls_op(ClientStream& c, Attempt attempt, Token&& token) {
  return net::async_compose<Token, void(error_code, std::size_t)>(
      TlsOp<Attempt>{c, std::move(attempt)}, token, c.next_layer());
}

template <class MutableBuffers, class Token>
auto ClientStream::async_read_some(const MutableBuffers& b, Token&& token) {
  if (!tls_) return socket_.async_read_some(b, std::forward<Token>(token));
  net::mutable_buffer first;
  for (auto it = net::buffer_sequence_begin(b); it != net::buffer_sequence_end(b); ++it) {
    first = *it;
    if (first.size() > 0) break;
  }
  return tls_op(*this, [this, first](std::size_t& n, error_code& ec) {
    if (first.size() == 0) return TlsConn::Want::nothing;  // a read of nothing: 0 bytes
    return tls_->read(first.data(), first.size(), n, ec);
  }, std::forward<Token>(token));
}

template <class ConstBuffers, class Token>
auto ClientStream::async_write_some(const ConstBuffers& b, Token&& token) {
  if (!tls_) return socket_.async_write_some(b, std::forward<Token>(token));
  return tls_op(*this, [this, b](std::size_t& n, error_code& ec) {
    std::string_view rec = next_record(*this, b, 0);
    if (rec.empty()) return TlsConn::Want::nothing;
    return tls_->write(rec.data(), rec.size(), n, ec);
  }, std::forward<Token>(token));
}

template <class Token>
auto ClientStream::async_close_notify(Token&& token) {
  return tls_op(*this, [this](std::size_t&, error_code& ec) {
    return tls_ ? tls_->close_notify(ec) : TlsConn::Want::nothing;
  }, std::forward<Token>(token));
}

// One idle keep-alive connection to an app.
struct UpstreamConn {
  explicit UpstreamConn(Executor ex) : socket(ex) {}
  Socket socket;
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since{};  // when it went back to the pool
};

// One client connection: its socket, the deadline of whatever it waits on, and the upstream
// socket it waits on, if any. Shared by the session and its watchdog; used on one thread.
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
};

// Writes what the socket takes at once (sockets are non-blocking, so this never waits)
// and only the rest asynchronously: most answers leave in one send, with no extra trip
// through the io_context.
// Small messages are first gathered into `flat`: one contiguous send instead of an iovec
// per header field.
// Over TLS the same holds record by record: up to 16 KiB gathered (next_record()) and written
// now, and only when the socket is full does the session wait (tls_wait()) and write the same
// record again.
inline Socket& plain_socket(Socket& s) { return s; }
inline Socket& plain_socket(ClientStream& s) { return s.next_layer(); }

// The TLS branch of send(): the serializer's buffers, a record at a time.
template <bool isRequest, class Body, class Fields>
Task<void> send_tls(ClientStream& stream, bhttp::serializer<isRequest, Body, Fields>& sr,
                    error_code& ec) {
  TlsConn& t = stream.tls_conn();
  while (!sr.is_done()) {
    bool more = false;
    std::size_t n = 0;
    TlsConn::Want want = TlsConn::Want::nothing;
    sr.next(ec, [&](error_code& wec, const auto& buffers) {
      std::string_view rec = next_record(stream, buffers, 0);
      if (rec.empty()) return;
      more = true;
      want = t.write(rec.data(), rec.size(), n, wec);
    });
    if (ec || !more) co_return;
    if (want != TlsConn::Want::nothing) {
      co_await tls_wait(stream, want, ec);
      if (ec) co_return;
      continue;
    }
    sr.consume(n);
  }
}

template <class Stream, bool isRequest, class Body, class Fields>
Task<void> send(Stream& stream, bhttp::serializer<isRequest, Body, Fields>& sr, error_code& ec,
                std::string* flat = nullptr) {
  if constexpr (std::is_same_v<Stream, ClientStream>) {
    if (stream.tls()) {
      co_await send_tls(stream, sr, ec);
      co_return;
    }
  }
  Socket& s = plain_socket(stream);
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

// The synchronous start of write_all(): what the socket takes at once, in one send (over TLS,
// record by record), without a coroutine frame. True when that settled it (all sent, or `ec`);
// false when write_rest() is to send the rest (`sent` bytes are out).
// On the hot path: `if (!write_now(s, b, ec, sent)) co_await write_rest(s, b, sent, ec);`.
template <class Stream, class Buffers>
bool write_now(Stream& stream, const Buffers& buffers, error_code& ec, std::size_t& sent) {
  ec = {};
  sent = 0;
  if constexpr (std::is_same_v<Stream, ClientStream>) {
    if (stream.tls()) {
      for (;;) {
        std::string_view rec = next_record(stream, buffers, sent);
        if (rec.empty()) return true;
        std::size_t n = 0;
        if (stream.tls_conn().write(rec.data(), rec.size(), n, ec) != TlsConn::Want::nothing) {
          return false;  // write_rest() offers the same record again
        }
        if (ec) return true;
        sent += n;
      }
    }
  }
  Socket& s = plain_socket(stream);
  sent = s.write_some(buffers, ec);
  if (ec == net::error::would_block || ec == net::error::try_again) {
    ec = {};
    sent = 0;
  }
  return ec || sent == net::buffer_size(buffers);
}

// Sends `buffers` after their first `sent` bytes (write_now() sent those), waiting for room in
// the socket as needed.
template <class Stream, class Buffers>
Task<void> write_rest(Stream& stream, const Buffers& buffers, std::size_t sent, error_code& ec) {
  if constexpr (std::is_same_v<Stream, ClientStream>) {
    if (stream.tls()) {
      for (;;) {
        std::string_view rec = next_record(stream, buffers, sent);
        if (rec.empty()) co_return;
        std::size_t n = 0;
        const TlsConn::Want want = stream.tls_conn().write(rec.data(), rec.size(), n, ec);
        if (want != TlsConn::Want::nothing) {
          co_await tls_wait(stream, want, ec);
        } else {
          sent += n;
        }
        if (ec) co_return;
      }
    }
  }
  beast::buffers_suffix<Buffers> rest(buffers);
  rest.consume(sent);
  co_await net::async_write(plain_socket(stream), rest, net::redirect_error(use_task, ec));
}

// Writes all of `buffers`: what the socket takes at once, then the rest asynchronously (over
// TLS, all of it through the TLS layer's asynchronous writes).
template <class Stream, class Buffers>
Task<void> write_all(Stream& stream, const Buffers& buffers, error_code& ec) {
  std::size_t sent = 0;
  if (write_now(stream, buffers, ec, sent)) co_return;
  co_await write_rest(stream, buffers, sent, ec);
}

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
