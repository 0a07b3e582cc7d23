#include "auth/password.h"

#include <argon2.h>
#include <fmt/format.h>

#include "auth/crypto.h"

namespace ck::auth {

namespace {
constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kHashBytes = 32;
}  // namespace

Result<void> check_password_rules(std::string_view password) {
  if (password.size() > kMaxPasswordBytes) {
    return ck::fail(
        Errc::invalid_argument,
        fmt::format("the password is too long: use at most {} bytes", kMaxPasswordBytes));
  }
  std::size_t chars = 0;
  for (unsigned char c : password) {
    if ((c & 0xC0) != 0x80) {  // count code points, not UTF-8 continuation bytes
      ++chars;
    }
  }
  if (chars < kMinPasswordLength) {
    return ck::fail(Errc::invalid_argument,
                    fmt::format("the password is too short ({} characters): use at least {}", chars,
                                kMinPasswordLength));
  }
  return outcome::success();
}

Result<std::string> hash_password(std::string_view password, const PasswordParams& params) {
  const std::string salt = random_bytes(kSaltBytes);
  const std::size_t len = argon2_encodedlen(params.t_cost, params.m_cost_kib, params.parallelism,
                                            kSaltBytes, kHashBytes, Argon2_id);
  std::string encoded(len, '\0');
  int rc = argon2id_hash_encoded(params.t_cost, params.m_cost_kib, params.parallelism,
                                 password.data(), password.size(), salt.data(), salt.size(),
                                 kHashBytes, encoded.data(), encoded.size());
  if (rc != ARGON2_OK) {
    return ck::fail(rc == ARGON2_MEMORY_ALLOCATION_ERROR ? Errc::unavailable : Errc::internal,
                    fmt::format("hashing the password failed: {}", argon2_error_message(rc)));
  }
  encoded.resize(encoded.find('\0') == std::string::npos ? encoded.size() : encoded.find('\0'));
  return encoded;
}

bool verify_password(std::string_view password, const std::string& encoded) {
  if (encoded.rfind("$argon2id$", 0) != 0) {
    return false;
  }
  return argon2id_verify(encoded.c_str(), password.data(), password.size()) == ARGON2_OK;
}

}  // namespace ck::auth
