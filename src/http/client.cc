#include "http/client.h"

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <memory>

namespace ck {
namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using unix_socket = net::local::stream_protocol::socket;

// Closes the socket when the exchange takes longer than its timeout, which makes the pending
// operation fail with operation_aborted; `fired` tells a timeout from a real error.
struct Deadline {
  net::steady_timer timer;
  bool fired = false;
  Deadline(net::any_io_executor ex) : timer(ex) {}
};

void arm(const std::shared_ptr<Deadline>& d, unix_socket& sock, Duration timeout) {
  if (timeout <= Duration::zero()) return;
  d->timer.expires_after(timeout);
  d->timer.async_wait([d, &sock](const boost::system::error_code& ec) {
    if (ec) return;
    d->fired = true;
    boost::system::error_code ignored;
    sock.close(ignored);
  });
}

Error io_error(const std::string& path, const HttpClientRequest& req, const Deadline& d,
               const boost::system::error_code& ec, const char* stage) {
  if (d.fired) {
    return make_error(Errc::timeout, fmt::format("{} {} on {} did not finish within {}", req.method,
                                                 req.target, path, format_duration(req.timeout)));
  }
  return make_error(Errc::unavailable,
                    fmt::format("{} {} on {}: {} failed: {}", req.method, req.target, path, stage,
                                ec.message()));
}

template <class Body>
void fill_head(bhttp::request<Body>& r, const HttpClientRequest& req) {
  r.method_string(req.method);
  r.target(req.target);
  r.version(11);
  r.set(bhttp::field::host, "localhost");
  r.set(bhttp::field::user_agent, "cloudyknight");
  if (!req.content_type.empty()) {
    r.set(bhttp::field::content_type, req.content_type);
  } else if (!req.body.empty() || !req.body_file.empty()) {
    r.set(bhttp::field::content_type, "application/json");
  }
}

net::awaitable<Result<HttpClientResponse>> exchange(std::string path, HttpClientRequest req,
                                                    BodySink sink) {
  auto ex = co_await net::this_coro::executor;
  unix_socket sock(ex);
  auto deadline = std::make_shared<Deadline>(ex);
  arm(deadline, sock, req.timeout);
  struct Disarm {
    std::shared_ptr<Deadline> d;
    ~Disarm() { d->timer.cancel(); }
  } disarm{deadline};

  boost::system::error_code ec;
  co_await sock.async_connect(net::local::stream_protocol::endpoint(path),
                              net::redirect_error(net::use_awaitable, ec));
  if (ec) {
    if (ec == boost::asio::error::no_such_device || ec == boost::asio::error::not_found ||
        ec == boost::system::errc::no_such_file_or_directory ||
        ec == boost::asio::error::connection_refused) {
      co_return fail(Errc::unavailable,
                     fmt::format("nothing answers on {} ({})", path, ec.message()));
    }
    co_return io_error(path, req, *deadline, ec, "connecting");
  }

  if (!req.body_file.empty()) {
    bhttp::request<bhttp::file_body> r;
    fill_head(r, req);
    r.body().open(req.body_file.c_str(), beast::file_mode::scan, ec);
    if (ec) {
      co_return fail(Errc::io, fmt::format("cannot read {}: {}", req.body_file.string(), ec.message()));
    }
    r.prepare_payload();
    co_await bhttp::async_write(sock, r, net::redirect_error(net::use_awaitable, ec));
  } else {
    bhttp::request<bhttp::string_body> r;
    fill_head(r, req);
    r.body() = std::move(req.body);
    r.prepare_payload();
    co_await bhttp::async_write(sock, r, net::redirect_error(net::use_awaitable, ec));
  }
  if (ec) co_return io_error(path, req, *deadline, ec, "sending the request");

  beast::flat_buffer buf;
  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(UINT64_MAX);
  co_await bhttp::async_read_header(sock, buf, parser, net::redirect_error(net::use_awaitable, ec));
  if (ec) co_return io_error(path, req, *deadline, ec, "reading the response");

  HttpClientResponse res;
  res.status = static_cast<int>(parser.get().result_int());
  res.content_type = std::string(parser.get()[bhttp::field::content_type]);
  bool collect = !sink || res.status >= 400;
  std::vector<char> chunk(64 * 1024);
  while (!parser.is_done()) {
    auto& body = parser.get().body();
    body.data = chunk.data();
    body.size = chunk.size();
    co_await bhttp::async_read_some(sock, buf, parser, net::redirect_error(net::use_awaitable, ec));
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec) co_return io_error(path, req, *deadline, ec, "reading the response body");
    std::string_view got(chunk.data(), chunk.size() - body.size);
    if (got.empty()) continue;
    if (collect) {
      res.body.append(got);
    } else if (!sink(got)) {
      break;
    }
  }
  co_return res;
}

}  // namespace

net::awaitable<Result<HttpClientResponse>> UnixHttpClient::request(HttpClientRequest req) const {
  co_return co_await exchange(path_, std::move(req), nullptr);
}

net::awaitable<Result<HttpClientResponse>> UnixHttpClient::stream(HttpClientRequest req,
                                                                  BodySink sink) const {
  co_return co_await exchange(path_, std::move(req), std::move(sink));
}

}  // namespace ck
