#pragma once
// The API's answers, shared by its handler files: JSON bodies (marked no-store; ControlApi::handle
// turns public GET answers into no-cache + ETag) and empty 204s.

#include <nlohmann/json.hpp>

#include "http/message.h"

namespace ck::api {

http::Response json_response(int status, const nlohmann::json& body);
http::Response no_content();
/// 405 with Allow: `allow`, as an invalid_argument error body.
http::Response method_not_allowed(const http::Request& req, const char* allow);

}  // namespace ck::api
