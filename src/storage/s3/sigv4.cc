#include "storage/s3/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cassert>
#include <ctime>
#include <string>

#include "http/url.h"

namespace ck::s3 {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";

std::string to_hex(const unsigned char* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out += kHex[p[i] >> 4];
    out += kHex[p[i] & 15];
  }
  return out;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& ch : out) {
    if (ch >= 'A' && ch <= 'Z') {
      ch = static_cast<char>(ch - 'A' + 'a');
    }
  }
  return out;
}

bool is_space(char ch) { return ch == ' ' || ch == '\t'; }

/// Trimall: no leading or trailing whitespace, every inner run of it one space.
std::string trim_all(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  bool pending_space = false;
  for (char ch : v) {
    if (is_space(ch)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) {
      out += ' ';
      pending_space = false;
    }
    out += ch;
  }
  return out;
}

bool is_reserved_header(std::string_view lower_name) {
  return lower_name == "host" || lower_name == "x-amz-date" ||
         lower_name == "x-amz-content-sha256" || lower_name == "x-amz-security-token" ||
         lower_name == "authorization";
}

using Pairs = std::vector<std::pair<std::string, std::string>>;

/// "a=1&b=&b=2": names and values encoded, sorted by name then value.
std::string canonical_query(const Pairs& raw) {
  Pairs enc;
  enc.reserve(raw.size());
  for (const auto& [name, value] : raw) {
    enc.emplace_back(uri_encode(name, true), uri_encode(value, true));
  }
  std::sort(enc.begin(), enc.end());
  std::string out;
  for (const auto& [name, value] : enc) {
    if (!out.empty()) {
      out += '&';
    }
    out += name;
    out += '=';
    out += value;
  }
  return out;
}

struct CanonicalHeaders {
  std::string text;          // "host:x\nrange:bytes=0-9\n"
  std::string signed_names;  // "host;range"
};

/// `headers` hold lower-case names. Repeated names become one line, values joined by ','
/// in the order given.
CanonicalHeaders canonical_headers(Pairs headers) {
  std::stable_sort(headers.begin(), headers.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  CanonicalHeaders out;
  for (size_t i = 0; i < headers.size(); ++i) {
    const std::string& name = headers[i].first;
    bool same_as_previous = i > 0 && headers[i - 1].first == name;
    if (same_as_previous) {
      out.text.back() = ',';  // replaces the previous line's '\n'
    } else {
      if (!out.signed_names.empty()) {
        out.signed_names += ';';
      }
      out.signed_names += name;
      out.text += name;
      out.text += ':';
    }
    out.text += trim_all(headers[i].second);
    out.text += '\n';
  }
  return out;
}

std::string scope_of(const SignInput& in) {
  return in.amz_date.substr(0, 8) + "/" + in.region + "/" + in.service + "/aws4_request";
}

std::string signing_key(const SignInput& in, const Credentials& c) {
  std::string k = hmac_sha256("AWS4" + c.secret_key, in.amz_date.substr(0, 8));
  k = hmac_sha256(k, in.region);
  k = hmac_sha256(k, in.service);
  return hmac_sha256(k, "aws4_request");
}

std::string canonical_uri(const SignInput& in) {
  return in.path.empty() ? std::string("/") : uri_encode(in.path, false);
}

/// The lower-case names and values of the input headers the caller may set.
Pairs caller_headers(const SignInput& in) {
  Pairs out;
  for (const auto& [name, value] : in.headers) {
    std::string lower = to_lower(name);
    if (!is_reserved_header(lower)) {
      out.emplace_back(std::move(lower), value);
    }
  }
  return out;
}

struct Signature {
  std::string canonical_request, string_to_sign, signature;
};

Signature compute(const SignInput& in, const Credentials& c, std::string_view uri,
                  std::string_view query, const CanonicalHeaders& headers,
                  std::string_view payload) {
  Signature s;
  s.canonical_request.append(in.method).append("\n");
  s.canonical_request.append(uri).append("\n");
  s.canonical_request.append(query).append("\n");
  s.canonical_request.append(headers.text).append("\n");
  s.canonical_request.append(headers.signed_names).append("\n");
  s.canonical_request.append(payload);
  s.string_to_sign.append(kAlgorithm).append("\n");
  s.string_to_sign.append(in.amz_date).append("\n");
  s.string_to_sign.append(scope_of(in)).append("\n");
  s.string_to_sign.append(sha256_hex(s.canonical_request));
  std::string mac = hmac_sha256(signing_key(in, c), s.string_to_sign);
  s.signature = to_hex(reinterpret_cast<const unsigned char*>(mac.data()), mac.size());
  return s;
}

}  // namespace

std::string uri_encode(std::string_view s, bool encode_slash) {
  return http::percent_encode(s, !encode_slash);
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  int ok = EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  assert(ok == 1 && len == 32);
  (void)ok;
  return to_hex(md, len);
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  unsigned char* res =
      HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  assert(res != nullptr && len == 32);
  (void)res;
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string amz_date_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  size_t n = std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return std::string(buf, n);
}

Signed sign(const SignInput& in, const Credentials& c) {
  assert(in.amz_date.size() == 16);
  std::string payload =
      in.payload_sha256.empty() ? std::string(kEmptyPayloadSha256) : in.payload_sha256;

  Pairs extra = caller_headers(in);
  Pairs to_sign = {
      {"host", in.host}, {"x-amz-content-sha256", payload}, {"x-amz-date", in.amz_date}};
  if (!c.session_token.empty()) {
    to_sign.emplace_back("x-amz-security-token", c.session_token);
  }
  to_sign.insert(to_sign.end(), extra.begin(), extra.end());
  CanonicalHeaders headers = canonical_headers(std::move(to_sign));

  std::string uri = canonical_uri(in);
  std::string query = canonical_query(in.query);
  Signature s = compute(in, c, uri, query, headers, payload);

  Signed out;
  out.headers = {{"Host", in.host}, {"x-amz-date", in.amz_date}, {"x-amz-content-sha256", payload}};
  if (!c.session_token.empty()) {
    out.headers.emplace_back("x-amz-security-token", c.session_token);
  }
  for (const auto& [name, value] : in.headers) {
    if (!is_reserved_header(to_lower(name))) {
      out.headers.emplace_back(name, value);
    }
  }
  out.headers.emplace_back("Authorization", std::string(kAlgorithm) +
                                                " Credential=" + c.access_key + "/" + scope_of(in) +
                                                ", SignedHeaders=" + headers.signed_names +
                                                ", Signature=" + s.signature);
  out.canonical_request = std::move(s.canonical_request);
  out.string_to_sign = std::move(s.string_to_sign);
  out.signature = std::move(s.signature);
  out.encoded_target = query.empty() ? uri : uri + "?" + query;
  return out;
}

std::string presign_query(const SignInput& in, const Credentials& c, int expires_seconds) {
  assert(in.amz_date.size() == 16);
  Pairs to_sign = {{"host", in.host}};
  Pairs extra = caller_headers(in);
  to_sign.insert(to_sign.end(), extra.begin(), extra.end());
  CanonicalHeaders headers = canonical_headers(std::move(to_sign));

  Pairs params = in.query;
  params.emplace_back("X-Amz-Algorithm", std::string(kAlgorithm));
  params.emplace_back("X-Amz-Credential", c.access_key + "/" + scope_of(in));
  params.emplace_back("X-Amz-Date", in.amz_date);
  params.emplace_back("X-Amz-Expires", std::to_string(expires_seconds));
  params.emplace_back("X-Amz-SignedHeaders", headers.signed_names);
  if (!c.session_token.empty()) {
    params.emplace_back("X-Amz-Security-Token", c.session_token);
  }
  std::string query = canonical_query(params);
  Signature s = compute(in, c, canonical_uri(in), query, headers, kUnsignedPayload);
  return query + "&X-Amz-Signature=" + s.signature;
}

}  // namespace ck::s3
