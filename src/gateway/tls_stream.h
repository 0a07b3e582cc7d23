#pragma once
// TLS on a client connection's socket, the way nginx does it: OpenSSL writes its records
// straight to the descriptor (send()) and reads them from a buffer that the session fills with
// the socket's own reads (read_ready.h's, so a keep-alive request over TLS costs the system
// calls one over plain TCP does). Before, Asio's ssl::stream under beast::flat_stream put a
// memory BIO pair between OpenSSL and the socket: each record copied once more, the error
// queue cleared and the BIO pair polled around every call, and a composed operation for every
// read and write; bench/gateway/profile_proxy.sh (PROFILE_TLS=1) counted 49.5k instructions per
// proxied request against nginx's 45.0k.
//
// TlsConn is only OpenSSL's state machine: every operation is tried now and says what it
// waits for (Want::read: more bytes in input(); Want::write: room in the socket), and the
// caller waits for that on the socket and tries again. Private to the gateway; no Beast here.
#include <openssl/ssl.h>

#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <memory>

namespace ck::gw {

class TlsConn {
 public:
  /// What an operation needs before it is tried again with the same arguments.
  enum class Want { nothing, read, write };

  /// A server-side TLS connection over the socket `fd` with `ctx`'s settings (SNI may switch
  /// the context during the handshake). `fd` stays the caller's.
  TlsConn(SSL_CTX* ctx, int fd);
  ~TlsConn();
  TlsConn(const TlsConn&) = delete;
  TlsConn& operator=(const TlsConn&) = delete;

  /// The server's handshake. Want::nothing when done, or with `ec` when it failed.
  Want handshake(boost::system::error_code& ec);
  /// Up to `len` bytes of application data into `p`. Want::nothing with `n` > 0, or with `ec`
  /// (net::error::eof once the peer closed, with or without its close_notify).
  Want read(void* p, std::size_t len, std::size_t& n, boost::system::error_code& ec);
  /// Encrypts and sends up to `len` bytes (one record at most): Want::nothing with `n` > 0
  /// taken, or with `ec`. After Want::write, the same bytes must be offered again (they may
  /// sit elsewhere in memory).
  Want write(const void* p, std::size_t len, std::size_t& n, boost::system::error_code& ec);
  /// Sends the close_notify (Want::nothing once it left; the peer's is not waited for).
  Want close_notify(boost::system::error_code& ec);

  /// Where the next socket read goes (never empty), and what it brought: n > 0 bytes, or the
  /// end of the stream.
  boost::asio::mutable_buffer input();
  void received(std::size_t n) { in_end_ += n; }
  void received_eof() { in_eof_ = true; }

  SSL* native_handle() { return ssl_; }

  /// The largest record's payload: what write() takes at most in one call.
  static constexpr std::size_t kRecord = 16 * 1024;

 private:
  static BIO_METHOD* bio_method();
  static int bio_write(BIO* b, const char* data, int len);
  static int bio_read(BIO* b, char* data, int len);
  static long bio_ctrl(BIO* b, int cmd, long num, void* ptr);  // NOLINT(google-runtime-int): OpenSSL's
  Want settle(int rc, boost::system::error_code& ec);

  SSL* ssl_ = nullptr;
  int fd_;
  int send_errno_ = 0;  // the errno of a send() that failed other than EAGAIN
  // The bytes read from the socket and not taken by OpenSSL yet: [in_begin_, in_end_).
  std::unique_ptr<char[]> in_;
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
  bool in_eof_ = false;
};

}  // namespace ck::gw
