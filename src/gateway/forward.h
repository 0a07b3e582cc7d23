#pragma once
// What the reverse proxy writes on the wire, pure (no Beast, no I/O): the request head sent
// to an app and the response heads sent back to the client. Each is written in one pass over
// the parsed header fields, appended to a buffer the caller reuses, so a proxied request
// costs no allocation per header field and no rebuilt field container.
//
// Rules, both directions: hop-by-hop fields (RFC 9110 7.6.1: Connection, the fields it names,
// Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade) are not forwarded, and the message
// framing (Content-Length / Transfer-Encoding) is the gateway's own.
// Towards the app: the client's forwarding fields (X-Forwarded-*, X-Real-IP, Forwarded, in
// any case and with '_' for '-') are replaced by the gateway's own, written after the
// client's fields (so no Connection token can remove them), and the control plane's session
// cookie is removed from every Cookie field.
// Towards the client: the app's Server is replaced, and a Set-Cookie that would set the
// control plane's session cookie is dropped.
// Used on gateway threads; the functions keep thread-local scratch space.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ck {

/// One header field as parsed: name and value (without surrounding whitespace).
struct HeaderField {
  std::string_view name;
  std::string_view value;
};

/// True for a client's forwarding field the gateway replaces (X-Forwarded-*, X-Real-IP,
/// Forwarded), compared case-insensitively with '_' read as '-'.
bool is_forwarding_header(std::string_view name);

/// The request sent to an app.
struct UpstreamRequestHead {
  std::string_view method;
  std::string_view target;                // after routing (prefix stripped or kept)
  std::span<const HeaderField> fields;    // the client's, in order
  std::string_view client_ip;             // the peer: X-Forwarded-For, X-Real-IP, Forwarded
  std::string_view proto = "http";        // X-Forwarded-Proto and Forwarded's proto
  std::string_view prefix;                // X-Forwarded-Prefix, when not empty
  std::string_view session_cookie;        // removed from Cookie fields ("" = none)
  std::string_view host_session_cookie;   // its __Host- name, removed as well
  bool upgrade = false;                   // an Upgrade request: keeps Upgrade, sends Connection: Upgrade
  std::optional<std::uint64_t> content_length;  // the body's length, when the request has a body
};

/// Appends the request line (always HTTP/1.1) and header block, ending with the empty line.
/// The client's Host is kept (first one wins for X-Forwarded-Host); Expect is not forwarded
/// (the gateway reads the whole body first).
void append_upstream_request_head(const UpstreamRequestHead& r, std::string& out);

/// A response head sent to the client, from the app's.
struct ClientResponseHead {
  int version = 11;                       // the client's HTTP version: 10 or 11
  unsigned status = 200;
  std::string_view reason;
  std::span<const HeaderField> fields;    // the app's, in order
  std::string_view session_cookie;        // a Set-Cookie setting this is dropped ("" = none)
  std::string_view host_session_cookie;
  bool keep_alive = true;                 // the client connection stays open after it
  bool chunked = false;                   // the gateway sends the body chunked
  bool drop_content_length = false;       // the body's length is not the app's (re-framed)
  std::string_view hsts;                  // set: Strict-Transport-Security, replacing the app's
};

/// Appends the status line and header block, ending with the empty line: the app's fields
/// (without hop-by-hop fields, Server, Transfer-Encoding), then `Server: cloudyknight`, the
/// gateway's Transfer-Encoding, and Connection where the version needs it (close on 1.1,
/// keep-alive on 1.0).
void append_client_response_head(const ClientResponseHead& r, std::string& out);

/// Appends a chunk-size line ("1f40\r\n") for a chunk of `n` bytes.
void append_chunk_size(std::uint64_t n, std::string& out);

// The pieces of a head, shared with the heads the static file server writes (static_files.h).
/// Appends "HTTP/1.1 200 OK\r\n" (HTTP/1.0 for version 10).
void append_status_line(int version, unsigned status, std::string_view reason, std::string& out);
/// Appends "name: value\r\n".
void append_header_field(std::string& out, std::string_view name, std::string_view value);
/// Appends `n` in decimal.
void append_decimal(std::string& out, std::uint64_t n);

}  // namespace ck
