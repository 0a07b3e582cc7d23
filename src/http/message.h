#pragma once
// Plain request/response values for handlers that do not need Beast (the control-plane API).
// The gateway converts to and from Beast messages at its edge.

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ck::http {

class ResponseStream;  // stream.h

struct Request {
  std::string method;  // "GET"
  std::string target;  // "/monitor/api/v1/workspaces?limit=10"
  std::string path;    // "/monitor/api/v1/workspaces" (not decoded)
  std::string query;   // "limit=10"
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string client_ip;
  /// Came over TLS (the gateway's listener speaks TLS): the session cookie is then the
  /// __Host- one (auth::session_cookie_name).
  bool tls = false;

  /// The first header with this name (case-insensitive), or "".
  std::string header(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  /// Set for an answer that comes later (stream.h): status, content type, headers and body
  /// above are then ignored.
  std::shared_ptr<ResponseStream> stream;
};

}  // namespace ck::http
