#pragma once
// The backup repository's cryptography, over OpenSSL's EVP: scrypt key derivation, blob ids
// (SHA-256, or HMAC-SHA256 with the id key when encrypted) and the sealed object format
// (AES-256-GCM frames). Pure functions apart from reading/writing the files they are given.
//
// Sealed format: a sequence of frames, one per 1 MiB segment of plaintext (the last one shorter,
// possibly empty): "CKB1" | 12-byte nonce | ciphertext | 16-byte GCM tag. Frame 0's nonce is
// random; frame i's nonce is frame 0's with its last 4 bytes (big-endian) increased by i, so frames
// cannot be reordered. The AAD is one byte, 1 for the last frame and 0 otherwise, so cutting a
// sealed object at a frame boundary is detected.

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/error.h"

namespace ck::backup {

inline constexpr std::size_t kSegment = 1 << 20;
inline constexpr std::size_t kFrameOverhead = 4 + 12 + 16;

/// The two keys derived from the passphrase: AES-256-GCM and HMAC-SHA256 (blob ids).
struct Keys {
  std::array<unsigned char, 32> enc{};
  std::array<unsigned char, 32> id{};
};

struct KdfParams {
  std::uint64_t n = 32768;
  std::uint64_t r = 8;
  std::uint64_t p = 1;
  std::string salt;  // raw bytes
};

/// scrypt(passphrase, salt, N, r, p) -> 64 bytes: enc = bytes 0-31, id = bytes 32-63. Refuses
/// parameters beyond N 2^20, r 32, p 16 (a repository config is untrusted input).
Result<Keys> derive_keys(std::string_view passphrase, const KdfParams& params);

std::string random_bytes(std::size_t n);

/// The sealed form of `plain` (see above).
std::string seal(const Keys& keys, std::string_view plain);
/// The plaintext of a sealed object; fails if it is not one or does not authenticate. `what`
/// names the object in the message.
Result<std::string> unseal(const Keys& keys, std::string_view sealed, std::string_view what);

/// Copies the file `in` into `out` one segment at a time, sealed when `keys` is set, and returns
/// the blob id of the bytes it read (so the id always matches what was stored, even if the file
/// changes meanwhile).
Result<std::string> stage_file(const Keys* keys, const std::filesystem::path& in,
                               const std::filesystem::path& out);
/// Unseals `in` into `out` one frame at a time; returns the blob id of the plaintext.
Result<std::string> unseal_file(const Keys& keys, const std::filesystem::path& in,
                                const std::filesystem::path& out, std::string_view what);

/// Streaming blob id: SHA-256 (keys == nullptr) or HMAC-SHA256(keys->id), lowercase hex.
class BlobHasher {
 public:
  explicit BlobHasher(const Keys* keys);
  ~BlobHasher();
  BlobHasher(const BlobHasher&) = delete;
  BlobHasher& operator=(const BlobHasher&) = delete;
  void update(std::string_view data);
  std::string hex();  // once

 private:
  void* ctx_ = nullptr;
  bool hmac_ = false;
};

std::string blob_id(const Keys* keys, std::string_view content);
/// The blob id of a file's content, read in 1 MiB pieces.
Result<std::string> file_blob_id(const Keys* keys, const std::filesystem::path& file);
/// Lowercase hex SHA-256 (pack names).
std::string sha256_hex(std::string_view data);

std::string to_hex(std::string_view bytes);
std::string base64_encode(std::string_view bytes);
Result<std::string> base64_decode(std::string_view text);

}  // namespace ck::backup
