#pragma once
// The dashboard at /monitor/: index.html, ES modules and a stylesheet from src/dashboard/,
// embedded into the binary at build time (embed.cmake). serve() is a pure function of the
// request; the gateway calls it on its worker threads before the control-plane API.

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

#include "http/message.h"

namespace ck::dashboard {

/// One embedded file. `etag` is quoted, derived from the content at build time.
struct Asset {
  std::string_view name;  // "app.js"
  std::string_view content_type;
  std::string_view etag;
  const unsigned char* data;
  std::size_t size;

  std::string_view bytes() const { return {reinterpret_cast<const char*>(data), size}; }
};

/// Every embedded file, sorted by name (generated).
std::span<const Asset> assets();

/// The embedded file with this name, or nullptr.
const Asset* find(std::string_view name);

/// The Content-Security-Policy of every dashboard response. frame-src admits http(s) because the
/// preview loads a workspace on its own origin (<name>.<gateway.domain>, any port); the frame is
/// sandboxed without allow-same-origin, so what it loads never reaches the dashboard.
inline constexpr std::string_view kContentSecurityPolicy =
    "default-src 'self'; connect-src 'self' ws: wss:; frame-src 'self' http: https:; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'";

/// The answer for /monitor, /monitor/, /monitor/index.html and /monitor/assets/<file>, or
/// nullopt for any other path (the API's). GET and HEAD only; If-None-Match gives 304.
std::optional<http::Response> serve(const http::Request& req);

}  // namespace ck::dashboard
