#pragma once
// The client's side of a gateway connection and how the gateway reads and writes it (private
// to gateway/*.cc, through impl.h): ClientStream, the plain socket or TLS over it
// (tls_stream.h's TlsConn), the request-head read and the writes that try the socket first
// (send(), write_now()/write_rest()/write_all()), for client and upstream sockets alike.
#include "http/asio.h"
// clang-format off
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on
#include <memory>
#include <string>
#include <string_view>

#include "gateway/read_ready.h"
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

constexpr std::size_t kFlattenLimit = 16 * 1024;

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
  /// Over TLS: the server's handshake.
  template <class Token>
  auto async_handshake(Token&& token);
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
// again after each wait for what it wants, until it settles; a result found before any wait is
// posted (a composed operation never completes inside its initiation).
template <class Attempt>
struct TlsOp {
  TlsOp(ClientStream& stream, Attempt a) : c(stream), attempt(std::move(a)) {}
  ClientStream& c;
  Attempt attempt;
  enum class State { start, reading, writing, done } state = State::start;
  std::size_t in_room = 0;  // State::reading: the size of the TLS input read into
  std::size_t n = 0;
  error_code result;

  template <class Self>
  void operator()(Self& self, error_code ec = {}, std::size_t got = 0) {
    switch (state) {
      case State::done:
        return self.complete(result, n);
      case State::reading:
        if (!took_input(c, got, in_room, ec)) return settle(self, ec, 0);
        break;
      case State::writing:
        if (ec) return settle(self, ec, 0);
        break;
      case State::start:
        break;
    }
    for (;;) {
      const TlsConn::Want want = attempt(n, ec);
      if (want == TlsConn::Want::nothing) return settle(self, ec, n);
      Socket& s = c.next_layer();
      if (want == TlsConn::Want::write) {
        state = State::writing;
        return s.async_wait(Socket::wait_write, std::move(self));
      }
      auto in = c.tls_conn().input();
      if (read_now(s, in, got, ec)) {
        if (!took_input(c, got, in.size(), ec)) return settle(self, ec, 0);
        continue;
      }
      state = State::reading;
      in_room = in.size();
      return s.async_read_some(in, std::move(self));
    }
  }

  template <class Self>
  void settle(Self& self, error_code ec, std::size_t bytes) {
    if (state != State::start) return self.complete(ec, bytes);  // after a wait
    state = State::done;
    result = ec;
    n = bytes;
    net::post(c.get_executor(), std::move(self));
  }
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
auto ClientStream::async_handshake(Token&& token) {
  return tls_op(*this, [this](std::size_t&, error_code& ec) { return tls_->handshake(ec); },
                std::forward<Token>(token));
}

template <class Token>
auto ClientStream::async_close_notify(Token&& token) {
  return tls_op(*this, [this](std::size_t&, error_code& ec) {
    return tls_ ? tls_->close_notify(ec) : TlsConn::Want::nothing;
  }, std::forward<Token>(token));
}

// A request's head, as bhttp::async_read_header reads it. The reads are read_ready.h's (over
// TLS, those of the TLS layer's input): a keep-alive connection's next request is waited for
// without a recv() first that would find nothing (note_read()).
inline Task<void> read_head(ClientStream& client, beast::flat_buffer& buf,
                     bhttp::request_parser<bhttp::string_body>& parser, error_code& ec) {
  Socket& s = client.next_layer();
  ec = {};
  for (;;) {
    if (buf.size() > 0) {
      buf.consume(parser.put(buf.data(), ec));
      if (ec != bhttp::error::need_more) co_return;  // the head is in, or it is refused
      ec = {};
    }
    const std::size_t room = beast::read_size(buf, 65536);
    if (room == 0) {
      ec = bhttp::error::buffer_overflow;
      co_return;
    }
    auto space = buf.prepare(room);
    std::size_t n = 0;
    if (client.tls()) {
      TlsConn& t = client.tls_conn();
      for (;;) {
        const auto want = t.read(space.data(), space.size(), n, ec);
        if (want == TlsConn::Want::nothing) break;
        if (want == TlsConn::Want::write) {
          co_await tls_wait(client, want, ec);
        } else {  // tls_wait()'s read, without its coroutine frame: once per request
          auto in = t.input();
          std::size_t got = 0;
          if (!read_now(s, in, got, ec)) {
            got = co_await s.async_read_some(in, net::redirect_error(use_task, ec));
          }
          took_input(client, got, in.size(), ec);
        }
        if (ec) break;
      }
    } else if (!read_now(s, space, n, ec)) {
      // Nothing there: Asio waits for the event, its recv() runs as the event is handled, and
      // this coroutine goes on at once (no other epoll report in between, as note_read()
      // needs). Not async_wait: Asio re-arms the registration (an epoll_ctl) for each one.
      n = co_await s.async_read_some(space, net::redirect_error(use_task, ec));
    }
    if (ec == net::error::eof) {
      if (!parser.got_some()) {
        ec = bhttp::error::end_of_stream;
        co_return;
      }
      ec = {};
      parser.put_eof(ec);  // a head cut short: partial_message
      co_return;
    }
    if (ec) co_return;
    if (!client.tls()) note_read(s, n, space.size());
    buf.commit(n);
  }
}


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

// Writes `buffers` over TLS after their first `sent` bytes, record by record, while the socket
// takes them (`sent` grows). Want::nothing once all went out or on `ec`; else what the last
// record waits for: after tls_wait(), call again with the same buffers and `sent` (the record
// is offered again, as OpenSSL wants).
template <class Buffers>
TlsConn::Want write_records(ClientStream& stream, const Buffers& buffers, std::size_t& sent,
                            error_code& ec) {
  for (;;) {
    std::string_view rec = next_record(stream, buffers, sent);
    if (rec.empty()) return TlsConn::Want::nothing;
    std::size_t n = 0;
    const TlsConn::Want want = stream.tls_conn().write(rec.data(), rec.size(), n, ec);
    if (want != TlsConn::Want::nothing || ec) return want;
    sent += n;
  }
}

// The TLS branch of send(): the serializer's buffers, as many records as the socket takes.
template <bool isRequest, class Body, class Fields>
Task<void> send_tls(ClientStream& stream, bhttp::serializer<isRequest, Body, Fields>& sr,
                    error_code& ec) {
  while (!sr.is_done()) {
    std::size_t sent = 0;
    TlsConn::Want want = TlsConn::Want::nothing;
    sr.next(ec, [&](error_code& wec, const auto& buffers) {
      want = write_records(stream, buffers, sent, wec);
    });
    if (ec) co_return;
    sr.consume(sent);
    if (want != TlsConn::Want::nothing) {
      co_await tls_wait(stream, want, ec);
      if (ec) co_return;
    } else if (sent == 0) {
      co_return;  // nothing was left to write
    }
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
    // Else write_rest() offers the same record again.
    if (stream.tls()) return write_records(stream, buffers, sent, ec) == TlsConn::Want::nothing;
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
        const TlsConn::Want want = write_records(stream, buffers, sent, ec);
        if (want == TlsConn::Want::nothing) co_return;
        co_await tls_wait(stream, want, ec);
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
}  // namespace ck
