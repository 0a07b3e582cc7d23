// The TLS layer on the client's socket: OpenSSL over a BIO of our own. See tls_stream.h.
#include "gateway/tls_stream.h"

#include <openssl/err.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <cerrno>
#include <cstring>

namespace ck::gw {

namespace net = boost::asio;
using error_code = boost::system::error_code;

namespace {
// One record with its header and the largest expansion a cipher adds: what OpenSSL may need
// in one piece. It takes the bytes as it parses them, so the buffer is empty when it wants more.
constexpr std::size_t kInput = TlsConn::kRecord + 512;
}  // namespace

BIO_METHOD* TlsConn::bio_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cloudyknight socket");
    BIO_meth_set_write(m, &TlsConn::bio_write);
    BIO_meth_set_read(m, &TlsConn::bio_read);
    BIO_meth_set_ctrl(m, &TlsConn::bio_ctrl);
    return m;
  }();
  return method;
}

TlsConn::TlsConn(SSL_CTX* ctx, int fd) : fd_(fd), in_(std::make_unique<char[]>(kInput)) {
  ssl_ = SSL_new(ctx);
  BIO* bio = ssl_ ? BIO_new(bio_method()) : nullptr;
  if (!bio) {
    if (ssl_) SSL_free(ssl_);
    ssl_ = nullptr;
    ERR_clear_error();
    return;  // handshake() says so
  }
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set0_rbio(ssl_, bio);  // each takes one reference
  BIO_up_ref(bio);
  SSL_set0_wbio(ssl_, bio);
  // A write may take part of what it is given (one record); a retry may come from another
  // address (the bytes are gathered again); OpenSSL's own buffers are freed between records,
  // as nginx has it (idle keep-alive connections then hold only in_).
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                         SSL_MODE_RELEASE_BUFFERS);
  SSL_set_accept_state(ssl_);
}

TlsConn::~TlsConn() {
  if (ssl_) SSL_free(ssl_);  // frees the BIO too
}

net::mutable_buffer TlsConn::input() {
  if (in_begin_ == in_end_) {
    in_begin_ = in_end_ = 0;
  } else if (in_end_ == kInput) {
    std::memmove(in_.get(), in_.get() + in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  return {in_.get() + in_end_, kInput - in_end_};
}

int TlsConn::bio_read(BIO* b, char* data, int len) {
  auto* self = static_cast<TlsConn*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  const std::size_t avail = self->in_end_ - self->in_begin_;
  if (avail == 0) {
    if (self->in_eof_) return 0;
    BIO_set_retry_read(b);
    return -1;
  }
  const std::size_t n = std::min(avail, static_cast<std::size_t>(std::max(len, 0)));
  std::memcpy(data, self->in_.get() + self->in_begin_, n);
  self->in_begin_ += n;
  return static_cast<int>(n);
}

int TlsConn::bio_write(BIO* b, const char* data, int len) {
  auto* self = static_cast<TlsConn*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  const ssize_t n = ::send(self->fd_, data, static_cast<std::size_t>(std::max(len, 0)),
                           MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n >= 0) return static_cast<int>(n);
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    BIO_set_retry_write(b);
    return -1;
  }
  self->send_errno_ = errno;
  return -1;
}

long TlsConn::bio_ctrl(BIO* b, int cmd, long, void*) {  // NOLINT(google-runtime-int)
  auto* self = static_cast<TlsConn*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_FLUSH:  // send() leaves nothing behind
      return 1;
    case BIO_CTRL_PENDING:
      return static_cast<long>(self->in_end_ - self->in_begin_);  // NOLINT(google-runtime-int)
    case BIO_CTRL_EOF:
      return self->in_eof_ && self->in_end_ == self->in_begin_ ? 1 : 0;
    default:
      return 0;  // not supported (kTLS, dgram controls, ...)
  }
}

TlsConn::Want TlsConn::settle(int rc, error_code& ec) {
  const int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ) return Want::read;
  if (err == SSL_ERROR_WANT_WRITE) return Want::write;
  const bool ended = in_eof_ && in_begin_ == in_end_;
  if (err == SSL_ERROR_ZERO_RETURN) {
    ec = net::error::eof;  // the peer's close_notify
  } else if (send_errno_ != 0) {
    ec = error_code(send_errno_, boost::system::system_category());
  } else if (ended && (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_SSL)) {
    ec = net::error::eof;  // the connection ended without a close_notify
  } else if (err == SSL_ERROR_SSL) {
    ec = error_code(static_cast<int>(ERR_get_error()), net::error::get_ssl_category());
  } else {
    ec = net::error::connection_reset;
  }
  // The thread's error queue is left empty, so SSL_get_error() reads only the next call's.
  ERR_clear_error();
  return Want::nothing;
}

TlsConn::Want TlsConn::handshake(error_code& ec) {
  ec = {};
  if (!ssl_) {
    ec = net::error::no_memory;
    return Want::nothing;
  }
  const int rc = SSL_do_handshake(ssl_);
  return rc == 1 ? Want::nothing : settle(rc, ec);
}

TlsConn::Want TlsConn::read(void* p, std::size_t len, std::size_t& n, error_code& ec) {
  ec = {};
  n = 0;
  const int rc = SSL_read_ex(ssl_, p, len, &n);
  return rc == 1 ? Want::nothing : settle(rc, ec);
}

TlsConn::Want TlsConn::write(const void* p, std::size_t len, std::size_t& n, error_code& ec) {
  ec = {};
  n = 0;
  const int rc = SSL_write_ex(ssl_, p, std::min(len, kRecord), &n);
  return rc == 1 ? Want::nothing : settle(rc, ec);
}

TlsConn::Want TlsConn::close_notify(error_code& ec) {
  ec = {};
  if (!ssl_ || !SSL_is_init_finished(ssl_)) return Want::nothing;  // nothing to close
  const int rc = SSL_shutdown(ssl_);
  return rc >= 0 ? Want::nothing : settle(rc, ec);
}

}  // namespace ck::gw
