#pragma once
// Pure helpers for the API's authentication and log endpoints: reading credentials out of
// request headers and the last lines of a workspace log. No I/O except tail_lines (one file).

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace ck {

/// The value of cookie `name` in a Cookie header ("a=1; ck_session=xyz"), or nullopt. The first
/// one wins; names are case-sensitive; surrounding spaces and double quotes are dropped.
std::optional<std::string> cookie_value(std::string_view header, std::string_view name);

/// The credential of an `Authorization: Bearer <token>` header (the scheme case-insensitive),
/// or nullopt for another scheme, a missing token or one with spaces inside.
std::optional<std::string> bearer_token(std::string_view authorization);

/// The last `n` lines of `text`, without their line ends ("\n" or "\r\n"); a final newline does
/// not make an empty last line.
std::vector<std::string> last_lines(std::string_view text, std::size_t n);

/// The last `n` lines of a file, reading at most its last `max_bytes` (when the read starts
/// mid-file, the partial first line is dropped). A missing or unreadable file has no lines.
std::vector<std::string> tail_lines(const std::filesystem::path& path, std::size_t n,
                                    std::size_t max_bytes);

/// A `?tail=N` value: empty gives `fallback`; otherwise a whole number from 1 to `max`, else
/// Errc::invalid_argument saying so.
Result<int> parse_tail(std::string_view text, int fallback, int max);

}  // namespace ck
