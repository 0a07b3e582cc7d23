#include "storage/s3/transport.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <random>
#include <system_error>
#include <thread>

#include "http/url.h"
#include "storage/s3/answers.h"
#include "storage/s3/sigv4.h"

namespace ck::s3 {

using xml::text;

namespace {

std::string lower(std::string s) {
  for (char& c : s) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

/// Where one attempt's response body goes: Response::body, or Request::sink_fd for a 2xx.
struct BodySink {
  CURL* handle = nullptr;
  Response* resp = nullptr;
  int fd = -1;
  std::size_t max = 0;  // Request::max_body, for a body kept in memory
  enum { kUndecided, kFile, kMemory } state = kUndecided;
};

// An error document is small; a misbehaving server's is not kept whole.
constexpr std::size_t kMaxErrorBody = 64 * 1024;

size_t write_cb(char* ptr, size_t size, size_t nmemb, void* user) {
  auto* s = static_cast<BodySink*>(user);
  const std::size_t n = size * nmemb;
  if (s->fd < 0) {
    if (s->max != 0 && s->resp->body.size() + n > s->max) {
      s->resp->too_large = true;
      return 0;  // curl stops with CURLE_WRITE_ERROR
    }
    s->resp->body.append(ptr, n);
    return n;
  }
  if (s->state == BodySink::kUndecided) {
    long code = 0;  // the status line has been parsed before the first body byte arrives
    curl_easy_getinfo(s->handle, CURLINFO_RESPONSE_CODE, &code);
    s->state = code / 100 == 2 ? BodySink::kFile : BodySink::kMemory;
  }
  if (s->state == BodySink::kMemory) {
    if (s->resp->body.size() < kMaxErrorBody) {
      s->resp->body.append(ptr, std::min(n, kMaxErrorBody - s->resp->body.size()));
    }
    return n;
  }
  std::size_t done = 0;
  while (done < n) {
    ssize_t w =
        ::pwrite(s->fd, ptr + done, n - done, static_cast<off_t>(s->resp->sink_bytes + done));
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      s->resp->sink_errno = errno;
      return 0;  // curl stops with CURLE_WRITE_ERROR
    }
    done += static_cast<std::size_t>(w);
  }
  s->resp->sink_bytes += n;
  return n;
}

size_t header_cb(char* ptr, size_t size, size_t nmemb, void* user) {
  auto* r = static_cast<Response*>(user);
  std::string_view line(ptr, size * nmemb);
  if (line.substr(0, 5) == "HTTP/") {
    r->headers.clear();  // a new response (after 100 Continue or a redirect)
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    r->headers.emplace_back(lower(std::string(line.substr(0, colon))),
                            trim(line.substr(colon + 1)));
  }
  return size * nmemb;
}

bool retryable_curl(CURLcode c) {
  switch (c) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_BAD_FUNCTION_ARGUMENT:
      return false;
    default:
      return true;
  }
}

}  // namespace

std::string errno_text(int e) { return std::generic_category().message(e); }

std::string where(const Request& r) {
  std::string w = r.key.empty() ? "bucket '" + r.bucket + "'" : "s3://" + r.bucket + "/" + r.key;
  if (!r.op.empty()) {
    w += " (" + r.op + ")";
  }
  return w;
}

std::int64_t http_date_ms(const std::string& s) {
  return static_cast<std::int64_t>(http::parse_http_date(s).value_or(0)) * 1000;
}

std::string md5_raw(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, EVP_md5(), nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string base64(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()),
                          static_cast<int>(raw.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

Client::Impl::Impl(ClientOptions o) : opts(std::move(o)) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::string ep = opts.endpoint;
  if (ep.empty()) {
    ep = "https://s3." + opts.region + ".amazonaws.com";
  }
  auto sep = ep.find("://");
  if (sep == std::string::npos) {
    config_error =
        "the S3 endpoint '" + ep + "' has no scheme: write it as http://host:port or https://host";
    return;
  }
  scheme = lower(ep.substr(0, sep));
  if (scheme != "http" && scheme != "https") {
    config_error = "the S3 endpoint '" + ep + "' must start with http:// or https://";
    return;
  }
  std::string rest = ep.substr(sep + 3);
  auto slash = rest.find('/');
  host = rest.substr(0, slash);
  if (slash != std::string::npos) {
    base_path = rest.substr(slash);
    while (!base_path.empty() && base_path.back() == '/') {
      base_path.pop_back();
    }
  }
  if (host.empty()) {
    config_error = "the S3 endpoint '" + ep + "' has no host";
  }
}

Client::Impl::~Impl() {
  for (CURL* h : pool) {
    curl_easy_cleanup(h);
  }
}

CURL* Client::Impl::acquire() {
  {
    std::lock_guard lock(mu);
    if (!pool.empty()) {
      CURL* h = pool.back();
      pool.pop_back();
      curl_easy_reset(h);  // keeps the connection cache
      return h;
    }
  }
  return curl_easy_init();
}

void Client::Impl::release(CURL* h) {
  std::lock_guard lock(mu);
  if (pool.size() < 256) {
    pool.push_back(h);
  } else {
    curl_easy_cleanup(h);
  }
}

CURLcode Client::Impl::attempt(const Request& r, const std::string& payload_sha, Response& resp) {
  SignInput in;
  in.method = r.method;
  if (opts.path_style) {
    in.host = host;
    in.path = base_path + "/" + r.bucket + (r.key.empty() ? "" : "/" + r.key);
  } else {
    in.host = r.bucket + "." + host;
    in.path = base_path + "/" + r.key;
  }
  in.query = r.query;
  in.headers = r.headers;
  in.payload_sha256 = payload_sha;
  in.region = opts.region;
  in.amz_date = amz_date_now();
  Signed s = sign(in, opts.credentials);
  std::string url = scheme + "://" + in.host + s.encoded_target;

  if (r.sink_fd >= 0 && ::ftruncate(r.sink_fd, 0) != 0) {  // a retry starts from byte 0
    resp.sink_errno = errno;
    return CURLE_WRITE_ERROR;
  }
  CURL* h = acquire();
  if (h == nullptr) {
    return CURLE_FAILED_INIT;
  }
  curl_slist* hdrs = nullptr;
  bool has_content_type = false;
  for (const auto& [n, v] : s.headers) {
    if (lower(n) == "content-type") {
      has_content_type = true;
    }
    hdrs = curl_slist_append(hdrs, (n + ": " + v).c_str());
  }
  hdrs = curl_slist_append(hdrs, "Expect:");
  if (!has_content_type) {
    hdrs = curl_slist_append(hdrs, "Content-Type:");
  }
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(opts.timeout.count()));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min<long long>(opts.timeout.count(), 10000)));
  if (!opts.ca_bundle.empty()) {
    curl_easy_setopt(h, CURLOPT_CAINFO, opts.ca_bundle.c_str());
  }
  if (r.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (r.method == "GET") {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    // Never a null pointer: curl would then read the body from a read callback (stdin).
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, r.body.empty() ? "" : r.body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r.method.c_str());
  }
  BodySink sink;
  sink.handle = h;
  sink.resp = &resp;
  sink.fd = r.sink_fd;
  sink.max = r.max_body;
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &resp);
  CURLcode rc = curl_easy_perform(h);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
  }
  curl_slist_free_all(hdrs);
  release(h);
  return rc;
}

Result<Response> Client::Impl::send(const Request& r) {
  if (!config_error.empty()) {
    return fail(Errc::invalid_argument, config_error);
  }
  std::string payload_sha = sha256_hex(r.body);
  thread_local std::mt19937 rng{std::random_device{}()};
  for (int attempt_no = 0;; ++attempt_no) {
    Response resp;
    CURLcode rc = attempt(r, payload_sha, resp);
    bool last = attempt_no >= opts.max_retries;
    if (rc != CURLE_OK && resp.sink_errno != 0) {  // the local disk, not the network
      return fail(Errc::io, "S3 " + r.method + " " + where(r) +
                                ": writing the received body to the local file failed: " +
                                errno_text(resp.sink_errno));
    }
    if (rc != CURLE_OK && resp.too_large) {  // the same answer again would not help
      return fail(Errc::unavailable,
                  fmt::format("S3 {} {} on {}://{}: the answer is larger than {} MiB, more than "
                              "any S3 answer to this request holds (is the endpoint S3?)",
                              r.method, where(r), scheme, host, r.max_body >> 20));
    }
    if (rc != CURLE_OK) {
      if (!retryable_curl(rc) || last) {
        std::string msg = "S3 " + r.method + " " + where(r) + " on " + scheme + "://" + host +
                          " failed" +
                          (attempt_no > 0 ? " after " + std::to_string(attempt_no + 1) + " attempts"
                                          : std::string()) +
                          ": " + curl_easy_strerror(rc);
        if (rc == CURLE_OPERATION_TIMEDOUT) {
          return fail(Errc::timeout, msg + " (raise the S3 timeout or check the network)");
        }
        if (!retryable_curl(rc)) {
          return fail(Errc::invalid_argument, msg + " (check the S3 endpoint and CA bundle)");
        }
        return fail(Errc::unavailable, msg + " (check that the S3 endpoint is reachable)");
      }
    } else {
      // Only an error document is searched for a code, since an object's own bytes may hold
      // the text <Code>SlowDown</Code>. A 501 (Not Implemented) is not retried: it never
      // goes away by itself.
      std::string code = resp.failed(r) ? text(resp.body, "Code").value_or("") : "";
      bool slow_down = resp.status == 503 || resp.status == 429 || code == "SlowDown";
      bool retry = (resp.status >= 500 && resp.status != 501) || slow_down ||
                   (resp.status / 100 == 2 && code == "InternalError");
      if (!retry || last) {
        return resp;
      }
    }
    long base = 100L << std::min(attempt_no, 6);
    std::uniform_int_distribution<long> jitter(0, base / 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(base + jitter(rng)));
  }
}

Error Client::Impl::to_error(const Request& r, const Response& resp) const {
  std::string code = text(resp.body, "Code").value_or("");
  std::string message = text(resp.body, "Message").value_or("");
  std::string msg =
      "S3 " + r.method + " " + where(r) + " failed: HTTP " + std::to_string(resp.status);
  if (!code.empty()) {
    msg += " " + code;
  }
  if (!message.empty()) {
    msg += ": " + message;
  }
  Errc ec = Errc::invalid_argument;
  std::string hint;
  if (resp.status == 404) {
    ec = Errc::not_found;
    if (code == "NoSuchBucket" || (code.empty() && r.key.empty())) {
      hint = "create the bucket '" + r.bucket + "' or fix the bucket name";
    } else if (code == "NoSuchUpload") {
      hint = "the multipart upload does not exist (it was completed or aborted)";
    } else if (code == "NoSuchKey" || code.empty()) {
      hint = "the object does not exist";
    }
  } else if (resp.status == 403) {
    ec = Errc::forbidden;
    if (code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" || code == "ExpiredToken" ||
        code == "InvalidToken") {
      hint = "check the credentials (access key, secret key, session token) and the region";
    } else if (code == "RequestTimeTooSkewed") {
      hint = "fix this machine's clock";
    } else {
      hint = "check the credentials and the bucket policy";
    }
  } else if (resp.status == 501 || code == "NotImplemented") {
    hint = "this S3 endpoint does not implement the operation";
  } else if (resp.status >= 500 || resp.status == 429 || code == "InternalError" ||
             code == "SlowDown") {  // the last two: a 200 with <Error> (error_in_200)
    ec = Errc::unavailable;
    hint = "S3 is unavailable; retried " + std::to_string(opts.max_retries) +
           " times, try again later";
  } else if (resp.status == 408) {
    ec = Errc::timeout;
    hint = "the request timed out; try again";
  } else if (code == "AuthorizationHeaderMalformed" || code == "PermanentRedirect") {
    hint = "check the region and the endpoint";
  } else if (code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists") {
    ec = Errc::already_exists;
  }
  if (!hint.empty()) {
    msg += " (" + hint + ")";
  }
  return make_error(ec, std::move(msg));
}

Error Client::Impl::page_error(const Request& r, const Response& resp, int page) const {
  Error e = to_error(r, resp);
  e.message += " (listing page " + std::to_string(page + 1) + ")";
  return e;
}

}  // namespace ck::s3
