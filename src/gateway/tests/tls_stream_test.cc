// The gateway's TLS layer (tls_stream.h) against an OpenSSL client over a socket pair, both
// non-blocking and stepped by hand: the handshake, data both ways, a full socket (the write
// retried with the same bytes from another address), the ends of a stream, and garbage.
#include "gateway/tls_stream.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/error.hpp>
#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "gateway/tests/self_signed.h"

namespace ck::gw {
namespace {

using Want = TlsConn::Want;
using error_code = boost::system::error_code;

class TlsStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds_), 0);
    sctx_ = self_signed_server_context();
    cctx_ = SSL_CTX_new(TLS_client_method());  // verifies nothing: the test's own peer
    server_ = std::make_unique<TlsConn>(sctx_, fds_[0]);
    client_ = SSL_new(cctx_);
    SSL_set_fd(client_, fds_[1]);
    SSL_set_connect_state(client_);
  }
  void TearDown() override {
    server_.reset();
    SSL_free(client_);
    SSL_CTX_free(sctx_);
    SSL_CTX_free(cctx_);
    ::close(fds_[0]);
    ::close(fds_[1]);
    ERR_clear_error();
  }

  // One read of the server's socket into the TLS input, as the session does on Want::read.
  // False when nothing was there.
  bool feed() {
    auto in = server_->input();
    ssize_t n = ::recv(fds_[0], in.data(), in.size(), 0);
    if (n > 0) server_->received(static_cast<std::size_t>(n));
    if (n == 0) server_->received_eof();
    return n >= 0;
  }

  void handshake() {
    bool server_done = false;
    bool client_done = false;
    for (int i = 0; i < 100 && !(server_done && client_done); ++i) {
      if (!client_done) {
        int rc = SSL_do_handshake(client_);
        client_done = rc == 1;
        if (!client_done) {
          int err = SSL_get_error(client_, rc);
          ASSERT_TRUE(err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) << err;
        }
      }
      if (!server_done) {
        error_code ec;
        Want w = server_->handshake(ec);
        ASSERT_FALSE(ec) << ec.message();
        server_done = w == Want::nothing;
        if (w == Want::read) feed();
      }
    }
    ASSERT_TRUE(server_done && client_done);
  }

  // What the client reads now (its socket is non-blocking).
  std::string client_read() {
    std::string out;
    char buf[4096];
    for (;;) {
      std::size_t n = 0;
      if (SSL_read_ex(client_, buf, sizeof buf, &n) != 1) break;
      out.append(buf, n);
    }
    ERR_clear_error();
    return out;
  }

  // Reads on the server until it settles, feeding its input as it asks.
  Want server_read(std::string& out, error_code& ec, std::size_t chunk = 4096) {
    std::vector<char> buf(chunk);
    for (int i = 0; i < 100; ++i) {
      std::size_t n = 0;
      Want w = server_->read(buf.data(), buf.size(), n, ec);
      if (w == Want::nothing) {
        out.append(buf.data(), n);
        return w;
      }
      if (w != Want::read || !feed()) return w;
    }
    return Want::read;
  }

  int fds_[2] = {-1, -1};
  SSL_CTX* sctx_ = nullptr;
  SSL_CTX* cctx_ = nullptr;
  std::unique_ptr<TlsConn> server_;
  SSL* client_ = nullptr;
};

TEST_F(TlsStreamTest, HandshakeThenDataBothWays) {
  handshake();
  ASSERT_EQ(SSL_write(client_, "GET / HTTP/1.1\r\n\r\n", 18), 18);
  std::string got;
  error_code ec;
  EXPECT_EQ(server_read(got, ec), Want::nothing);
  EXPECT_FALSE(ec);
  EXPECT_EQ(got, "GET / HTTP/1.1\r\n\r\n");

  std::size_t n = 0;
  EXPECT_EQ(server_->write("HTTP/1.1 200 OK\r\n\r\n", 19, n, ec), Want::nothing);
  EXPECT_EQ(n, 19u);
  EXPECT_EQ(client_read(), "HTTP/1.1 200 OK\r\n\r\n");
}

TEST_F(TlsStreamTest, SeveralRecordsAtOnceAreReadWithoutWaiting) {
  handshake();
  ASSERT_EQ(SSL_write(client_, "first;", 6), 6);
  ASSERT_EQ(SSL_write(client_, "second;", 7), 7);
  ASSERT_TRUE(feed());  // both records in one socket read
  std::string got;
  error_code ec;
  char buf[4];
  for (int i = 0; i < 10 && got.size() < 13; ++i) {
    std::size_t n = 0;
    ASSERT_EQ(server_->read(buf, sizeof buf, n, ec), Want::nothing) << "read " << i;
    got.append(buf, n);
  }
  EXPECT_EQ(got, "first;second;");
  std::size_t n = 0;
  EXPECT_EQ(server_->read(buf, sizeof buf, n, ec), Want::read);  // now it needs the socket
}

TEST_F(TlsStreamTest, FullSocketWantsWriteThenTakesTheSameBytesFromAnotherAddress) {
  handshake();
  int small = 4096;
  ::setsockopt(fds_[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  ::setsockopt(fds_[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  std::string sent;
  std::string record(TlsConn::kRecord, '\0');
  error_code ec;
  Want w = Want::nothing;
  for (int i = 0; i < 1000 && w == Want::nothing; ++i) {
    for (std::size_t k = 0; k < record.size(); ++k) record[k] = static_cast<char>('a' + (i + k) % 26);
    std::size_t n = 0;
    w = server_->write(record.data(), record.size(), n, ec);
    ASSERT_FALSE(ec) << ec.message();
    if (w == Want::nothing) sent.append(record, 0, n);
  }
  ASSERT_EQ(w, Want::write) << "the socket never filled";
  // The same bytes, offered again from a copy elsewhere in memory, once the client read some.
  const std::string again = record;
  std::string received = client_read();
  std::size_t n = 0;
  for (int i = 0; i < 1000 && w != Want::nothing; ++i) {
    w = server_->write(again.data(), again.size(), n, ec);
    ASSERT_FALSE(ec) << ec.message();
    received += client_read();
  }
  ASSERT_EQ(w, Want::nothing);
  EXPECT_EQ(n, again.size());
  sent += again;
  for (int i = 0; i < 1000 && received.size() < sent.size(); ++i) received += client_read();
  EXPECT_EQ(received.size(), sent.size());
  EXPECT_TRUE(received == sent) << "the bytes arrived changed or out of order";
}

TEST_F(TlsStreamTest, CloseNotifyReadsAsTheEnd) {
  handshake();
  ASSERT_GE(SSL_shutdown(client_), 0);
  std::string got;
  error_code ec;
  EXPECT_EQ(server_read(got, ec), Want::nothing);
  EXPECT_EQ(ec, boost::asio::error::eof);
  // The server's close_notify goes out once.
  EXPECT_EQ(server_->close_notify(ec), Want::nothing);
  EXPECT_FALSE(ec) << ec.message();
}

TEST_F(TlsStreamTest, ClosedSocketWithoutCloseNotifyReadsAsTheEnd) {
  handshake();
  ASSERT_EQ(SSL_write(client_, "partial", 7), 7);
  ::shutdown(fds_[1], SHUT_WR);
  std::string got;
  error_code ec;
  EXPECT_EQ(server_read(got, ec), Want::nothing);
  EXPECT_EQ(got, "partial");
  got.clear();
  EXPECT_EQ(server_read(got, ec), Want::nothing);
  EXPECT_EQ(ec, boost::asio::error::eof);
}

TEST_F(TlsStreamTest, GarbageIsAnErrorNotTheEnd) {
  handshake();
  // An application-data record whose authentication cannot succeed.
  const unsigned char junk[] = {0x17, 0x03, 0x03, 0x00, 0x20, 1, 2,  3,  4,  5,  6,  7,
                                8,    9,    10,   11,   12,   13, 14, 15, 16, 17, 18, 19,
                                20,   21,   22,   23,   24,   25, 26, 27, 28, 29, 30, 31, 32};
  ASSERT_EQ(::send(fds_[1], junk, sizeof junk, 0), static_cast<ssize_t>(sizeof junk));
  std::string got;
  error_code ec;
  EXPECT_EQ(server_read(got, ec), Want::nothing);
  EXPECT_TRUE(ec);
  EXPECT_NE(ec, boost::asio::error::eof) << ec.message();
  EXPECT_TRUE(got.empty());
  // The error queue is left empty for the next connection on this thread.
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(TlsStreamTest, PlainHttpInsteadOfAHandshakeFails) {
  const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_GT(::send(fds_[1], req, sizeof req - 1, 0), 0);
  error_code ec;
  Want w = Want::read;
  for (int i = 0; i < 10 && w == Want::read; ++i) {
    w = server_->handshake(ec);
    if (w == Want::read) feed();
  }
  EXPECT_EQ(w, Want::nothing);
  EXPECT_TRUE(ec);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

}  // namespace
}  // namespace ck::gw
