#pragma once
// The HTML the gateway writes itself: the home index and error pages. Pure functions.

#include <string>
#include <string_view>

#include "core/public_url.h"
#include "monitor/snapshot.h"

namespace ck {

/// The home page at / when there is no www workspace: every workspace with its icon,
/// description, "type — matched file", status and link (workspace_link(): its own host
/// with gateway.domain, its public URL with gateway.public_url, else /<name>/).
std::string render_home_page(const Snapshot& snap, const PublicAddress& address = {});

/// An error page: status line as title, what happened, what to do next, and a link to the
/// home page at `home`.
std::string render_error_page(int status, std::string_view title, std::string_view message,
                              std::string_view hint, bool auto_refresh = false,
                              std::string_view home = "/");

/// The live-reload script for a static workspace's pages: it subscribes to the workspace on
/// /monitor/ws and reloads the page on a "reload" event, reconnecting with backoff.
std::string reload_script(std::string_view workspace);

/// `html` with reload_script() inserted before the last </body> (any case), or appended.
std::string inject_reload_script(std::string html, std::string_view workspace);

}  // namespace ck
