#include "storage/s3/client.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

namespace ck::s3 {

// ---------------------------------------------------------------------------------------------
// XML: the few fixed shapes S3 answers with (ListBucketResult, Error, DeleteResult).

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
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;
};

struct Response {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case

  std::string header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) {
        return v;
      }
    }
    return {};
  }
};

size_t write_cb(char* ptr, size_t size, size_t nmemb, void* user) {
  static_cast<std::string*>(user)->append(ptr, size * nmemb);
  return size * nmemb;
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

std::string where(const Request& r) {
  if (r.key.empty()) {
    return "bucket '" + r.bucket + "'";
  }
  return "s3://" + r.bucket + "/" + r.key;
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
    if (pool.size() < 16) {
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
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, r.body.data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp.body);
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
        bool slow_down = resp.status == 503 || resp.status == 429 ||
                         resp.body.find("<Code>SlowDown</Code>") != std::string::npos;
        bool retry = resp.status >= 500 || slow_down;
        if (!retry || last) {
          return resp;
        }
      }
      long base = 100L << std::min(attempt_no, 6);
      std::uniform_int_distribution<long> jitter(0, base / 2);
      std::this_thread::sleep_for(std::chrono::milliseconds(base + jitter(rng)));
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
    } else if (resp.status >= 500 || resp.status == 429) {
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

Result<std::vector<ObjectInfo>> Client::list_objects(const std::string& bucket,
                                                     const std::string& prefix) {
  std::vector<ObjectInfo> out;
  std::string token;
  for (int page = 0;; ++page) {
    Request r("GET", bucket);
    r.query.emplace_back("list-type", "2");
    if (!prefix.empty()) {
      r.query.emplace_back("prefix", prefix);
    }
    if (!token.empty()) {
      r.query.emplace_back("continuation-token", token);
    }
    BOOST_OUTCOME_TRY(resp, impl_->send(r));
    if (resp.status / 100 != 2) {
      Error e = impl_->to_error(r, resp);
      e.message += " (listing page " + std::to_string(page + 1) + ")";
      return outcome::failure(std::move(e));
    }
    if (resp.body.find("<ListBucketResult") == std::string::npos) {
      return fail(Errc::unavailable, "S3 ListObjectsV2 of bucket '" + bucket +
                                         "' returned no ListBucketResult (is the endpoint S3?)");
    }
    for (std::string_view c : elements(resp.body, "Contents")) {
      ObjectInfo info;
      info.key = text(c, "Key").value_or("");
      info.size = std::strtoull(text(c, "Size").value_or("0").c_str(), nullptr, 10);
      info.etag = strip_quotes(text(c, "ETag").value_or(""));
      info.mtime_ms = parse_iso8601(text(c, "LastModified").value_or(""));
      out.push_back(std::move(info));
    }
    // IsTruncated and NextContinuationToken occur only at the top level (never in <Contents>).
    bool truncated = text(resp.body, "IsTruncated").value_or("false") == "true";
    if (!truncated) {
      break;
    }
    std::string next = text(resp.body, "NextContinuationToken").value_or("");
    if (next.empty() || next == token) {
      return fail(Errc::unavailable, "S3 ListObjectsV2 of bucket '" + bucket +
                                         "' is truncated but has no new continuation token");
    }
    token = std::move(next);
  }
  return out;
}

}  // namespace ck::s3
