#include "backup/crypto.h"

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstring>
#include <fstream>
#include <memory>

namespace ck::backup {
namespace {

constexpr std::string_view kMagic = "CKB1";

struct CipherCtx {
  EVP_CIPHER_CTX* p = EVP_CIPHER_CTX_new();
  ~CipherCtx() { EVP_CIPHER_CTX_free(p); }
};

void nonce_for(const unsigned char* base, std::uint32_t i, unsigned char* out) {
  std::memcpy(out, base, 12);
  std::uint32_t c = (std::uint32_t(out[8]) << 24) | (std::uint32_t(out[9]) << 16) |
                    (std::uint32_t(out[10]) << 8) | std::uint32_t(out[11]);
  c += i;
  out[8] = static_cast<unsigned char>(c >> 24);
  out[9] = static_cast<unsigned char>(c >> 16);
  out[10] = static_cast<unsigned char>(c >> 8);
  out[11] = static_cast<unsigned char>(c);
}

// Appends one frame sealing `plain` with `nonce`.
void seal_frame(const Keys& keys, const unsigned char* nonce, std::string_view plain, bool last,
                std::string& out) {
  CipherCtx ctx;
  EVP_EncryptInit_ex(ctx.p, EVP_aes_256_gcm(), nullptr, nullptr, nullptr);
  EVP_CIPHER_CTX_ctrl(ctx.p, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr);
  EVP_EncryptInit_ex(ctx.p, nullptr, nullptr, keys.enc.data(), nonce);
  int len = 0;
  unsigned char aad = last ? 1 : 0;
  EVP_EncryptUpdate(ctx.p, nullptr, &len, &aad, 1);
  out.append(kMagic);
  out.append(reinterpret_cast<const char*>(nonce), 12);
  std::size_t ct = out.size();
  out.resize(ct + plain.size() + 16);
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (!plain.empty()) {
    EVP_EncryptUpdate(ctx.p, o + ct, &len, reinterpret_cast<const unsigned char*>(plain.data()),
                      static_cast<int>(plain.size()));
  }
  EVP_EncryptFinal_ex(ctx.p, o + ct + plain.size(), &len);
  EVP_CIPHER_CTX_ctrl(ctx.p, EVP_CTRL_GCM_GET_TAG, 16, o + ct + plain.size());
}

// Opens one frame (magic, nonce, ct, tag) into `out`; false if it does not authenticate.
bool open_frame(const Keys& keys, std::string_view frame, const unsigned char* want_nonce,
                bool last, std::string& out) {
  if (frame.size() < kFrameOverhead || frame.substr(0, 4) != kMagic) return false;
  const auto* f = reinterpret_cast<const unsigned char*>(frame.data());
  if (want_nonce != nullptr && std::memcmp(f + 4, want_nonce, 12) != 0) return false;
  std::size_t n = frame.size() - kFrameOverhead;
  CipherCtx ctx;
  EVP_DecryptInit_ex(ctx.p, EVP_aes_256_gcm(), nullptr, nullptr, nullptr);
  EVP_CIPHER_CTX_ctrl(ctx.p, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr);
  EVP_DecryptInit_ex(ctx.p, nullptr, nullptr, keys.enc.data(), f + 4);
  int len = 0;
  unsigned char aad = last ? 1 : 0;
  EVP_DecryptUpdate(ctx.p, nullptr, &len, &aad, 1);
  std::size_t at = out.size();
  out.resize(at + n);
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (n > 0) EVP_DecryptUpdate(ctx.p, o + at, &len, f + 16, static_cast<int>(n));
  unsigned char tag[16];
  std::memcpy(tag, f + 16 + n, 16);
  EVP_CIPHER_CTX_ctrl(ctx.p, EVP_CTRL_GCM_SET_TAG, 16, tag);
  if (EVP_DecryptFinal_ex(ctx.p, o + at + n, &len) != 1) {
    out.resize(at);
    return false;
  }
  return true;
}

auto tampered(std::string_view what) {
  return fail(Errc::invalid_argument,
              fmt::format("{} does not decrypt: it was modified or damaged, or the key is not the "
                          "one this destination was created with (run `cloudyknight backup check`)",
                          what));
}

}  // namespace

Result<Keys> derive_keys(std::string_view passphrase, const KdfParams& k) {
  if (k.n < 2 || k.n > (1u << 20) || (k.n & (k.n - 1)) != 0 || k.r < 1 || k.r > 32 || k.p < 1 ||
      k.p > 16 || k.salt.size() < 8 || k.salt.size() > 64) {
    return fail(Errc::invalid_argument,
                "the destination's key derivation parameters are out of range (scrypt N a power "
                "of 2 up to 2^20, r 1-32, p 1-16, salt 8-64 bytes): ck-backup.json is damaged");
  }
  unsigned char out[64];
  std::uint64_t maxmem = 128 * k.r * k.n * (k.p + 1) + (1u << 20);
  if (EVP_PBE_scrypt(passphrase.data(), passphrase.size(),
                     reinterpret_cast<const unsigned char*>(k.salt.data()), k.salt.size(), k.n, k.r,
                     k.p, maxmem, out, sizeof out) != 1) {
    return fail(Errc::internal, "scrypt key derivation failed (out of memory?)");
  }
  Keys keys;
  std::memcpy(keys.enc.data(), out, 32);
  std::memcpy(keys.id.data(), out + 32, 32);
  OPENSSL_cleanse(out, sizeof out);
  return keys;
}

std::string random_bytes(std::size_t n) {
  std::string s(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), static_cast<int>(n));
  return s;
}

std::string seal(const Keys& keys, std::string_view plain) {
  std::string base = random_bytes(12);
  const auto* b = reinterpret_cast<const unsigned char*>(base.data());
  std::string out;
  out.reserve(plain.size() + (plain.size() / kSegment + 1) * kFrameOverhead);
  std::uint32_t i = 0;
  std::size_t at = 0;
  do {
    std::size_t n = std::min(kSegment, plain.size() - at);
    bool last = at + n == plain.size();
    unsigned char nonce[12];
    nonce_for(b, i, nonce);
    seal_frame(keys, nonce, plain.substr(at, n), last, out);
    at += n;
    ++i;
  } while (at < plain.size());
  return out;
}

Result<std::string> unseal(const Keys& keys, std::string_view sealed, std::string_view what) {
  std::string out;
  if (sealed.size() < kFrameOverhead) {
    return tampered(what);
  }
  out.reserve(sealed.size());
  unsigned char base[12];
  std::memcpy(base, sealed.data() + 4, 12);
  std::size_t at = 0;
  std::uint32_t i = 0;
  while (at < sealed.size()) {
    std::size_t n = std::min(kSegment + kFrameOverhead, sealed.size() - at);
    bool last = at + n == sealed.size();
    unsigned char nonce[12];
    nonce_for(base, i, nonce);
    if (!open_frame(keys, sealed.substr(at, n), nonce, last, out)) {
      return tampered(what);
    }
    at += n;
    ++i;
  }
  return out;
}

Result<std::string> stage_file(const Keys* keys, const std::filesystem::path& in,
                               const std::filesystem::path& out) {
  std::ifstream is(in, std::ios::binary);
  std::ofstream os(out, std::ios::binary | std::ios::trunc);
  if (!is || !os) {
    return fail(Errc::io, fmt::format("cannot read {} or write {}: {}", in.string(), out.string(),
                                      std::strerror(errno)));
  }
  BlobHasher hasher(keys);
  std::string base = random_bytes(12);
  const auto* b = reinterpret_cast<const unsigned char*>(base.data());
  std::string cur(kSegment, '\0'), next(kSegment, '\0');
  is.read(cur.data(), kSegment);
  std::size_t cur_n = static_cast<std::size_t>(is.gcount());
  std::uint32_t i = 0;
  std::string frame;
  for (;;) {
    std::size_t next_n = 0;
    if (cur_n == kSegment) {
      is.read(next.data(), kSegment);
      next_n = static_cast<std::size_t>(is.gcount());
    }
    bool last = next_n == 0;
    std::string_view plain(cur.data(), cur_n);
    hasher.update(plain);
    if (keys != nullptr) {
      unsigned char nonce[12];
      nonce_for(b, i++, nonce);
      frame.clear();
      seal_frame(*keys, nonce, plain, last, frame);
      os.write(frame.data(), static_cast<std::streamsize>(frame.size()));
    } else {
      os.write(plain.data(), static_cast<std::streamsize>(plain.size()));
    }
    if (last) break;
    std::swap(cur, next);
    cur_n = next_n;
  }
  if (is.bad() || !os.flush()) {
    return fail(Errc::io, fmt::format("copying {} into {} failed: {}", in.string(), out.string(),
                                      std::strerror(errno)));
  }
  return hasher.hex();
}

Result<std::string> unseal_file(const Keys& keys, const std::filesystem::path& in,
                                const std::filesystem::path& out, std::string_view what) {
  std::error_code ec;
  auto total = std::filesystem::file_size(in, ec);
  std::ifstream is(in, std::ios::binary);
  std::ofstream os(out, std::ios::binary | std::ios::trunc);
  if (ec || !is || !os) {
    return fail(Errc::io, fmt::format("cannot read {} or write {}: {}", in.string(), out.string(),
                                      std::strerror(errno)));
  }
  if (total < kFrameOverhead) {
    return tampered(what);
  }
  BlobHasher hasher(&keys);
  std::string frame(kSegment + kFrameOverhead, '\0'), plain;
  unsigned char base[12];
  std::uint64_t at = 0;
  std::uint32_t i = 0;
  while (at < total) {
    std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(kSegment + kFrameOverhead, total - at));
    is.read(frame.data(), static_cast<std::streamsize>(n));
    if (static_cast<std::size_t>(is.gcount()) != n) {
      return fail(Errc::io, fmt::format("reading {} failed", in.string()));
    }
    if (i == 0) std::memcpy(base, frame.data() + 4, 12);
    unsigned char nonce[12];
    nonce_for(base, i, nonce);
    plain.clear();
    if (!open_frame(keys, std::string_view(frame.data(), n), nonce, at + n == total, plain)) {
      return tampered(what);
    }
    hasher.update(plain);
    os.write(plain.data(), static_cast<std::streamsize>(plain.size()));
    at += n;
    ++i;
  }
  if (!os.flush()) {
    return fail(Errc::io, fmt::format("writing {} failed: {}", out.string(), std::strerror(errno)));
  }
  return hasher.hex();
}

BlobHasher::BlobHasher(const Keys* keys) : hmac_(keys != nullptr) {
  if (hmac_) {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    auto* c = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                           OSSL_PARAM_construct_end()};
    EVP_MAC_init(c, keys->id.data(), 32, params);
    ctx_ = c;
  } else {
    auto* c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, EVP_sha256(), nullptr);
    ctx_ = c;
  }
}

BlobHasher::~BlobHasher() {
  if (hmac_) {
    EVP_MAC_CTX_free(static_cast<EVP_MAC_CTX*>(ctx_));
  } else {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
  }
}

void BlobHasher::update(std::string_view d) {
  const auto* p = reinterpret_cast<const unsigned char*>(d.data());
  if (hmac_) {
    EVP_MAC_update(static_cast<EVP_MAC_CTX*>(ctx_), p, d.size());
  } else {
    EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), p, d.size());
  }
}

std::string BlobHasher::hex() {
  unsigned char md[32];
  unsigned int len = 32;
  if (hmac_) {
    std::size_t out = 0;
    EVP_MAC_final(static_cast<EVP_MAC_CTX*>(ctx_), md, &out, sizeof md);
    len = static_cast<unsigned int>(out);
  } else {
    EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), md, &len);
  }
  return to_hex(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string blob_id(const Keys* keys, std::string_view content) {
  BlobHasher h(keys);
  h.update(content);
  return h.hex();
}

Result<std::string> file_blob_id(const Keys* keys, const std::filesystem::path& file) {
  std::ifstream is(file, std::ios::binary);
  if (!is) {
    return fail(Errc::io, fmt::format("cannot read {}: {}", file.string(), std::strerror(errno)));
  }
  BlobHasher h(keys);
  std::string buf(kSegment, '\0');
  while (is) {
    is.read(buf.data(), kSegment);
    h.update(std::string_view(buf.data(), static_cast<std::size_t>(is.gcount())));
  }
  if (is.bad()) return fail(Errc::io, fmt::format("reading {} failed", file.string()));
  return h.hex();
}

std::string sha256_hex(std::string_view data) { return blob_id(nullptr, data); }

std::string to_hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    s.push_back(kHex[c >> 4]);
    s.push_back(kHex[c & 15]);
  }
  return s;
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

Result<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0 || text.size() > 4096) {
    return fail(Errc::invalid_argument, "not base64");
  }
  std::string out(text.size() / 4 * 3 + 1, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return fail(Errc::invalid_argument, "not base64");
  std::size_t len = static_cast<std::size_t>(n);
  if (text.size() >= 1 && text.back() == '=') --len;
  if (text.size() >= 2 && text[text.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

}  // namespace ck::backup
