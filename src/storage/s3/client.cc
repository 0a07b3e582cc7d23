#include "storage/s3/client.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <functional>
#include <mutex>
#include <new>
#include <random>
#include <system_error>
#include <thread>
#include <utility>

#include "core/unique_fd.h"

namespace ck::s3 {

// ---------------------------------------------------------------------------------------------
// XML: the few fixed shapes S3 answers with (ListBucketResult, Error, DeleteResult,
// InitiateMultipartUploadResult, CompleteMultipartUploadResult, ListMultipartUploadsResult).

namespace xml {

namespace {
void append_utf8(std::string& out, unsigned long cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}
}  // namespace

std::string decode_entities(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    std::size_t semi = s.find(';', i + 1);
    if (semi == std::string_view::npos || semi - i > 12) {
      out += s[i];
      continue;
    }
    std::string_view ent = s.substr(i + 1, semi - i - 1);
    bool ok = true;
    if (ent == "amp") {
      out += '&';
    } else if (ent == "lt") {
      out += '<';
    } else if (ent == "gt") {
      out += '>';
    } else if (ent == "quot") {
      out += '"';
    } else if (ent == "apos") {
      out += '\'';
    } else if (ent.size() >= 2 && ent[0] == '#') {
      bool hex = ent[1] == 'x' || ent[1] == 'X';
      std::string_view digits = ent.substr(hex ? 2 : 1);
      unsigned long cp = 0;
      if (digits.empty()) {
        ok = false;
      }
      for (char c : digits) {
        int d;
        if (c >= '0' && c <= '9') {
          d = c - '0';
        } else if (hex && c >= 'a' && c <= 'f') {
          d = c - 'a' + 10;
        } else if (hex && c >= 'A' && c <= 'F') {
          d = c - 'A' + 10;
        } else {
          ok = false;
          break;
        }
        cp = cp * (hex ? 16 : 10) + static_cast<unsigned long>(d);
        if (cp > 0x10FFFF) {
          ok = false;
          break;
        }
      }
      if (ok) {
        append_utf8(out, cp);
      }
    } else {
      ok = false;
    }
    if (ok) {
      i = semi;
    } else {
      out += '&';
    }
  }
  return out;
}

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '\r':
        out += "&#13;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace xml

namespace {

/// The raw inner text of every <tag>...</tag> (or empty for <tag/>) directly in `s`, in order.
/// Elements of the same name nested inside each other do not occur in these shapes.
std::vector<std::string_view> elements(std::string_view s, std::string_view tag) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (true) {
    std::size_t open = s.find('<', pos);
    if (open == std::string_view::npos) {
      break;
    }
    if (s.compare(open + 1, tag.size(), tag) != 0) {
      pos = open + 1;
      continue;
    }
    std::size_t after = open + 1 + tag.size();
    if (after >= s.size()) {
      break;
    }
    char c = s[after];
    if (c != '>' && c != '/' && c != ' ' && c != '\t' && c != '\r' && c != '\n') {
      pos = open + 1;  // a longer name such as <KeyCount> when looking for <Key>
      continue;
    }
    std::size_t gt = s.find('>', after);
    if (gt == std::string_view::npos) {
      break;
    }
    if (s[gt - 1] == '/') {
      out.emplace_back();
      pos = gt + 1;
      continue;
    }
    std::string close = "</" + std::string(tag) + ">";
    std::size_t end = s.find(close, gt + 1);
    if (end == std::string_view::npos) {
      break;
    }
    out.push_back(s.substr(gt + 1, end - gt - 1));
    pos = end + close.size();
  }
  return out;
}

std::optional<std::string> text(std::string_view s, std::string_view tag) {
  auto e = elements(s, tag);
  if (e.empty()) {
    return std::nullopt;
  }
  return xml::decode_entities(e.front());
}

std::string strip_quotes(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
    return s.substr(1, s.size() - 2);
  }
  return s;
}

std::int64_t to_ms(std::tm tm, int millis) {
  return static_cast<std::int64_t>(timegm(&tm)) * 1000 + millis;
}

/// "2026-11-25T22:38:09.000Z" -> ms since the epoch; 0 if unparsable.
std::int64_t parse_iso8601(const std::string& s) {
  std::tm tm{};
  int ms = 0;
  int n = std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                      &tm.tm_hour, &tm.tm_min, &tm.tm_sec);
  if (n != 6) {
    return 0;
  }
  std::size_t dot = s.find('.');
  if (dot != std::string::npos) {
    int digits = 0;
    for (std::size_t i = dot + 1; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]));
         ++i) {
      if (digits < 3) {
        ms = ms * 10 + (s[i] - '0');
        ++digits;
      }
    }
    while (digits++ < 3) {
      ms *= 10;
    }
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return to_ms(tm, ms);
}

/// "Wed, 25 Nov 2026 22:38:09 GMT" -> ms since the epoch; 0 if unparsable.
std::int64_t parse_http_date(const std::string& s) {
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  char mon[4] = {};
  int n = std::sscanf(s.c_str(), "%*3s, %d %3s %d %d:%d:%d", &tm.tm_mday, mon, &tm.tm_year,
                      &tm.tm_hour, &tm.tm_min, &tm.tm_sec);
  if (n != 6) {
    return 0;
  }
  tm.tm_mon = -1;
  for (int i = 0; i < 12; ++i) {
    if (std::strcmp(mon, kMonths[i]) == 0) {
      tm.tm_mon = i;
    }
  }
  if (tm.tm_mon < 0) {
    return 0;
  }
  tm.tm_year -= 1900;
  return to_ms(tm, 0);
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
};

struct Response {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::uint64_t sink_bytes = 0;  // body bytes written to Request::sink_fd
  int sink_errno = 0;            // set when writing to Request::sink_fd failed

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

/// Where one attempt's response body goes: Response::body, or Request::sink_fd for a 2xx.
struct BodySink {
  CURL* handle = nullptr;
  Response* resp = nullptr;
  int fd = -1;
  enum { kUndecided, kFile, kMemory } state = kUndecided;
};

// An error document is small; a misbehaving server's is not kept whole.
constexpr std::size_t kMaxErrorBody = 64 * 1024;

size_t write_cb(char* ptr, size_t size, size_t nmemb, void* user) {
  auto* s = static_cast<BodySink*>(user);
  const std::size_t n = size * nmemb;
  if (s->fd < 0) {
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

std::string errno_text(int e) { return std::generic_category().message(e); }

constexpr int kEarlyEof = -1;

/// Reads exactly `len` bytes at `offset`. Returns 0, kEarlyEof when the file ends first, or
/// the errno of a failed read.
int pread_all(int fd, char* buf, std::size_t len, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno;
    }
    if (n == 0) {
      return kEarlyEof;
    }
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

std::string where(const Request& r) {
  std::string w = r.key.empty() ? "bucket '" + r.bucket + "'" : "s3://" + r.bucket + "/" + r.key;
  if (!r.op.empty()) {
    w += " (" + r.op + ")";
  }
  return w;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Client::Impl {
  ClientOptions opts;
  std::string scheme;     // "http" or "https"
  std::string host;       // "127.0.0.1:4568"
  std::string base_path;  // endpoint path prefix without trailing '/', usually empty
  std::mutex mu;
  std::vector<CURL*> pool;
  std::string config_error;

  explicit Impl(ClientOptions o) : opts(std::move(o)) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    std::string ep = opts.endpoint;
    if (ep.empty()) {
      ep = "https://s3." + opts.region + ".amazonaws.com";
    }
    auto sep = ep.find("://");
    if (sep == std::string::npos) {
      config_error = "the S3 endpoint '" + ep +
                     "' has no scheme: write it as http://host:port or https://host";
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

  ~Impl() {
    for (CURL* h : pool) {
      curl_easy_cleanup(h);
    }
  }

  CURL* acquire() {
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

  void release(CURL* h) {
    std::lock_guard lock(mu);
    if (pool.size() < 256) {
      pool.push_back(h);
    } else {
      curl_easy_cleanup(h);
    }
  }

  /// One attempt. Returns the curl code; fills `resp`.
  CURLcode attempt(const Request& r, const std::string& payload_sha, Response& resp) {
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

  /// Sends with retries. Returns the final response (any status) or a transport error.
  Result<Response> send(const Request& r) {
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
      if (rc != CURLE_OK) {
        if (!retryable_curl(rc) || last) {
          std::string msg =
              "S3 " + r.method + " " + where(r) + " on " + scheme + "://" + host + " failed" +
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
        // Only an error document is searched for a code: an object's own bytes may contain
        // "<Code>SlowDown</Code>". 501 Not Implemented never goes away by itself.
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

  /// Pages through ListObjectsV2 (continuation-token) and hands each page's body to `page`;
  /// a failed page fails the whole listing.
  Result<void> list_v2(const std::string& bucket, const std::string& prefix,
                       const std::string& delimiter,
                       const std::function<void(std::string_view)>& page_fn) {
    std::string token;
    for (int page = 0;; ++page) {
      Request r("GET", bucket);
      r.query.emplace_back("list-type", "2");
      if (!delimiter.empty()) {
        r.query.emplace_back("delimiter", delimiter);
      }
      if (!prefix.empty()) {
        r.query.emplace_back("prefix", prefix);
      }
      if (!token.empty()) {
        r.query.emplace_back("continuation-token", token);
      }
      BOOST_OUTCOME_TRY(resp, send(r));
      if (resp.status / 100 != 2) {
        Error e = to_error(r, resp);
        e.message += " (listing page " + std::to_string(page + 1) + ")";
        return outcome::failure(std::move(e));
      }
      if (resp.body.find("<ListBucketResult") == std::string::npos) {
        return fail(Errc::unavailable, "S3 ListObjectsV2 of bucket '" + bucket +
                                           "' returned no ListBucketResult (is the endpoint S3?)");
      }
      page_fn(resp.body);
      // IsTruncated and NextContinuationToken occur only at the top level (never in <Contents>).
      bool truncated = text(resp.body, "IsTruncated").value_or("false") == "true";
      if (!truncated) {
        return outcome::success();
      }
      std::string next = text(resp.body, "NextContinuationToken").value_or("");
      if (next.empty() || next == token) {
        return fail(Errc::unavailable, "S3 ListObjectsV2 of bucket '" + bucket +
                                           "' is truncated but has no new continuation token");
      }
      token = std::move(next);
    }
  }

  Error to_error(const Request& r, const Response& resp) const {
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
      if (code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" ||
          code == "ExpiredToken" || code == "InvalidToken") {
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
};

Client::Client(ClientOptions opts) : impl_(std::make_unique<Impl>(std::move(opts))) {}
Client::~Client() = default;

Result<void> Client::create_bucket(const std::string& bucket) {
  Request r("PUT", bucket);
  std::string body;
  if (impl_->opts.region != "us-east-1") {
    body =
        "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<LocationConstraint>" +
        xml::escape(impl_->opts.region) + "</LocationConstraint></CreateBucketConfiguration>";
    r.body = body;
  }
  BOOST_OUTCOME_TRY(resp, impl_->send(r));
  if (resp.status / 100 != 2) {
    return impl_->to_error(r, resp);
  }
  return outcome::success();
}

Result<std::string> Client::put_object(const std::string& bucket, const std::string& key,
                                       std::string_view body, const std::string& content_type) {
  if (key.empty()) {
    return fail(Errc::invalid_argument, "S3 put_object: the object key is empty");
  }
  Request r("PUT", bucket, key);
  r.headers.emplace_back("Content-MD5", base64(md5_raw(body)));
  if (!content_type.empty()) {
    r.headers.emplace_back("Content-Type", content_type);
  }
  r.body = body;
  BOOST_OUTCOME_TRY(resp, impl_->send(r));
  if (resp.status / 100 != 2) {
    return impl_->to_error(r, resp);
  }
  return strip_quotes(resp.header("etag"));
}

Result<std::string> Client::get_object(const std::string& bucket, const std::string& key) {
  if (key.empty()) {
    return fail(Errc::invalid_argument, "S3 get_object: the object key is empty");
  }
  Request r("GET", bucket, key);
  BOOST_OUTCOME_TRY(resp, impl_->send(r));
  if (resp.status / 100 != 2) {
    return impl_->to_error(r, resp);
  }
  return std::move(resp.body);
}

Result<std::string> Client::get_object_range(const std::string& bucket, const std::string& key,
                                             std::uint64_t offset, std::uint64_t length) {
  if (key.empty()) {
    return fail(Errc::invalid_argument, "S3 get_object_range: the object key is empty");
  }
  if (length == 0) return std::string();
  Request r("GET", bucket, key);
  r.headers.emplace_back("Range", fmt::format("bytes={}-{}", offset, offset + length - 1));
  BOOST_OUTCOME_TRY(resp, impl_->send(r));
  if (resp.status / 100 != 2) {
    return impl_->to_error(r, resp);
  }
  std::string body = std::move(resp.body);
  if (resp.status == 200) {  // Range ignored: the whole object
    if (body.size() < offset) body.clear();
    body = body.substr(std::min<std::uint64_t>(offset, body.size()), length);
  }
  if (body.size() != length) {
    return fail(Errc::invalid_argument,
                fmt::format("s3://{}/{} holds fewer bytes than asked for (bytes {}-{}, got {}): "
                            "the object is shorter than expected",
                            bucket, key, offset, offset + length - 1, body.size()));
  }
  return body;
}

Result<std::optional<ObjectInfo>> Client::head_object(const std::string& bucket,
                                                      const std::string& key) {
  if (key.empty()) {
    return fail(Errc::invalid_argument, "S3 head_object: the object key is empty");
  }
  Request r("HEAD", bucket, key);
  BOOST_OUTCOME_TRY(resp, impl_->send(r));
  if (resp.status == 404) {
    return std::optional<ObjectInfo>();
  }
  if (resp.status / 100 != 2) {
    return impl_->to_error(r, resp);
  }
  ObjectInfo info;
  info.key = key;
  info.size = std::strtoull(resp.header("content-length").c_str(), nullptr, 10);
  info.etag = strip_quotes(resp.header("etag"));
  info.mtime_ms = parse_http_date(resp.header("last-modified"));
  return std::optional<ObjectInfo>(std::move(info));
}

Result<void> Client::delete_object(const std::string& bucket, const std::string& key) {
  if (key.empty()) {
    return fail(Errc::invalid_argument, "S3 delete_object: the object key is empty");
  }
  Request r("DELETE", bucket, key);
  BOOST_OUTCOME_TRY(resp, impl_->send(r));
  if (resp.status / 100 != 2) {
    return impl_->to_error(r, resp);
  }
  return outcome::success();
}

Result<void> Client::delete_objects(const std::string& bucket,
                                    const std::vector<std::string>& keys) {
  constexpr std::size_t kBatch = 1000;
  for (std::size_t start = 0; start < keys.size(); start += kBatch) {
    std::size_t end = std::min(keys.size(), start + kBatch);
    std::string body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>true</Quiet>";
    for (std::size_t i = start; i < end; ++i) {
      body += "<Object><Key>" + xml::escape(keys[i]) + "</Key></Object>";
    }
    body += "</Delete>";
    Request r("POST", bucket);
    r.query.emplace_back("delete", "");
    r.headers.emplace_back("Content-MD5", base64(md5_raw(body)));
    r.headers.emplace_back("Content-Type", "application/xml");
    r.body = body;
    BOOST_OUTCOME_TRY(resp, impl_->send(r));
    if (resp.status / 100 != 2) {
      return impl_->to_error(r, resp);
    }
    auto errors = elements(resp.body, "Error");
    if (!errors.empty()) {
      std::string msg = "S3 DeleteObjects in bucket '" + bucket + "' failed for " +
                        std::to_string(errors.size()) + " of " + std::to_string(end - start) +
                        " keys";
      std::string_view first = errors.front();
      msg += ", first '" + text(first, "Key").value_or("") +
             "': " + text(first, "Code").value_or("") + " " + text(first, "Message").value_or("");
      bool denied = text(first, "Code").value_or("") == "AccessDenied";
      return fail(
          denied ? Errc::forbidden : Errc::unavailable,
          msg + (denied ? " (check the credentials and the bucket policy)" : " (try again)"));
    }
  }
  return outcome::success();
}

Result<Listing> Client::list(const std::string& bucket, const std::string& prefix,
                             const std::string& delimiter) {
  Listing out;
  auto page = [&out](std::string_view body) {
    for (std::string_view c : elements(body, "Contents")) {
      ObjectInfo info;
      info.key = text(c, "Key").value_or("");
      info.size = std::strtoull(text(c, "Size").value_or("0").c_str(), nullptr, 10);
      info.etag = strip_quotes(text(c, "ETag").value_or(""));
      info.mtime_ms = parse_iso8601(text(c, "LastModified").value_or(""));
      out.objects.push_back(std::move(info));
    }
    // <Prefix> also occurs at the top level (the request's prefix): read it only inside
    // <CommonPrefixes>.
    for (std::string_view cp : elements(body, "CommonPrefixes")) {
      if (auto p = text(cp, "Prefix"); p && !p->empty()) {
        out.prefixes.push_back(std::move(*p));
      }
    }
  };
  BOOST_OUTCOME_TRY(impl_->list_v2(bucket, prefix, delimiter, page));
  return out;
}

Result<std::vector<ObjectInfo>> Client::list_objects(const std::string& bucket,
                                                     const std::string& prefix) {
  BOOST_OUTCOME_TRY(listing, list(bucket, prefix, ""));
  return std::move(listing.objects);
}

Result<std::vector<std::string>> Client::list_common_prefixes(const std::string& bucket,
                                                              const std::string& prefix) {
  BOOST_OUTCOME_TRY(listing, list(bucket, prefix, "/"));
  return std::move(listing.prefixes);
}

// ---------------------------------------------------------------------------------------------
// Multipart upload

Result<std::string> Client::create_multipart_upload(const std::string& bucket,
                                                    const std::string& key,
                                                    const std::string& content_type) {
  if (key.empty()) {
    return fail(Errc::invalid_argument, "S3 create_multipart_upload: the object key is empty");
  }
  Request r("POST", bucket, key);
  r.query.emplace_back("uploads", "");
  r.op = "CreateMultipartUpload";
  if (!content_type.empty()) {
    r.headers.emplace_back("Content-Type", content_type);
  }
  BOOST_OUTCOME_TRY(resp, impl_->send(r));
  if (resp.status / 100 != 2) {
    return impl_->to_error(r, resp);
  }
  std::string id = text(resp.body, "UploadId").value_or("");
  if (id.empty()) {
    return fail(Errc::unavailable,
                "S3 POST " + where(r) + " returned no UploadId (is the endpoint S3?)");
  }
  return id;
}

Result<std::string> Client::upload_part(const std::string& bucket, const std::string& key,
                                        const std::string& upload_id, int part_number,
                                        std::string_view body) {
  if (key.empty() || upload_id.empty()) {
    return fail(Errc::invalid_argument, "S3 upload_part: the object key or upload id is empty");
  }
  if (part_number < 1 || part_number > 10000) {
    return fail(Errc::invalid_argument, "S3 upload_part: part number " +
                                            std::to_string(part_number) + " is not in 1..10000");
  }
  Request r("PUT", bucket, key);
  r.query.emplace_back("partNumber", std::to_string(part_number));
  r.query.emplace_back("uploadId", upload_id);
  r.op = "UploadPart " + std::to_string(part_number);
  r.headers.emplace_back("Content-MD5", base64(md5_raw(body)));
  r.body = body;
  BOOST_OUTCOME_TRY(resp, impl_->send(r));
  if (resp.status / 100 != 2) {
    return impl_->to_error(r, resp);
  }
  std::string etag = strip_quotes(resp.header("etag"));
  if (etag.empty()) {
    return fail(Errc::unavailable, "S3 PUT " + where(r) + " returned no ETag");
  }
  return etag;
}

Result<std::string> Client::complete_multipart_upload(const std::string& bucket,
                                                      const std::string& key,
                                                      const std::string& upload_id,
                                                      const std::vector<std::string>& part_etags) {
  if (key.empty() || upload_id.empty()) {
    return fail(Errc::invalid_argument,
                "S3 complete_multipart_upload: the object key or upload id is empty");
  }
  if (part_etags.empty()) {
    return fail(Errc::invalid_argument,
                "S3 complete_multipart_upload of s3://" + bucket + "/" + key + ": no parts");
  }
  std::string body = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
  for (std::size_t i = 0; i < part_etags.size(); ++i) {
    body += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>\"" +
            xml::escape(strip_quotes(part_etags[i])) + "\"</ETag></Part>";
  }
  body += "</CompleteMultipartUpload>";
  Request r("POST", bucket, key);
  r.query.emplace_back("uploadId", upload_id);
  r.op = "CompleteMultipartUpload";
  r.headers.emplace_back("Content-Type", "application/xml");
  r.body = body;
  r.error_in_200 = true;  // S3 answers 200 first, then may send <Error> while it assembles
  BOOST_OUTCOME_TRY(resp, impl_->send(r));
  if (resp.failed(r)) {
    return impl_->to_error(r, resp);
  }
  std::string etag = strip_quotes(text(resp.body, "ETag").value_or(""));
  if (etag.empty()) {
    return fail(Errc::unavailable,
                "S3 POST " + where(r) + " returned no ETag (is the endpoint S3?)");
  }
  return etag;
}

Result<void> Client::abort_multipart_upload(const std::string& bucket, const std::string& key,
                                            const std::string& upload_id) {
  if (key.empty() || upload_id.empty()) {
    return fail(Errc::invalid_argument,
                "S3 abort_multipart_upload: the object key or upload id is empty");
  }
  Request r("DELETE", bucket, key);
  r.query.emplace_back("uploadId", upload_id);
  r.op = "AbortMultipartUpload";
  BOOST_OUTCOME_TRY(resp, impl_->send(r));
  if (resp.status / 100 != 2) {
    return impl_->to_error(r, resp);
  }
  return outcome::success();
}

Result<std::vector<Client::UploadInfo>> Client::list_multipart_uploads(const std::string& bucket,
                                                                       const std::string& prefix) {
  std::vector<UploadInfo> out;
  std::string key_marker, id_marker;
  for (int page = 0;; ++page) {
    Request r("GET", bucket);
    r.query.emplace_back("uploads", "");
    r.op = "ListMultipartUploads";
    if (!prefix.empty()) {
      r.query.emplace_back("prefix", prefix);
    }
    if (!key_marker.empty()) {
      r.query.emplace_back("key-marker", key_marker);
      if (!id_marker.empty()) {
        r.query.emplace_back("upload-id-marker", id_marker);
      }
    }
    BOOST_OUTCOME_TRY(resp, impl_->send(r));
    if (resp.status / 100 != 2) {
      Error e = impl_->to_error(r, resp);
      e.message += " (listing page " + std::to_string(page + 1) + ")";
      return outcome::failure(std::move(e));
    }
    if (resp.body.find("<ListMultipartUploadsResult") == std::string::npos) {
      return fail(Errc::unavailable,
                  "S3 ListMultipartUploads of bucket '" + bucket +
                      "' returned no ListMultipartUploadsResult (is the endpoint S3?)");
    }
    for (std::string_view u : elements(resp.body, "Upload")) {
      out.push_back({text(u, "Key").value_or(""), text(u, "UploadId").value_or(""), text(u, "Initiated").value_or("")});
    }
    if (text(resp.body, "IsTruncated").value_or("false") != "true") {
      break;
    }
    std::string next_key = text(resp.body, "NextKeyMarker").value_or("");
    std::string next_id = text(resp.body, "NextUploadIdMarker").value_or("");
    if (next_key.empty() || (next_key == key_marker && next_id == id_marker)) {
      return fail(Errc::unavailable, "S3 ListMultipartUploads of bucket '" + bucket +
                                         "' is truncated but has no new key marker");
    }
    key_marker = std::move(next_key);
    id_marker = std::move(next_id);
  }
  return out;
}

namespace {

constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kMinPartSize = 5 * kMiB;  // every part but the last
constexpr std::uint64_t kMaxPartSize = 5 * 1024 * kMiB;
constexpr std::uint64_t kMaxParts = 10000;

/// The part size for a file of `size` bytes: at least 5 MiB and at least what keeps the part
/// count within 10,000 (rounded up to whole MiB); 0 when even 5 GiB parts are not enough.
std::uint64_t choose_part_size(std::uint64_t size, std::uint64_t wanted) {
  std::uint64_t part = std::max(wanted, kMinPartSize);
  if ((size + part - 1) / part > kMaxParts) {
    part = (size + kMaxParts - 1) / kMaxParts;
    part = (part + kMiB - 1) / kMiB * kMiB;
  }
  return part > kMaxPartSize ? 0 : part;
}

}  // namespace

Result<std::string> Client::put_file(const std::string& bucket, const std::string& key,
                                     const std::filesystem::path& file,
                                     const PutFileOptions& opts) {
  const std::string dest = "s3://" + bucket + "/" + key;
  if (key.empty()) {
    return fail(Errc::invalid_argument,
                "S3 put_file '" + file.string() + "': the object key is empty");
  }
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    int e = errno;
    return fail(
        e == ENOENT ? Errc::not_found : Errc::io,
        "S3 put_file to " + dest + ": cannot open '" + file.string() + "': " + errno_text(e));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    int e = errno;
    return fail(Errc::io, "S3 put_file to " + dest + ": cannot stat '" + file.string() +
                              "': " + errno_text(e));
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(Errc::invalid_argument,
                "S3 put_file to " + dest + ": '" + file.string() + "' is not a regular file");
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  auto changed = [&](std::uint64_t now) {
    return make_error(Errc::io, "S3 put_file to " + dest + ": '" + file.string() +
                                    "' changed size while it was being uploaded (" +
                                    std::to_string(size) + " bytes, then " + std::to_string(now) +
                                    "); upload it again once it is stable");
  };
  auto size_now = [&]() -> Result<std::uint64_t> {
    struct stat after {};
    if (::fstat(fd.get(), &after) != 0) {
      int e = errno;
      return fail(Errc::io, "S3 put_file to " + dest + ": cannot stat '" + file.string() +
                                "': " + errno_text(e));
    }
    return static_cast<std::uint64_t>(after.st_size);
  };

  if (size == 0 || size < opts.multipart_threshold) {
    std::string body;
    try {
      body.resize(size);
    } catch (const std::bad_alloc&) {
      return fail(Errc::internal, "S3 put_file to " + dest + ": out of memory reading '" +
                                      file.string() + "' (" + std::to_string(size) + " bytes)");
    }
    if (int err = pread_all(fd.get(), body.data(), body.size(), 0); err == kEarlyEof) {
      BOOST_OUTCOME_TRY(now, size_now());
      return changed(now);
    } else if (err != 0) {
      return fail(Errc::io, "S3 put_file to " + dest + ": cannot read '" + file.string() +
                                "': " + errno_text(err));
    }
    BOOST_OUTCOME_TRY(now, size_now());
    if (now != size) {
      return changed(now);
    }
    return put_object(bucket, key, body, opts.content_type);
  }

  const std::uint64_t part_size = choose_part_size(size, opts.part_size);
  if (part_size == 0) {
    return fail(Errc::invalid_argument, "S3 put_file to " + dest + ": '" + file.string() +
                                            "' is larger than S3 allows (10,000 parts of 5 GiB)");
  }
  const auto parts = static_cast<int>((size + part_size - 1) / part_size);
  BOOST_OUTCOME_TRY(upload_id, create_multipart_upload(bucket, key, opts.content_type));
  if (opts.on_multipart_created) opts.on_multipart_created(key, upload_id);
  // Once it is completed or aborted, the caller hears of it (an upload whose abort failed stays
  // recorded, to be aborted later).
  auto ended = [&] {
    if (opts.on_multipart_ended) opts.on_multipart_ended(key, upload_id);
  };

  // From here on, every failure aborts the upload so that no parts are left behind (they are
  // billed until aborted).
  auto abort_with = [&](Error e) -> Error {
    auto aborted = abort_multipart_upload(bucket, key, upload_id);
    if (aborted) {
      ended();
      e.message += "; the multipart upload was aborted";
    } else {
      e.message += "; aborting the multipart upload " + upload_id +
                   " also failed: " + aborted.error().message +
                   " (its parts stay stored until it is aborted; a bucket lifecycle rule for "
                   "incomplete multipart uploads removes them)";
    }
    return e;
  };

  // Workers take the next part number from `next`; each owns one part-sized buffer, so at most
  // `workers` buffers exist. The first failure stops new parts from starting.
  std::vector<std::string> etags(static_cast<std::size_t>(parts));
  std::atomic<int> next{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::optional<Error> failure;  // the first part to fail, guarded by mu
  auto part_failed = [&](int index, const std::string& why, Errc ec) {
    std::uint64_t first = static_cast<std::uint64_t>(index) * part_size;
    std::uint64_t last = std::min(size, first + part_size) - 1;
    std::lock_guard lock(mu);
    if (!failure) {
      failure = make_error(ec, "S3 put_file '" + file.string() + "' to " + dest + ": part " +
                                   std::to_string(index + 1) + " of " + std::to_string(parts) +
                                   " (bytes " + std::to_string(first) + "-" + std::to_string(last) +
                                   ") failed: " + why);
    }
    stop = true;
  };
  auto worker = [&] {
    std::unique_ptr<char[]> buf;
    try {
      buf = std::make_unique_for_overwrite<char[]>(part_size);
    } catch (const std::bad_alloc&) {
      std::lock_guard lock(mu);
      if (!failure) {
        failure = make_error(Errc::internal, "S3 put_file '" + file.string() + "' to " + dest +
                                                 ": out of memory for a " +
                                                 std::to_string(part_size) + "-byte part buffer");
      }
      stop = true;
      return;
    }
    for (int i = next++; i < parts && !stop; i = next++) {
      std::uint64_t offset = static_cast<std::uint64_t>(i) * part_size;
      std::size_t len = static_cast<std::size_t>(std::min(part_size, size - offset));
      if (int err = pread_all(fd.get(), buf.get(), len, offset); err != 0) {
        part_failed(i,
                    err == kEarlyEof
                        ? "'" + file.string() + "' ended early: it shrank while being uploaded"
                        : "reading '" + file.string() + "': " + errno_text(err),
                    Errc::io);
        return;
      }
      auto etag = upload_part(bucket, key, upload_id, i + 1, std::string_view(buf.get(), len));
      if (!etag) {
        part_failed(i, etag.error().message, etag.error().code);
        return;
      }
      etags[static_cast<std::size_t>(i)] = std::move(etag.value());
    }
  };
  const int workers = std::clamp(opts.part_concurrency, 1, std::min(parts, 64));
  std::vector<std::thread> threads;
  for (int t = 1; t < workers; ++t) {
    try {
      threads.emplace_back(worker);
    } catch (const std::system_error&) {
      break;  // fewer threads than asked for; this thread works too
    }
  }
  worker();
  for (auto& t : threads) {
    t.join();
  }
  if (failure) {
    return abort_with(std::move(*failure));
  }
  auto now = size_now();
  if (!now) {
    return abort_with(std::move(now.error()));
  }
  if (now.value() != size) {
    return abort_with(changed(now.value()));
  }
  auto etag = complete_multipart_upload(bucket, key, upload_id, etags);
  if (!etag) {
    Error e = std::move(etag.error());
    e.message = "S3 put_file '" + file.string() + "' to " + dest + ": completing the upload of " +
                std::to_string(parts) + " parts failed: " + e.message;
    return abort_with(std::move(e));
  }
  ended();
  return etag;
}

// ---------------------------------------------------------------------------------------------

Result<ObjectInfo> Client::get_to_file(const std::string& bucket, const std::string& key,
                                       const std::filesystem::path& file) {
  if (key.empty()) {
    return fail(Errc::invalid_argument, "S3 get_to_file: the object key is empty");
  }
  const std::string what =
      "S3 get_to_file s3://" + bucket + "/" + key + " to '" + file.string() + "'";
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    int e = errno;
    return fail(Errc::io, what + ": cannot open the file: " + errno_text(e));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    // A retried download restarts by truncating, which only a regular file can do.
    return fail(Errc::invalid_argument, what + ": not a regular file");
  }
  // Every failure leaves the file empty rather than holding part of an object.
  auto fail_empty = [&](Error e) -> Error {
    if (::ftruncate(fd.get(), 0) != 0) {
      int err = errno;
      e.message += " (and emptying the file failed: " + errno_text(err) + ")";
    }
    return e;
  };
  Request r("GET", bucket, key);
  r.sink_fd = fd.get();
  auto sent = impl_->send(r);
  if (!sent) {
    Error e = std::move(sent.error());
    if (e.code == Errc::io) {
      e.message = what + ": " + e.message;
    }
    return fail_empty(std::move(e));
  }
  const Response& resp = sent.value();
  if (resp.status / 100 != 2) {
    return fail_empty(impl_->to_error(r, resp));
  }
  ObjectInfo info;
  info.key = key;
  info.size = resp.sink_bytes;
  info.etag = strip_quotes(resp.header("etag"));
  info.mtime_ms = parse_http_date(resp.header("last-modified"));
  std::string length = resp.header("content-length");
  if (!length.empty()) {
    std::uint64_t expected = std::strtoull(length.c_str(), nullptr, 10);
    if (expected != resp.sink_bytes) {
      return fail_empty(make_error(Errc::unavailable,
                                   what + ": received " + std::to_string(resp.sink_bytes) +
                                       " bytes but Content-Length is " + length + " (try again)"));
    }
  }
  if (::fstat(fd.get(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) != resp.sink_bytes) {
    return fail_empty(make_error(Errc::io, what + ": the file does not hold the " +
                                               std::to_string(resp.sink_bytes) +
                                               " bytes written (was it changed meanwhile?)"));
  }
  if (int err = fd.reset(); err != 0) {
    return fail(Errc::io, what + ": closing the file failed: " + errno_text(err));
  }
  return info;
}

}  // namespace ck::s3
