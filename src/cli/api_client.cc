#include "cli/api_client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <nlohmann/json.hpp>

namespace ck::cli {

namespace {

constexpr const char* kApi = "/monitor/api/v1";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

struct Sink {
  CURL* handle = nullptr;
  ApiResponse* resp = nullptr;
  const std::function<bool(std::string_view)>* on_data = nullptr;
  bool stopped = false;    // on_data asked to end
  bool too_large = false;  // the collected answer passed kMaxAnswer
};

size_t write_cb(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  size_t len = size * n;
  long status = 0;
  curl_easy_getinfo(s->handle, CURLINFO_RESPONSE_CODE, &status);
  if (s->on_data != nullptr && status >= 200 && status < 300) {
    if (!(*s->on_data)(std::string_view(data, len))) {
      s->stopped = true;
      return 0;
    }
    return len;
  }
  if (s->resp->body.size() + len > kMaxAnswer) {
    s->too_large = true;
    return 0;
  }
  s->resp->body.append(data, len);
  return len;
}

size_t header_cb(char* data, size_t size, size_t n, void* user) {
  auto* resp = static_cast<ApiResponse*>(user);
  size_t len = size * n;
  std::string_view line(data, len);
  if (line.starts_with("HTTP/")) {
    resp->headers.clear();  // a new answer (after a 100 Continue)
    return len;
  }
  auto colon = line.find(':');
  if (colon != std::string_view::npos && resp->headers.size() < 200) {
    resp->headers.emplace_back(lower(std::string(line.substr(0, colon))),
                               trim(line.substr(colon + 1)));
  }
  return len;
}

std::string hint_for(CURLcode rc, const Endpoint& e) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
      return "is the server running, and is the URL right?";
    case CURLE_PEER_FAILED_VERIFICATION:
#if LIBCURL_VERSION_NUM < 0x073e00
    case CURLE_SSL_CACERT:
#endif
      return e.cacert.empty() ? "the server's certificate is not trusted: pass the CA that signed "
                                "it with --cacert FILE "
                                "(or CK_CACERT)"
                              : fmt::format(
                                    "the server's certificate is not signed by {} or does not name "
                                    "this host: check "
                                    "--cacert and the URL's host",
                                    e.cacert);
    case CURLE_SSL_CACERT_BADFILE:
      return fmt::format("the CA bundle {} cannot be read: check the --cacert (or CK_CACERT) path",
                         e.cacert);
    case CURLE_OPERATION_TIMEDOUT:
      return "the server did not answer in time: try again, or check the server's load";
    case CURLE_SSL_CONNECT_ERROR:
      return "the TLS handshake failed: is it an https server (or an http one, if the URL says "
             "https)?";
    default:
      return "check the URL and the network";
  }
}

}  // namespace

std::string ApiResponse::header(std::string_view name) const {
  std::string want = lower(std::string(name));
  for (const auto& [k, v] : headers) {
    if (k == want) return v;
  }
  return "";
}

ApiClient::ApiClient(Endpoint e) : endpoint_(std::move(e)) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  handle_ = curl_easy_init();
}

ApiClient::~ApiClient() {
  if (handle_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(handle_));
}

Result<ApiResponse> ApiClient::call(const ApiRequest& r) { return perform(r, nullptr); }

Result<ApiResponse> ApiClient::stream(const ApiRequest& r,
                                      const std::function<bool(std::string_view)>& on_data) {
  return perform(r, &on_data);
}

Result<ApiResponse> ApiClient::perform(const ApiRequest& r,
                                       const std::function<bool(std::string_view)>* on_data) {
  auto* h = static_cast<CURL*>(handle_);
  if (h == nullptr) return fail(Errc::internal, "libcurl could not be initialised");
  curl_easy_reset(h);  // keeps the connection cache
  std::string url = endpoint_.url + kApi + r.path;
  curl_slist* hdrs = nullptr;
  if (r.bearer && !endpoint_.token.empty()) {
    hdrs = curl_slist_append(hdrs, ("Authorization: Bearer " + endpoint_.token).c_str());
  }
  for (const auto& [k, v] : r.headers) hdrs = curl_slist_append(hdrs, (k + ": " + v).c_str());
  hdrs = curl_slist_append(hdrs, "Accept: application/json");
  hdrs = curl_slist_append(hdrs, "Expect:");
  if (r.json_body) hdrs = curl_slist_append(hdrs, ("Content-Type: " + r.content_type).c_str());
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "cloudyknight-cli");
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r.timeout_ms);
  if (r.timeout_ms == 0) {
    // A followed stream may be quiet for long: keep the connection alive instead of a deadline.
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  }
  if (!endpoint_.cacert.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, endpoint_.cacert.c_str());
  static const std::string kNoBody;
  const std::string& body = r.json_body ? *r.json_body : kNoBody;  // alive until perform ends
  if (r.method == "GET") {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    // Never a null pointer: curl would then read the body from stdin.
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.empty() ? "" : body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r.method.c_str());
  }
  if (r.on_upload) {
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, +[](void* fn, curl_off_t, curl_off_t, curl_off_t total, curl_off_t now) {
      (*static_cast<const std::function<void(std::uint64_t, std::uint64_t)>*>(fn))(
          static_cast<std::uint64_t>(now), static_cast<std::uint64_t>(total));
      return 0;
    });
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, const_cast<void*>(static_cast<const void*>(&r.on_upload)));
  }
  ApiResponse resp;
  Sink sink{h, &resp, on_data};
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &resp);
  CURLcode rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
  curl_slist_free_all(hdrs);
  if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && sink.stopped)) return resp;
  if (sink.too_large) {
    return fail(Errc::too_large,
                fmt::format("{} {}: the answer is over {} MiB, more than the CLI takes", r.method,
                            url, kMaxAnswer >> 20));
  }
  std::string detail = errbuf[0] != 0 ? std::string(errbuf) : curl_easy_strerror(rc);
  Errc code = rc == CURLE_OPERATION_TIMEDOUT ? Errc::timeout : Errc::unavailable;
  if (resp.status != 0 && on_data != nullptr) {
    return fail(code, fmt::format("the connection to {} ended: {} (the server may have restarted)",
                                  endpoint_.url, detail));
  }
  return fail(code, fmt::format("{} {}: {}: {}", r.method, url, detail, hint_for(rc, endpoint_)));
}

std::string describe_failure(const ApiResponse& r) {
  auto doc = nlohmann::json::parse(r.body, nullptr, false);
  if (doc.is_object() && doc.contains("error") && doc["error"].is_object()) {
    const auto& e = doc["error"];
    std::string message =
        e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
    std::string code =
        e.contains("code") && e["code"].is_string() ? e["code"].get<std::string>() : "error";
    if (message.empty()) message = "the server refused the request";
    return fmt::format("{} ({}, HTTP {})", message, code, r.status);
  }
  std::string excerpt = r.body.substr(0, 200);
  for (char& c : excerpt) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  excerpt = trim(excerpt);
  if (excerpt.empty()) excerpt = "the server answered without an error message";
  return fmt::format("{} (HTTP {})", excerpt, r.status);
}

int exit_code_for(long status) {
  if (status == 404) return 3;
  if (status == 401 || status == 403) return 4;
  return 1;
}

std::string url_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

}  // namespace ck::cli
