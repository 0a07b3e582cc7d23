// The TLS side of the session (gateway.tls): the handshake after accept, the close_notify
// before a close, the reload of the certificate files, and the gateway.redirect_http
// listener's sessions. The design is in impl.h and tls.h.
#include <fmt/format.h>
#include <sys/socket.h>

#include "gateway/impl.h"

namespace ck {
using namespace gw;

namespace {

// Answered to plain HTTP sent to the TLS listener (the first byte is not a TLS handshake's).
constexpr std::string_view kPlainToTls =
    "HTTP/1.1 400 Bad Request\r\nServer: cloudyknight\r\nContent-Type: text/plain; "
    "charset=utf-8\r\n"
    "Content-Length: 66\r\nConnection: close\r\n\r\n"
    "This address speaks HTTPS only: use https:// instead of http://.\r\n";
static_assert(kPlainToTls.size() - kPlainToTls.find("\r\n\r\n") - 4 == 66);

constexpr unsigned char kTlsHandshakeRecord = 0x16;

// A Host fit for a Location header: a DNS name or an IPv4 address, or an IPv6 literal.
bool redirectable_host(std::string_view h) {
  if (h.empty()) return false;
  if (h.front() == '[') {
    if (h.size() < 3 || h.back() != ']') return false;
    for (char c : h.substr(1, h.size() - 2)) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
    }
    return true;
  }
  for (char c : h) {  // normalize_host lower-cased it
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_')) {
      return false;
    }
  }
  return true;
}

}  // namespace

Task<bool> Gateway::Impl::handshake(Conn& conn) {
  // The whole handshake is due within header_timeout (the watchdog closes the socket).
  conn.expire_in(opts.header_timeout);
  Socket& s = conn.client.next_layer();
  error_code ec;
  unsigned char first = 0;
  for (int i = 0; i < 4; ++i) {
    co_await s.async_wait(Socket::wait_read, net::redirect_error(use_task, ec));
    if (ec) co_return false;
    ssize_t n = ::recv(s.native_handle(), &first, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 1) break;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) co_return false;
  }
  if (first != kTlsHandshakeRecord) {
    // Plain HTTP (or anything else): a one-line answer in plain text, then close. What the
    // client sent is read first, so the close does not reset the connection under the answer.
    char sink[16 * 1024];
    (void)::recv(s.native_handle(), sink, sizeof sink, MSG_DONTWAIT);
    conn.status = 400;
    s.write_some(net::buffer(kPlainToTls.data(), kPlainToTls.size()), ec);
    logger()->debug("plain HTTP on the TLS listener: answered 400");
    co_return false;
  }
  co_await conn.client.async_handshake(net::redirect_error(use_task, ec));
  if (ec) {
    error_code ignored;
    auto ep = s.remote_endpoint(ignored);
    logger()->debug("TLS handshake with {} failed: {}", ignored ? "?" : ep.address().to_string(),
                    conn.timed_out ? "timed out" : ec.message());
    co_return false;
  }
  co_return true;
}

Task<void> Gateway::Impl::tls_goodbye(Conn& conn) {
  if (conn.timed_out || !conn.client.is_open()) co_return;
  // close_notify, so a client reading to the end of the connection knows it is the end; then
  // the peer's answer (its close_notify or its close) is waited for briefly, so that the close
  // does not reset the connection under an answer the client has not read yet.
  conn.expire_in(std::chrono::seconds(1));
  error_code ec;
  co_await conn.client.async_close_notify(net::redirect_error(use_task, ec));
  std::array<char, 512> sink;
  while (!ec) {  // until its close_notify, its close or an error; data after ours is dropped
    co_await conn.client.async_read_some(net::buffer(sink), net::redirect_error(use_task, ec));
  }
}

Task<void> Gateway::Impl::reload_certificates(Worker& w) {
  Timer tick(w.io);
  for (;;) {
    tick.expires_after(opts.tls_reload);
    error_code ec;
    co_await tick.async_wait(net::redirect_error(use_task, ec));
    if (ec) co_return;
    tls->poll();  // stat()s a few files; loads them only when they changed
  }
}

Task<void> Gateway::Impl::redirect_session(std::shared_ptr<Conn> cp) {
  Conn& conn = *cp;
  beast::flat_buffer buf;
  bhttp::request_parser<bhttp::empty_body> parser;
  parser.header_limit(
      static_cast<std::uint32_t>(std::min<std::uint64_t>(opts.max_header, UINT32_MAX)));
  conn.expire_in(opts.header_timeout);
  error_code ec;
  co_await bhttp::async_read_header(conn.client, buf, parser, net::redirect_error(use_task, ec));
  conn.started = std::chrono::steady_clock::now();
  conn.kind = RequestKind::other;
  std::optional<StringResponse> res;
  if (ec == bhttp::error::header_limit) {
    res = closing_page(431, "Request Header Fields Too Large",
                       "The request's headers are larger than this gateway accepts.",
                       "Send smaller headers.");
  } else if (ec) {
    if (ec != bhttp::error::end_of_stream && !conn.timed_out &&
        ec != net::error::operation_aborted && ec != net::error::connection_reset &&
        ec != net::error::eof) {
      res =
          closing_page(400, "Bad Request", "The request could not be parsed: " + ec.message() + ".",
                       "Check the client sending it.");
    }
  } else {
    const auto& head = parser.get();
    std::string host = normalize_host(std::string_view(head[bhttp::field::host]));
    std::string_view target(head.target().data(), head.target().size());
    if (!redirectable_host(host) || target.empty() || target.front() != '/') {
      res = closing_page(400, "Bad Request",
                         "This address only redirects to https, and needs a valid Host header "
                         "and a path to do it.",
                         "Open the https:// address instead.");
    } else {
      std::string location = "https://" + host;
      if (bound_port != 443) location += ":" + std::to_string(bound_port);
      location += target;
      Request shape;
      shape.version(head.version());
      res = make_response(shape, bhttp::status::permanent_redirect, "Moved to " + location + "\n",
                          "text/plain; charset=utf-8");
      res->set(bhttp::field::location, location);
      res->keep_alive(false);
      if (head.method() == bhttp::verb::head) res->body().clear();
    }
  }
  if (res) {
    co_await write(conn, *res);
    count_request(conn);
  }
  conn.done = true;
  conn.watchdog.cancel();
  conn.client.shutdown(Socket::shutdown_send, ec);
  conn.client.close(ec);
}

}  // namespace ck
