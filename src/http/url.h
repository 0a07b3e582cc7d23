#pragma once
// URL and HTTP text helpers with no I/O: percent-decoding, query splitting, HTML escaping,
// HTTP dates. Pure, so unit tests and fuzzers call them directly.

#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ck::http {

/// Decodes %XX escapes. Returns nullopt on a malformed escape ("%zz", "%4").
/// '+' is left alone (it is only a space in form bodies, not in paths).
std::optional<std::string> percent_decode(std::string_view s);

/// Percent-encodes everything but RFC 3986 unreserved characters (and '/' when keep_slash).
std::string percent_encode(std::string_view s, bool keep_slash = false);

/// Splits "/a/b?x=1" into "/a/b" and "x=1".
std::pair<std::string_view, std::string_view> split_target(std::string_view target);

/// Value of `key` in "a=1&b=2", decoded; nullopt if absent.
std::optional<std::string> query_param(std::string_view query, std::string_view key);

std::string html_escape(std::string_view s);

/// RFC 7231 IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
std::string http_date(std::time_t t);
/// The current time as an IMF-fixdate, cached per thread and renewed once a second.
const std::string& http_date_now();
/// Parses an IMF-fixdate; nullopt for anything else.
std::optional<std::time_t> parse_http_date(std::string_view s);

/// Case-insensitive ASCII comparison.
bool iequals(std::string_view a, std::string_view b);
/// True if a comma-separated header value lists `token` (case-insensitive), e.g.
/// header_has_token("keep-alive, Upgrade", "upgrade").
bool header_has_token(std::string_view value, std::string_view token);
/// True if an If-None-Match value lists `etag` or is "*"; weak validators (W/) match too
/// (RFC 9110 weak comparison, as GET conditionals use).
bool etag_matches(std::string_view if_none_match, std::string_view etag);

/// One `name=value` pair of a Cookie header: the whole pair and its parts, trimmed of spaces and
/// tabs (the value as written, quotes kept; a pair without '=' has an empty value).
struct CookiePair {
  std::string_view pair, name, value;
};
/// The non-empty pairs of a Cookie header, in order.
std::vector<CookiePair> cookie_pairs(std::string_view header);

/// A Cookie header without the cookies named `name` ("a=1; ck_session=x; b=2" -> "a=1; b=2");
/// the other pairs are kept as they were, in order.
std::string without_cookie(std::string_view header, std::string_view name);

/// True if a browser would store this Set-Cookie value as the cookie `name` (names compared
/// case-insensitively, spaces trimmed). A nameless cookie ("=name=x", or "name" without '=')
/// counts too: browsers send its value alone, which reads back as `name`.
bool sets_cookie(std::string_view set_cookie, std::string_view name);

}  // namespace ck::http
