#pragma once
// The few primitives auth is built from: CSPRNG bytes (getrandom), lower-case base32, SHA-256 and
// HMAC-SHA-256 (OpenSSL libcrypto), and a constant-time comparison (CRYPTO_memcmp).
// Pure functions, safe from any thread.

#include <cstddef>
#include <string>
#include <string_view>

namespace ck::auth {

/// `n` bytes from the kernel's CSPRNG (getrandom(2), blocking only until it is seeded). Aborts
/// if the kernel refuses: running without randomness would mint guessable credentials.
std::string random_bytes(std::size_t n);

/// RFC 4648 base32, lower-case, without padding ("a".."z", "2".."7"): survives URLs, cookies,
/// shells and double-click selection.
std::string base32(std::string_view bytes);

/// `n` random bytes as base32 (e.g. 32 bytes -> 52 characters).
std::string random_base32(std::size_t n);

/// SHA-256 of `data`, as 64 lower-case hex digits.
std::string sha256_hex(std::string_view data);

/// HMAC-SHA-256(key, data), raw 32 bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);

/// True when a == b, in time that depends only on the lengths (CRYPTO_memcmp). The lengths are
/// not secret here: every compared value is a fixed-size hash or MAC.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace ck::auth
