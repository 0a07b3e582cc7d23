#pragma once
// TLS for the gateway's listener (private to gateway/*.cc, like impl.h). TlsContexts is one
// immutable set of OpenSSL contexts, one per certificate (the first is the default), with an
// SNI callback that picks among them (tls_names.h) and ALPN http/1.1. TlsStore holds the
// current set and swaps in a new one, whole, when the files change: a connection keeps the
// set it started its handshake with (ClientStream holds a reference), so a reload never
// touches an open connection. current() is called on the worker threads (on accept); poll()
// on one worker's thread.
#include "http/asio.h"
// clang-format off
#include <boost/asio/ssl/context.hpp>
// clang-format on
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"

namespace ck::gw {

class TlsContexts {
 public:
  /// Reads and checks every pair (the certificate chain, its private key, that they belong
  /// together). The error names the file and says what to do.
  static Result<std::shared_ptr<TlsContexts>> load(const std::vector<TlsFiles>& files);
  TlsContexts(const TlsContexts&) = delete;
  TlsContexts& operator=(const TlsContexts&) = delete;

  /// The default certificate's context: every handshake starts with it (SNI may switch).
  net::ssl::context& default_context() { return *contexts_.front(); }
  /// What the certificates cover, for the log: "example.test, *.example.test; other.test".
  std::string describe() const;

 private:
  TlsContexts() = default;
  static int on_server_name(SSL* ssl, int* alert, void* arg);
  std::vector<std::unique_ptr<net::ssl::context>> contexts_;
  std::vector<std::vector<std::string>> names_;  // SAN DNS names (else the CN) of each
};

class TlsStore {
 public:
  explicit TlsStore(std::vector<TlsFiles> files) : files_(std::move(files)) {}
  /// The first load, at startup: fails with one clear line.
  Result<void> load();
  /// The set new handshakes use. Thread-safe.
  std::shared_ptr<TlsContexts> current() const { return current_.load(std::memory_order_acquire); }
  /// Reloads the files if they changed since the last attempt (inode, size, times). A load
  /// that fails keeps the current set and logs a warning; it is tried again when the files
  /// change again. Called on one thread.
  void poll();

 private:
  std::string stamps() const;
  std::vector<TlsFiles> files_;
  std::atomic<std::shared_ptr<TlsContexts>> current_;
  std::string seen_;  // stamps() at the last attempt
};

}  // namespace ck::gw
