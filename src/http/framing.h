#pragma once
// Request body framing checks (RFC 9112 section 6), pure: the gateway refuses a request whose
// length a server behind it could read differently (request smuggling) before it forwards a
// byte of it.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ck::http {

/// What check_framing() found wrong; `message` says it for the client (one sentence).
struct FramingError {
  std::string message;
};

/// Checks a request's Transfer-Encoding and Content-Length field values (every occurrence,
/// in order). Accepted: neither; Content-Length alone with one value (repeated identical
/// values count as one); Transfer-Encoding alone whose codings are exactly "chunked" (the
/// gateway decodes no other transfer coding). Anything else (a coding list not ending in
/// chunked, or with other codings; both fields; differing or malformed lengths) is an error,
/// which the gateway answers with 400 and a closed connection.
std::optional<FramingError> check_framing(const std::vector<std::string_view>& transfer_encoding,
                                          const std::vector<std::string_view>& content_length);

}  // namespace ck::http
