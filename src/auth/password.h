#pragma once
// Password hashing with argon2id (Debian's libargon2): an encoded string carrying its own
// parameters and 16-byte random salt, so changing the defaults later keeps old hashes valid.
// Pure functions, safe from any thread; each hash takes m_cost_kib of memory while it runs.

#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace ck::auth {

/// argon2id cost. The defaults follow RFC 9106's second recommendation (t=3, 64 MiB, p=1);
/// tests pass small values.
struct PasswordParams {
  std::uint32_t t_cost = 3;
  std::uint32_t m_cost_kib = 64 * 1024;
  std::uint32_t parallelism = 1;
};

inline constexpr std::size_t kMinPasswordLength = 10;  // characters (UTF-8 code points)
inline constexpr std::size_t kMaxPasswordBytes = 1024;

/// Errc::invalid_argument saying what is wrong when the password is shorter than
/// kMinPasswordLength characters or longer than kMaxPasswordBytes bytes.
Result<void> check_password_rules(std::string_view password);

/// The argon2id encoded string ($argon2id$v=19$m=..,t=..,p=..$salt$hash) of `password` with a
/// fresh 16-byte salt and a 32-byte hash. Does not check the rules above.
Result<std::string> hash_password(std::string_view password, const PasswordParams& params);

/// True when `password` matches `encoded`; false for a wrong password or an encoded string
/// that is not argon2id. The final comparison is constant-time (libargon2's own).
bool verify_password(std::string_view password, const std::string& encoded);

}  // namespace ck::auth
