#pragma once
// AWS Signature Version 4 for S3: canonical request, string to sign, signing key, the
// Authorization header and presigned-URL queries, as in the S3 API reference ("Signature
// Calculations for the Authorization Header", "Query String Authentication").
// Pure: no I/O, no clock except amz_date_now(), no global state; the S3 client builds requests
// from what sign() returns. SHA-256 and HMAC come from OpenSSL.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ck::s3 {

/// The hex SHA-256 of an empty body, the payload hash of GET, HEAD and DELETE.
inline constexpr std::string_view kEmptyPayloadSha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Stands in for the payload hash when the body is not signed (presigned URLs, streaming).
inline constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";

struct Credentials {
  std::string access_key, secret_key;
  std::string session_token;  // empty unless the credentials are temporary (STS)
};

struct SignInput {
  std::string method;  // "GET", as sent on the request line
  std::string host;    // "bucket.s3.amazonaws.com" or "127.0.0.1:4568", as sent in Host
  /// Raw, unencoded object path: "/bucket/a b+c.txt". The signer encodes each segment (RFC 3986
  /// unreserved kept, '/' kept), never twice, and never normalises ("//", "." and ".." stay).
  /// Empty means "/".
  std::string path;
  /// Raw (unencoded) names and values; the signer encodes and sorts them. Empty value: "name=".
  std::vector<std::pair<std::string, std::string>> query;
  /// Extra headers to send and sign (content-type, range, x-amz-meta-*...), any case. Repeated
  /// names are signed as one comma-joined value. Host, x-amz-date, x-amz-content-sha256,
  /// x-amz-security-token and Authorization are the signer's: entries by those names are dropped.
  std::vector<std::pair<std::string, std::string>> headers;
  /// Hex SHA-256 of the body, or kUnsignedPayload; empty means the empty body. sign() only.
  std::string payload_sha256;
  std::string region = "us-east-1";
  std::string service = "s3";
  std::string amz_date;  // "20130524T000000Z" (amz_date_now())
};

struct Signed {
  /// Every header to send: Host, x-amz-date, x-amz-content-sha256, (x-amz-security-token), the
  /// input headers with their values as given, and Authorization last.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string canonical_request, string_to_sign, signature;  // for tests and debugging
  /// The path and query exactly as signed, for the request line:
  /// "/bucket/a%20b%2Bc.txt?list-type=2&prefix=x".
  std::string encoded_target;
};

/// Signs a request for the Authorization header.
Signed sign(const SignInput& in, const Credentials& c);

/// The query of a presigned URL: the input query and X-Amz-Algorithm, -Credential, -Date,
/// -Expires, -SignedHeaders (host and the input headers, which the caller must then send),
/// -Security-Token (with a session token), sorted, then "&X-Amz-Signature=...". The payload is
/// always UNSIGNED-PAYLOAD (in.payload_sha256 is ignored). S3 accepts expires_seconds in
/// 1..604800. The URL is "https://" + host + uri_encode(path, false) + "?" + this.
std::string presign_query(const SignInput& in, const Credentials& c, int expires_seconds);

/// Lower-case hex SHA-256.
std::string sha256_hex(std::string_view data);
/// HMAC-SHA256 as 32 raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);
/// The current UTC time as "YYYYMMDDTHHMMSSZ".
std::string amz_date_now();
/// S3 URI encoding: RFC 3986 unreserved (A-Za-z0-9-._~) kept, every other byte %XX upper-case,
/// '/' kept unless encode_slash. Independent of the C locale.
std::string uri_encode(std::string_view s, bool encode_slash);

}  // namespace ck::s3
