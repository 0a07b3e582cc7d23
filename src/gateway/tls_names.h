#pragma once
// Which certificate answers a TLS client: SNI matching, pure (no OpenSSL), so unit tests and
// fuzzers reach it directly. Used by tls.cc's servername callback on gateway threads.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace ck {

/// True if a certificate name (a SAN DNS entry, or the CN) covers `host`: equal ignoring
/// case, or a wildcard "*.example.test" standing for exactly one label ("a.example.test", not
/// "example.test" or "a.b.example.test"). `host` may end with one dot.
bool certificate_name_matches(std::string_view pattern, std::string_view host);

/// The index of the certificate that answers `server_name`: the first whose names hold it
/// exactly, else the first with a matching wildcard, else 0 (the default). `names[i]` are the
/// names of certificate i. An empty server name (no SNI) gets the default.
std::size_t pick_certificate(const std::vector<std::vector<std::string>>& names,
                             std::string_view server_name);

}  // namespace ck
