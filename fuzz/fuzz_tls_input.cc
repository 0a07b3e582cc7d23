// Bytes from the network as the gateway's TLS layer takes them (gateway/tls_stream.h): a client's
// handshake, or anything else sent to the TLS listener. The layer must never crash, never wait
// for more input once the stream ended, and always leave the thread's OpenSSL error queue empty
// (the next connection on the worker reads its own errors only). The first byte sets how many
// bytes each socket read brings (1..256); the rest is what the client sent.
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "gateway/tests/self_signed.h"
#include "gateway/tls_stream.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using ck::gw::TlsConn;
  static SSL_CTX* const ctx = ck::gw::self_signed_server_context();
  if (size < 1) return 0;
  const std::size_t chunk = static_cast<std::size_t>(data[0]) + 1;
  ++data;
  --size;
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0) std::abort();
  {
    TlsConn t(ctx, fds[0]);
    std::size_t off = 0;
    bool ended = false;
    bool handshaken = false;
    char buf[512];
    for (int step = 0; step < 100000; ++step) {
      boost::system::error_code ec;
      std::size_t n = 0;
      const TlsConn::Want w = handshaken ? t.read(buf, sizeof buf, n, ec) : t.handshake(ec);
      while (::recv(fds[1], buf, sizeof buf, 0) > 0) {
      }  // what the server answered (alerts, its handshake): dropped, so it never fills
      if (w == TlsConn::Want::nothing) {
        if (ec) break;
        handshaken = true;
        continue;
      }
      if (w == TlsConn::Want::write) continue;  // room was made just above
      if (ended) std::abort();                  // waits for more after the end of the stream
      if (off == size) {
        t.received_eof();
        ended = true;
        continue;
      }
      auto in = t.input();
      if (in.size() == 0) std::abort();
      const std::size_t k = std::min({chunk, size - off, in.size()});
      std::memcpy(in.data(), data + off, k);
      t.received(k);
      off += k;
    }
  }
  if (ERR_peek_error() != 0) std::abort();
  ::close(fds[0]);
  ::close(fds[1]);
  return 0;
}
