#pragma once
// Pieces the remote client's command files share (login_cmd.cc: login, logout and contexts;
// remote_cmd.cc: the ws commands over the API).

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/api_client.h"
#include "cli/common.h"
#include "core/error.h"

namespace ck::cli {

/// A token or a password typed or piped in is at most this long.
inline constexpr std::size_t kMaxSecret = 4096;

/// A non-2xx answer: its one line, and the exit code that goes with its status.
inline int refused(const ApiResponse& r) { return error(describe_failure(r), exit_code_for(r.status)); }

/// The body as a JSON object ({} for anything else).
inline nlohmann::json parse_object(const std::string& body) {
  auto doc = nlohmann::json::parse(body, nullptr, false);
  return doc.is_object() ? doc : nlohmann::json::object();
}

/// A string member, or `fallback` when it is absent or not a string.
inline std::string str(const nlohmann::json& doc, const char* key, const std::string& fallback = "") {
  auto it = doc.find(key);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : fallback;
}

/// Reads one line from stdin (at most kMaxSecret bytes); without echo when `hide` and stdin is a
/// terminal. login_cmd.cc.
Result<std::string> read_line(const std::string& prompt, bool hide);

}  // namespace ck::cli
