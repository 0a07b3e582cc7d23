// TLS contexts for the gateway's listener: loading PEM files, SNI, ALPN, reloading. Design in
// tls.h.
#include "gateway/tls.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/log.h"
#include "gateway/tls_names.h"

namespace ck::gw {
namespace {

auto tls_logger() {
  static auto l = log::get("gateway");
  return l;
}

constexpr std::size_t kMaxPemBytes = 1 << 20;

// The last OpenSSL error as text (and the queue cleared), or `fallback`.
std::string openssl_error(std::string_view fallback) {
  unsigned long e = ERR_peek_last_error();
  std::string out(fallback);
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out = buf;
  }
  ERR_clear_error();
  return out;
}

Result<std::string> read_pem(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(Errc::invalid_argument,
                fmt::format("cannot read the TLS {} file {}: {} (check the path in "
                            "gateway.tls and that the daemon may read it)",
                            what, path, std::strerror(errno)));
  }
  std::string data(kMaxPemBytes + 1, '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<std::size_t>(in.gcount()));
  if (data.size() > kMaxPemBytes) {
    return fail(
        Errc::invalid_argument,
        fmt::format("the TLS {} file {} is larger than 1 MiB: is it the right file?", what, path));
  }
  return data;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

BioPtr memory_bio(const std::string& data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// Never prompts on the terminal for an encrypted key's pass phrase.
int no_password(char*, int, int, void*) { return -1; }

// The DNS names a certificate covers: its SAN DNS entries, else its subject CN.
std::vector<std::string> certificate_names(X509* x) {
  std::vector<std::string> out;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type != GEN_DNS) continue;
      const unsigned char* p = ASN1_STRING_get0_data(g->d.dNSName);
      int n = ASN1_STRING_length(g->d.dNSName);
      if (p && n > 0)
        out.emplace_back(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
    }
    GENERAL_NAMES_free(sans);
  }
  if (out.empty()) {
    char cn[256];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    if (n > 0) out.emplace_back(cn, static_cast<std::size_t>(n));
  }
  return out;
}

// Offers http/1.1 when the client asks for it (ALPN); any other list: no ALPN at all.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof kHttp11, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

Result<std::unique_ptr<net::ssl::context>> make_context(const TlsFiles& f,
                                                        std::vector<std::string>& names) {
  BOOST_OUTCOME_TRY(cert_pem, read_pem(f.cert, "certificate"));
  BOOST_OUTCOME_TRY(key_pem, read_pem(f.key, "key"));
  auto ctx = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(
      c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  static const unsigned char kSessionContext[] = "cloudyknight";
  SSL_CTX_set_session_id_context(c, kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_alpn_select_cb(c, select_alpn, nullptr);

  ERR_clear_error();
  auto bio = memory_bio(cert_pem);
  X509Ptr leaf(PEM_read_bio_X509_AUX(bio.get(), nullptr, no_password, nullptr));
  if (!leaf) {
    ERR_clear_error();
    return fail(Errc::invalid_argument,
                fmt::format("the TLS certificate file {} holds no PEM certificate (it must start "
                            "with -----BEGIN CERTIFICATE-----; convert DER with openssl x509 "
                            "-inform der -in FILE -out FILE.pem)",
                            f.cert));
  }
  if (SSL_CTX_use_certificate(c, leaf.get()) != 1) {
    return fail(Errc::invalid_argument,
                fmt::format("the TLS certificate in {} is not usable: {} (issue a new one)", f.cert,
                            openssl_error("rejected")));
  }
  // The rest of the file: the chain (intermediates), sent after the leaf.
  for (int i = 0; i < 32; ++i) {
    X509* extra = PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr);
    if (!extra) break;
    if (SSL_CTX_add0_chain_cert(c, extra) != 1) {
      X509_free(extra);
      return fail(Errc::invalid_argument,
                  fmt::format("the certificate chain in {} is not usable: {}", f.cert,
                              openssl_error("rejected")));
    }
  }
  ERR_clear_error();  // the end of the file reads as "no start line"
  auto key_bio = memory_bio(key_pem);
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_password, nullptr));
  if (!key) {
    ERR_clear_error();
    bool encrypted = key_pem.find("ENCRYPTED") != std::string::npos;
    return fail(Errc::invalid_argument,
                encrypted ? fmt::format("the TLS key file {} is encrypted: give an unencrypted "
                                        "key (openssl pkey -in {} -out key.pem)",
                                        f.key, f.key)
                          : fmt::format("the TLS key file {} holds no PEM private key (it must "
                                        "start with -----BEGIN PRIVATE KEY----- or similar)",
                                        f.key));
  }
  if (SSL_CTX_use_PrivateKey(c, key.get()) != 1 || SSL_CTX_check_private_key(c) != 1) {
    ERR_clear_error();
    return fail(Errc::invalid_argument,
                fmt::format("the TLS key file {} does not belong to the certificate in {}: give "
                            "the key the certificate was issued for",
                            f.key, f.cert));
  }
  names = certificate_names(leaf.get());
  if (X509_cmp_current_time(X509_get0_notAfter(leaf.get())) < 0) {
    tls_logger()->warn(
        "the TLS certificate in {} has expired: browsers will refuse it; renew it "
        "(the new file is picked up without a restart)",
        f.cert);
  }
  return ctx;
}

}  // namespace

Result<std::shared_ptr<TlsContexts>> TlsContexts::load(const std::vector<TlsFiles>& files) {
  if (files.empty()) return fail(Errc::invalid_argument, "no TLS certificate configured");
  std::shared_ptr<TlsContexts> set(new TlsContexts());
  for (const auto& f : files) {
    std::vector<std::string> names;
    BOOST_OUTCOME_TRY(ctx, make_context(f, names));
    set->contexts_.push_back(std::move(ctx));
    set->names_.push_back(std::move(names));
  }
  // Every handshake starts on the default context; its callback may move it to another.
  SSL_CTX* first = set->contexts_.front()->native_handle();
  if (set->contexts_.size() > 1) {
    SSL_CTX_set_tlsext_servername_callback(first, &TlsContexts::on_server_name);
    SSL_CTX_set_tlsext_servername_arg(first, set.get());
  }
  return set;
}

int TlsContexts::on_server_name(SSL* ssl, int*, void* arg) {
  // `arg` is the set the connection holds a reference to (ClientStream), so it is alive.
  auto* self = static_cast<TlsContexts*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  std::size_t i =
      pick_certificate(self->names_, name ? std::string_view(name) : std::string_view());
  if (i != 0) SSL_set_SSL_CTX(ssl, self->contexts_[i]->native_handle());
  return SSL_TLSEXT_ERR_OK;
}

std::string TlsContexts::describe() const {
  std::string out;
  for (const auto& names : names_) {
    if (!out.empty()) out += "; ";
    std::string one;
    for (const auto& n : names) one += (one.empty() ? "" : ", ") + n;
    out += one.empty() ? "(no names)" : one;
  }
  return out;
}

std::string TlsStore::stamps() const {
  std::string out;
  for (const auto& f : files_) {
    for (const auto* path : {&f.cert, &f.key}) {
      struct stat st {};
      if (::stat(path->c_str(), &st) != 0) {
        out += fmt::format("{}:missing:{};", *path, errno);
        continue;
      }
      out +=
          fmt::format("{}:{}:{}:{}:{}.{}:{}.{};", *path, st.st_dev, st.st_ino, st.st_size,
                      st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
    }
  }
  return out;
}

Result<void> TlsStore::load() {
  seen_ = stamps();
  BOOST_OUTCOME_TRY(set, TlsContexts::load(files_));
  tls_logger()->info("TLS on: certificates for {}", set->describe());
  current_.store(std::move(set), std::memory_order_release);
  return outcome::success();
}

void TlsStore::poll() {
  std::string now = stamps();
  if (now == seen_) return;
  auto set = TlsContexts::load(files_);
  // A file still being written: look again at the next poll, whatever this load gave.
  std::string after = stamps();
  seen_ = after == now ? now : std::string();
  if (set.has_error()) {
    if (after == now) {
      tls_logger()->warn(
          "TLS certificates not reloaded, the current ones stay in use: {}; it is "
          "tried again when the files change",
          set.error().message);
    }
    return;
  }
  tls_logger()->info("TLS certificates reloaded: {}", set.value()->describe());
  current_.store(std::move(set.value()), std::memory_order_release);
}

}  // namespace ck::gw
