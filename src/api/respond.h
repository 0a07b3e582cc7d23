#pragma once
// The API's answers, shared by its handler files: JSON bodies (marked no-store; ControlApi::handle
// turns public GET answers into no-cache + ETag) and empty 204s; and the checks of a JSON body.

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "http/message.h"

namespace ck::api {

http::Response json_response(int status, const nlohmann::json& body);
http::Response no_content();
/// 405 with Allow: `allow`, as an invalid_argument error body.
http::Response method_not_allowed(const http::Request& req, const char* allow);

/// The JSON object a request body must be, or invalid_argument. `empty_ok`: an empty body is {}.
Result<nlohmann::json> body_object(const http::Request& req, bool empty_ok = false);
/// A required string member (absent or another type: invalid_argument).
Result<std::string> string_member(const nlohmann::json& doc, const char* key);
/// An optional string member: "" when absent or null, invalid_argument for another type.
Result<std::string> optional_string_member(const nlohmann::json& doc, const char* key);

}  // namespace ck::api
