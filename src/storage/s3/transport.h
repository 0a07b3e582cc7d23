#pragma once
// The S3 client's transport (client.cc, transfer.cc): one signed request over a pooled curl
// handle, retried by the client's policy, and the error message every failure carries.
// Internal to the client; not part of its interface.

#include <curl/curl.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "storage/s3/client.h"

namespace ck::s3 {

/// The most an answer kept in memory may hold, unless the request says otherwise: a page of
/// 1,000 keys of up to 1 KiB, written as XML, is a few MiB. A larger one is refused rather
/// than held (a broken or hostile endpoint).
constexpr std::size_t kMaxAnswer = 32u << 20;

struct Request {
  Request(std::string m, std::string b, std::string k = "")
      : method(std::move(m)), bucket(std::move(b)), key(std::move(k)) {}
  std::string method;
  std::string bucket;  // empty never happens in this client
  std::string key;     // empty: the bucket itself
  std::string op;      // for messages when the method does not say it: "UploadPart 3"
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;
  /// >= 0: a 2xx answer's body is written to this fd from offset 0 as it arrives (the file is
  /// truncated before every attempt) instead of into Response::body; the body of any other
  /// answer (an error document) still goes to Response::body.
  int sink_fd = -1;
  /// The answer may be HTTP 200 with an <Error> document (CompleteMultipartUpload): such an
  /// answer is a failure, retried like a 5xx when its code is InternalError or SlowDown.
  bool error_in_200 = false;
  /// The most a body kept in memory (Response::body) may hold; 0: no limit (an object the
  /// caller asked for, which it sizes itself).
  std::size_t max_body = kMaxAnswer;
};

struct Response {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::uint64_t sink_bytes = 0;  // body bytes written to Request::sink_fd
  int sink_errno = 0;            // set when writing to Request::sink_fd failed
  bool too_large = false;        // the body went over Request::max_body

  /// An error document: any non-2xx answer, or a 200 with <Error> where the request allows it.
  bool failed(const Request& r) const {
    return status / 100 != 2 || (r.error_in_200 && body.find("<Error>") != std::string::npos);
  }

  std::string header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) {
        return v;
      }
    }
    return {};
  }
};

/// What "S3 GET s3://b/k (op)" names in a message.
std::string where(const Request& r);
std::string errno_text(int e);
std::string md5_raw(std::string_view data);
std::string base64(std::string_view raw);
/// Last-Modified -> ms since the epoch; 0 if absent or unparsable.
std::int64_t http_date_ms(const std::string& s);

struct Client::Impl {
  ClientOptions opts;
  std::string scheme;     // "http" or "https"
  std::string host;       // "127.0.0.1:4568"
  std::string base_path;  // endpoint path prefix without trailing '/', usually empty
  std::mutex mu;
  std::vector<CURL*> pool;
  std::string config_error;

  explicit Impl(ClientOptions o);
  ~Impl();

  /// Sends with retries. Returns the final response (any status) or a transport error.
  Result<Response> send(const Request& r);
  /// The error of a non-2xx answer (or a 200 with <Error>): status, S3 Code and Message, what
  /// was asked, and a hint.
  Error to_error(const Request& r, const Response& resp) const;
  /// to_error() for page `page` (from 0) of a paged listing: a failed page fails the listing.
  Error page_error(const Request& r, const Response& resp, int page) const;

 private:
  CURL* acquire();
  void release(CURL* h);
  /// One attempt. Returns the curl code; fills `resp`.
  CURLcode attempt(const Request& r, const std::string& payload_sha, Response& resp);
};

}  // namespace ck::s3
