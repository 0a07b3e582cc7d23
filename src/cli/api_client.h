#pragma once
// A small blocking HTTP client for the control-plane API (`/monitor/api/v1`), over libcurl as
// the S3 client uses it (TLS through libcurl, --cacert as CURLOPT_CAINFO). One request at a
// time, on the CLI's main thread. Answers of any status come back as ApiResponse; only
// transport failures (no connection, TLS, timeout) are errors.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"

namespace ck::cli {

/// Where and as whom the CLI talks to a control plane.
struct Endpoint {
  std::string url;     // base URL without /monitor, e.g. https://ck.example.com
  std::string token;   // bearer token; "" sends none
  std::string cacert;  // CA bundle file; "" = the system's
};

struct ApiResponse {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased

  std::string header(std::string_view name) const;
  bool ok() const { return status >= 200 && status < 300; }
};

struct ApiRequest {
  using Headers = std::vector<std::pair<std::string, std::string>>;
  ApiRequest() = default;
  ApiRequest(std::string m, std::string p, std::optional<std::string> body = std::nullopt,
             Headers h = {}, bool with_bearer = true)
      : method(std::move(m)),
        path(std::move(p)),
        json_body(std::move(body)),
        headers(std::move(h)),
        bearer(with_bearer) {}

  std::string method = "GET";
  std::string path;  // under /monitor/api/v1, e.g. "/workspaces?limit=100"
  std::optional<std::string> json_body;  // the body, of content_type
  std::string content_type = "application/json";
  Headers headers;
  bool bearer = true;       // send the endpoint's token
  long timeout_ms = 60000;  // 0: none (streams followed until the user stops them)
  /// Told (bytes sent, bytes to send) now and then while the body goes out.
  std::function<void(std::uint64_t sent, std::uint64_t total)> on_upload;
};

/// Answers larger than this are cut with an error (the API's largest answers are a few MiB).
constexpr std::size_t kMaxAnswer = 32u << 20;

class ApiClient {
 public:
  explicit ApiClient(Endpoint e);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  const Endpoint& endpoint() const { return endpoint_; }

  Result<ApiResponse> call(const ApiRequest& r);
  /// Like call(), but a 2xx answer's body goes to `on_data` as it arrives (the response's body
  /// stays empty); `on_data` returning false ends the transfer. Other answers are collected.
  Result<ApiResponse> stream(const ApiRequest& r,
                             const std::function<bool(std::string_view)>& on_data);

 private:
  Result<ApiResponse> perform(const ApiRequest& r,
                              const std::function<bool(std::string_view)>* on_data);

  Endpoint endpoint_;
  void* handle_ = nullptr;  // CURL*
};

/// A non-2xx answer as the one line the CLI prints: "<message> (<code>, HTTP <status>)", from the
/// API's {"error": {"code", "message"}} body, or the status line and the body's start otherwise.
std::string describe_failure(const ApiResponse& r);
/// The exit code for a non-2xx answer: 3 not found (404), 4 not allowed (401, 403), else 1.
int exit_code_for(long status);

/// Percent-encodes a path segment or query value.
std::string url_encode(std::string_view s);

}  // namespace ck::cli
