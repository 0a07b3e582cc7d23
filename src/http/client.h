#pragma once
// An HTTP/1.1 client over a unix socket, for the Docker Engine API (and any local daemon that
// speaks HTTP on a socket). One connection per exchange: connecting to a unix socket costs a
// few microseconds, and the engine hijacks or streams on many endpoints anyway.
// Beast stays inside client.cc.

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/units.h"
#include "http/asio.h"

namespace ck {

struct HttpClientRequest {
  std::string method = "GET";
  std::string target;  // origin-form: "/v1.41/containers/json?all=1"
  std::string body;    // sent unless body_file is set
  std::filesystem::path body_file;  // streamed from disk (tar archives of any size)
  std::string content_type;         // default: application/json when there is a body
  Duration timeout = std::chrono::seconds(30);  // whole exchange; zero: none (follow streams)
};

struct HttpClientResponse {
  int status = 0;
  std::string content_type;
  std::string body;  // for stream(): only collected when status >= 400
};

/// Receives body bytes as they arrive; return false to stop reading (the connection closes).
using BodySink = std::function<bool(std::string_view chunk)>;

class UnixHttpClient {
 public:
  explicit UnixHttpClient(std::string socket_path) : path_(std::move(socket_path)) {}
  const std::string& socket_path() const { return path_; }

  /// Sends one request and reads the whole response.
  net::awaitable<Result<HttpClientResponse>> request(HttpClientRequest req) const;

  /// Sends one request and hands the body to `sink` chunk by chunk (logs with follow, events,
  /// build output). A response with status >= 400 is collected into `body` instead.
  net::awaitable<Result<HttpClientResponse>> stream(HttpClientRequest req, BodySink sink) const;

 private:
  std::string path_;
};

}  // namespace ck
