// The reverse proxy: requests forwarded to a workspace's app over a per-worker pool of
// keep-alive upstream connections, and responses relayed as they arrive. Upgrade requests
// (WebSocket) go on in tunnel.cc.
#include <cctype>
#include <fmt/format.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
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

constexpr std::size_t kUpstreamHeaderLimit = 64 * 1024;

// An app's response, parsed by Beast's parser without its field container: the status line
// and fields are views into the upstream connection's buffer, collected in `fields`, and the
// body is copied into the relay buffer the caller sets (as buffer_body does). The views stay
// valid only while the buffer is not read into again, so the whole head is in the buffer
// before the parser sees it (read_upstream_head) and is used before the next read.
class UpstreamParser final : public bhttp::basic_parser<false> {
 public:
  explicit UpstreamParser(std::vector<HeaderField>& fields) : fields_(fields) {
    fields_.clear();
    header_limit(static_cast<std::uint32_t>(kUpstreamHeaderLimit));
    body_limit(std::numeric_limits<std::uint64_t>::max());  // not boost::none: 1.74 compares it wrongly
  }
  unsigned status() const { return status_; }
  std::string_view reason() const { return reason_; }
  std::span<const HeaderField> fields() const { return fields_; }
  // Where body bytes go; room() is what is left after a put().
  void body_into(char* data, std::size_t size) {
    data_ = data;
    room_ = size;
  }
  std::size_t room() const { return room_; }

 private:
  void on_request_impl(bhttp::verb, std::string_view, std::string_view, int, error_code& ec) override {
    ec = bhttp::error::bad_method;  // never called for a response parser
  }
  void on_response_impl(int code, std::string_view reason, int, error_code&) override {
    status_ = static_cast<unsigned>(code);
    reason_ = reason;
  }
  void on_field_impl(bhttp::field, std::string_view name, std::string_view value, error_code&) override {
    fields_.push_back({name, value});
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  std::size_t on_body_impl(std::string_view body, error_code& ec) override { return take(body, ec); }
  void on_chunk_header_impl(std::uint64_t, std::string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, std::string_view body, error_code& ec) override {
    return take(body, ec);
  }
  void on_finish_impl(error_code&) override {}

  std::size_t take(std::string_view body, error_code& ec) {
    if (room_ == 0) {
      ec = bhttp::error::need_buffer;
      return 0;
    }
    std::size_t n = std::min(room_, body.size());
    std::memcpy(data_, body.data(), n);
    data_ += n;
    room_ -= n;
    return n;
  }

  std::vector<HeaderField>& fields_;
  unsigned status_ = 0;
  std::string_view reason_;
  char* data_ = nullptr;
  std::size_t room_ = 0;
};

// Whether the app's buffer holds a whole response head; if so, parses it in one put(): the
// parser's views all point into that one region, and the head's bytes are consumed from the
// buffer, which is not read into again before they are used. `searched`: where the search for
// the head's end resumes (0 at first). Sets `ec` when the head is over the limit or bad.
bool upstream_head_ready(beast::flat_buffer& buf, UpstreamParser& parser, std::size_t& searched,
                         error_code& ec) {
  static constexpr std::string_view kEnd = "\r\n\r\n";
  std::string_view have(static_cast<const char*>(buf.data().data()), buf.size());
  if (have.find(kEnd, searched) == std::string_view::npos) {
    if (have.size() >= kUpstreamHeaderLimit) {
      ec = bhttp::error::header_limit;
      return true;
    }
    searched = have.size() < 3 ? 0 : have.size() - 3;
    return false;
  }
  std::size_t used = parser.put(buf.data(), ec);
  if (ec == bhttp::error::need_more) ec = bhttp::error::partial_message;  // cannot be: the head is whole
  if (!ec && !parser.is_header_done()) ec = bhttp::error::partial_message;
  buf.consume(used);
  return true;
}

// Reads from the app until upstream_head_ready(). proxy() has the same loop inline for the
// final answer's head (no coroutine frame per request); this one is for interim (1xx) answers.
Task<void> read_upstream_head(Socket& s, beast::flat_buffer& buf, UpstreamParser& parser, error_code& ec) {
  for (std::size_t searched = 0; !upstream_head_ready(buf, parser, searched, ec);) {
    std::size_t n = co_await read_some(s, buf.prepare(16 * 1024), ec);
    if (ec) {
      if (ec == net::error::eof) ec = buf.size() == 0 ? bhttp::error::end_of_stream : bhttp::error::partial_message;
      co_return;
    }
    buf.commit(n);
  }
}

}  // namespace

// ---- reverse proxy ---------------------------------------------------------------------

Task<std::unique_ptr<UpstreamConn>> Gateway::Impl::connect_upstream(Conn& conn, Worker& w, const tcp::endpoint& ep,
                                                               error_code& ec) {
  auto up = std::make_unique<UpstreamConn>(w.io.get_executor());
  UpstreamWait wait(conn, up->socket, std::min<Duration>(opts.request_timeout, std::chrono::seconds(10)));
  co_await up->socket.async_connect(ep, net::redirect_error(use_task, ec));
  if (!ec) up->socket.set_option(tcp::no_delay(true), ec);
  if (!ec) up->socket.non_blocking(true, ec);
  if (!ec) watch_fin(up->socket);  // so the pool sees a FIN that comes while it is idle
  co_return up;
}

// A pooled connection, never one whose peer sent its FIN while it was idle (epoll said so:
// no syscall; such a peer may swallow the request without an answer, see read_ready.h); for
// requests that must not be sent twice, only one that is certainly still open (the others are
// retried on a fresh connection if it was closed).
std::unique_ptr<UpstreamConn> Gateway::Impl::take_idle(Worker& w, const std::string& key, bool check_open) {
  auto it = w.idle.find(key);
  if (it == w.idle.end()) return nullptr;
  auto& v = it->second;
  while (!v.empty()) {
    auto c = std::move(v.back());
    v.pop_back();
    if (fin_reported(c->socket)) continue;
    if (!check_open || !looks_closed(c->socket)) return c;
  }
  return nullptr;
}

void Gateway::Impl::give_back(Worker& w, const std::string& key, std::unique_ptr<UpstreamConn> c) {
  auto& v = w.idle[key];
  if (v.size() < kMaxIdlePerUpstream && c->buffer.size() == 0) {
    c->idle_since = std::chrono::steady_clock::now();
    v.push_back(std::move(c));
  }
}

Task<void> Gateway::Impl::sweep_upstream_pool(Worker& w) {
  Timer tick(w.io);
  for (;;) {
    tick.expires_after(kUpstreamSweepEvery);
    error_code ec;
    co_await tick.async_wait(net::redirect_error(use_task, ec));
    if (ec) co_return;
    const auto now = std::chrono::steady_clock::now();
    for (auto it = w.idle.begin(); it != w.idle.end();) {
      std::erase_if(it->second, [&](const std::unique_ptr<UpstreamConn>& c) {
        return now - c->idle_since > kUpstreamIdleFor || looks_closed(c->socket);
      });
      it = it->second.empty() ? w.idle.erase(it) : std::next(it);
    }
  }
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
                                const std::string& client_ip, UpstreamRetry* retry) {
  bool client_keep = req.keep_alive();
  int client_version = req.version();
  // One pass over the request's fields: the views the forwarded head is written from, and
  // what the decisions below need (no field lookups). The session refused ambiguous framing,
  // so a Transfer-Encoding here is exactly "chunked".
  conn.fields.clear();
  std::optional<std::string_view> connection;  // the first Connection field, as req[] reads it
  bool has_upgrade = false, has_length = false, has_coding = false;
  for (const auto& f : req) {
    conn.fields.push_back({f.name_string(), f.value()});
    switch (f.name()) {
      case bhttp::field::connection:
        if (!connection) connection = f.value();
        break;
      case bhttp::field::upgrade:
        has_upgrade = true;
        break;
      case bhttp::field::content_length:
        has_length = true;
        break;
      case bhttp::field::transfer_encoding:
        has_coding = true;
        break;
      default:
        break;
    }
  }
  bool upgrade = connection && http::header_has_token(*connection, "upgrade") && has_upgrade;
  error_code ec;
  // Apps listen on the loopback address almost always: no need to parse it per request.
  net::ip::address addr = ws.upstream_host.empty() || ws.upstream_host == "127.0.0.1"
                              ? net::ip::address(net::ip::address_v4::loopback())
                              : net::ip::make_address(ws.upstream_host, ec);
  tcp::endpoint ep(addr, static_cast<unsigned short>(ws.port));
  // The request head is written straight from the parsed fields (forward.h): hop-by-hop
  // fields out, the gateway's forwarding fields in, session cookies out, its own framing.
  UpstreamRequestHead head;
  head.method = req.method_string();
  head.target = d.upstream_target;
  head.fields = conn.fields;
  head.client_ip = client_ip;
  head.prefix = d.prefix;
  // With TLS the listener speaks nothing else: every proxied request came over it.
  if (!opts.tls.empty()) head.proto = "https";
  if (!hooks.session_cookie.empty()) {
    head.session_cookie = hooks.session_cookie;
    head.host_session_cookie = host_session_cookie;
  }
  head.upgrade = upgrade;
  if (!req.body().empty() || has_length || has_coding) {
    head.content_length = req.body().size();
  }
  conn.upstream_head.clear();
  append_upstream_request_head(head, conn.upstream_head);
  if (upgrade) co_return co_await tunnel(conn, client_buf, req, ws, w, ep, retry);
  std::string key = ws.upstream_host;
  key += ':';
  key += std::to_string(ws.port);
  bool idempotent = is_idempotent(req.method());

  std::unique_ptr<UpstreamConn> up;
  std::optional<UpstreamParser> parser;
  for (int attempt = 0;; ++attempt) {
    bool reused = false;
    up = attempt == 0 ? take_idle(w, key, !idempotent) : nullptr;
    if (up) {
      reused = true;
    } else {
      up = co_await connect_upstream(conn, w, ep, ec);
      if (ec && retry && !conn.timed_out && app_went_away(ec)) {
        *retry = {true, ec};  // nothing was sent: any request may go again
        co_return false;
      }
      if (ec) co_return co_await upstream_failed(conn, req, ws, ec, client_keep, client_version);
    }
    {
      UpstreamWait wait(conn, up->socket, opts.request_timeout);
      std::array<net::const_buffer, 2> out{net::buffer(conn.upstream_head), net::buffer(req.body())};
      std::size_t sent = up->socket.write_some(out, ec);
      if (ec == net::error::would_block || ec == net::error::try_again) {
        ec = {};
        sent = 0;
      }
      if (!ec && sent == net::buffer_size(out)) {
        expect_answer(up->socket);  // the whole request left just now (read_ready.h)
      } else if (!ec) {
        beast::buffers_suffix<decltype(out)> rest(out);
        rest.consume(sent);
        co_await net::async_write(up->socket, rest, net::redirect_error(use_task, ec));
      }
      if (!ec) {
        parser.emplace(conn.fields);
        if (req.method() == bhttp::verb::head) parser->skip(true);
        // read_upstream_head(), inline.
        for (std::size_t searched = 0; !upstream_head_ready(up->buffer, *parser, searched, ec);) {
          auto space = up->buffer.prepare(16 * 1024);
          std::size_t n = 0;
          if (!read_now(up->socket, space, n, ec)) {
            n = co_await up->socket.async_read_some(space, net::redirect_error(use_task, ec));
          }
          if (ec) {
            if (ec == net::error::eof) {
              ec = up->buffer.size() == 0 ? bhttp::error::end_of_stream : bhttp::error::partial_message;
            }
            break;
          }
          up->buffer.commit(n);
        }
      }
    }
    if (!ec) break;
    // A pooled connection the app had already closed: try once more on a fresh one.
    if (reused && attempt == 0 && !conn.timed_out && idempotent) continue;
    if (retry && idempotent && !conn.timed_out && app_went_away(ec)) {
      *retry = {true, ec};
      co_return false;
    }
    co_return co_await upstream_failed(conn, req, ws, ec, client_keep, client_version);
  }

  // Interim answers (1xx): relayed to an HTTP/1.1 client, except 100 Continue (the gateway
  // sent the whole body already and answered the client's Expect itself); then the final
  // answer is read from the same connection. 101 was not asked for here: a broken app.
  for (int interim = 0; parser->status() < 200; ++interim) {
    unsigned status = parser->status();
    if (status == 101 || interim >= 16) {
      co_return co_await upstream_failed(conn, req, ws, bhttp::error::bad_status, client_keep, client_version);
    }
    if (status != 100 && client_version >= 11) {
      ClientResponseHead ih;
      ih.status = status;
      ih.reason = parser->reason();
      ih.fields = parser->fields();
      if (!hooks.session_cookie.empty()) {
        ih.session_cookie = hooks.session_cookie;
        ih.host_session_cookie = host_session_cookie;
      }
      conn.flat.clear();
      append_client_response_head(ih, conn.flat);
      conn.expire_in(opts.request_timeout);
      co_await write_all(conn.client, net::buffer(conn.flat), ec);
      if (ec) co_return false;
    }
    parser.emplace(conn.fields);
    if (req.method() == bhttp::verb::head) parser->skip(true);
    UpstreamWait wait(conn, up->socket, opts.request_timeout);
    co_await read_upstream_head(up->socket, up->buffer, *parser, ec);
    if (ec) co_return co_await upstream_failed(conn, req, ws, ec, client_keep, client_version);
  }

  UpstreamParser& res = *parser;
  conn.status = res.status();
  bool upstream_keep = res.keep_alive();
  // How the body is framed for the client: the app's Content-Length as it is; chunked (from
  // the app, or a body that runs to the app's close) re-chunked by the gateway for HTTP/1.1
  // clients, or sent as it comes to an HTTP/1.0 client, whose connection then closes.
  bool no_body = parser->is_done();  // HEAD, 204, 304
  bool chunked_in = res.chunked();
  bool to_eof = !no_body && !chunked_in && !res.content_length();
  bool chunked_out = false;
  if (!no_body && (chunked_in || to_eof)) {
    if (client_version >= 11) chunked_out = true;
    else client_keep = false;
  }
  if (to_eof) upstream_keep = false;

  ClientResponseHead rh;
  rh.version = client_version;
  rh.status = res.status();
  rh.reason = res.reason();
  rh.fields = res.fields();
  if (!hooks.session_cookie.empty()) {
    rh.session_cookie = hooks.session_cookie;
    rh.host_session_cookie = host_session_cookie;
  }
  rh.keep_alive = client_keep;
  rh.chunked = chunked_out;
  rh.drop_content_length = chunked_in;
  if (!hsts.empty() && conn.client.tls()) rh.hsts = hsts;
  std::string& out = conn.flat;  // what goes before the next body piece: head, chunk framing
  out.clear();
  append_client_response_head(rh, out);

  if (!conn.relay) conn.relay.reset(new char[kRelayChunk]);
  char* chunk = conn.relay.get();
  static constexpr std::string_view kCrlfLast = "\r\n0\r\n\r\n";
  if (!no_body && !chunked_in) {
    // A body framed by Content-Length or by the app's close has nothing to parse: bytes go
    // from the app's socket to the client's through the relay buffer, copied once each way.
    std::uint64_t left = to_eof ? std::numeric_limits<std::uint64_t>::max() : *res.content_length();
    for (bool done = false; !done;) {
      net::const_buffer piece;
      std::size_t consumed = 0;  // of up->buffer: what came with the head
      if (up->buffer.size() > 0) {
        consumed = static_cast<std::size_t>(std::min<std::uint64_t>(up->buffer.size(), left));
        piece = net::buffer(up->buffer.data().data(), consumed);
      } else {
        if (!out.empty()) {
          // Nothing yet: the client gets the head of a streamed answer before the app's
          // next bytes come.
          conn.expire_in(opts.request_timeout);
          co_await write_all(conn.client, net::buffer(out), ec);
          if (ec) co_return false;
          out.clear();
        }
        std::size_t n = 0;
        {
          UpstreamWait wait(conn, up->socket, opts.request_timeout);
          auto space = net::buffer(chunk, static_cast<std::size_t>(std::min<std::uint64_t>(kRelayChunk, left)));
          if (!read_now(up->socket, space, n, ec)) {
            n = co_await up->socket.async_read_some(space, net::redirect_error(use_task, ec));
          }
        }
        if (ec == net::error::eof && to_eof) {
          ec = {};
          done = true;
        } else if (ec) {
          stats.upstream_errors.inc();
          logger()->warn("[ws={}] upstream failed mid-response: {}", ws.name,
                         conn.timed_out ? "timed out" : ec == net::error::eof ? "the app closed the connection" : ec.message());
          co_return false;  // the head may be out: all we can do is close
        }
        piece = net::buffer(chunk, n);
      }
      left -= piece.size();
      if (left == 0) done = true;
      std::string_view tail;  // after the piece: the chunk's CRLF and, at the end, the last chunk
      if (chunked_out) {
        if (piece.size() > 0) append_chunk_size(piece.size(), out);
        tail = piece.size() > 0 ? (done ? kCrlfLast : kCrlfLast.substr(0, 2)) : std::string_view();
        if (piece.size() == 0 && done) out.append(kCrlfLast.substr(2));
      }
      conn.expire_in(opts.request_timeout);
      std::array<net::const_buffer, 3> pieces{net::buffer(out), piece, net::buffer(tail.data(), tail.size())};
      std::size_t sent = 0;
      if (!write_now(conn.client, pieces, ec, sent)) co_await write_rest(conn.client, pieces, sent, ec);
      if (ec) co_return false;
      out.clear();
      up->buffer.consume(consumed);
    }
    if (upstream_keep) give_back(w, key, std::move(up));
    co_return client_keep;
  }
  for (bool done = no_body;;) {
    std::size_t n = 0;
    if (!done) {
      res.body_into(chunk, kRelayChunk);
      // Body bytes that came with the headers (all of a small answer) are parsed here,
      // without another trip through the io_context.
      while (up->buffer.size() > 0 && !parser->is_done() && res.room() > 0) {
        std::size_t used = parser->put(up->buffer.data(), ec);
        up->buffer.consume(used);
        // need_more: what is buffered ends inside the chunk framing; async_read gets the rest.
        if (ec == bhttp::error::need_buffer || ec == bhttp::error::need_more) ec = {};
        if (ec || used == 0) break;
      }
      if (!ec && !parser->is_done() && res.room() == kRelayChunk) {
        // Nothing yet: the client gets what is ready (the head of a streamed answer), then
        // what the app sends next, as it comes.
        if (!out.empty()) {
          conn.expire_in(opts.request_timeout);
          co_await write_all(conn.client, net::buffer(out), ec);
          if (ec) co_return false;
          out.clear();
        }
        UpstreamWait wait(conn, up->socket, opts.request_timeout);
        co_await bhttp::async_read_some(up->socket, up->buffer, *parser, net::redirect_error(use_task, ec));
      }
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec) {
        stats.upstream_errors.inc();
        logger()->warn("[ws={}] upstream failed mid-response: {}", ws.name,
                       conn.timed_out ? "timed out" : ec.message());
        co_return false;  // the head may be out: all we can do is close
      }
      n = kRelayChunk - res.room();
      done = parser->is_done();
    }
    if (n == 0 && !done) continue;
    std::string_view tail;  // after the piece: the chunk's CRLF and, at the end, the last chunk
    if (chunked_out) {
      if (n > 0) append_chunk_size(n, out);
      tail = n > 0 ? (done ? kCrlfLast : kCrlfLast.substr(0, 2)) : std::string_view();
      if (n == 0 && done) out.append(kCrlfLast.substr(2));
    }
    conn.expire_in(opts.request_timeout);
    std::array<net::const_buffer, 3> pieces{net::buffer(out), net::buffer(chunk, n),
                                             net::buffer(tail.data(), tail.size())};
    std::size_t sent = 0;
    if (!write_now(conn.client, pieces, ec, sent)) co_await write_rest(conn.client, pieces, sent, ec);
    if (ec) co_return false;
    out.clear();
    if (done) break;
  }

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

}  // namespace ck
