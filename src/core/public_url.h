#pragma once
// Where the gateway is reachable from outside, and the addresses it gives out from that: a
// workspace's `url` in the API, the home page's links, an app's BASE_URL and CK_BASE_PATH
// (DESIGN.md "Gateway routing"). Pure; built once at start-up and then only read.

#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace ck {

struct PublicAddress {
  /// The one place the scheme is chosen: "http", or "https" from gateway.public_url (TLS
  /// termination switches it here too).
  std::string scheme = "http";
  std::string authority = "127.0.0.1:8080";  // host[:port] of the public base
  std::string path;    // the public base's path without a trailing slash: "" or "/ck"
  std::string domain;  // gateway.domain: <name>.<domain> is workspace <name>
  std::string port;    // ":8080" or "" (the scheme's default): the port of <name>.<domain> URLs
  /// gateway.public_url or gateway.domain is set, so links are absolute; otherwise the API
  /// and the home page keep relative links ("/<name>/"), which work on any host the gateway
  /// is reached by.
  bool configured = false;
};

/// From gateway.public_url (may be empty: then http://<listen host>[:port], with 0.0.0.0 and
/// :: shown as 127.0.0.1 and the port left out when it is the scheme's default), the
/// gateway's port and gateway.domain (normalised). invalid_argument for a malformed URL.
Result<PublicAddress> make_public_address(std::string_view public_url, std::string_view listen_host,
                                          std::uint16_t port, std::string_view domain);

/// The path under which workspace `name` is routed by path: "/<name>/"; "/" for www.
std::string workspace_base_path(std::string_view name);

/// The workspace's full external URL, ending in "/": http://<name>.<domain>[:port]/ with a
/// domain (www: http://<domain>[:port]/), else <public base>/<name>/ (www: <public base>/).
std::string workspace_url(std::string_view name, const PublicAddress& a);

/// The home page's full URL: http://<domain>[:port]/ with a domain, else <public base>/.
std::string home_url(const PublicAddress& a);

/// What a link to the workspace shows: workspace_url() when the address is configured, else
/// workspace_base_path().
std::string workspace_link(std::string_view name, const PublicAddress& a);

/// The same for the home page: home_url() when configured, else "/".
std::string home_link(const PublicAddress& a);

}  // namespace ck
