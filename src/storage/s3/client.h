#pragma once
// A blocking S3 client (path-style or virtual-host) over libcurl, signed with SigV4 (sigv4.h).
// Thread-safe: calls may run concurrently from a worker pool; each call borrows a curl easy
// handle from a small pool so connections are reused. Never throws: every failure is a Result
// error whose message carries the HTTP status, the S3 Code and Message, the bucket/key and a hint.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "storage/s3/sigv4.h"

namespace ck::s3 {

struct ClientOptions {
  /// "http://127.0.0.1:4568" or "https://s3.eu-west-1.amazonaws.com"; empty means
  /// https://s3.<region>.amazonaws.com.
  std::string endpoint;
  std::string region = "us-east-1";
  bool path_style = true;  // false: https://bucket.endpoint-host/key (virtual host)
  Credentials credentials;
  /// Retries on 5xx, 429/SlowDown, connection errors and timeouts; backoff 100 ms doubling +
  /// jitter.
  int max_retries = 4;
  std::chrono::milliseconds timeout{30000};  // per attempt
  std::string ca_bundle;                     // empty: system default
};

struct ObjectInfo {
  std::string key;
  std::uint64_t size = 0;
  std::string etag;  // without quotes
  std::int64_t mtime_ms = 0;
};

class Client {
 public:
  explicit Client(ClientOptions opts);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Result<void> create_bucket(const std::string& bucket);
  /// Returns the ETag (without quotes). Signs the payload (x-amz-content-sha256 = SHA-256 of
  /// the body) and sends Content-MD5.
  Result<std::string> put_object(const std::string& bucket, const std::string& key,
                                 std::string_view body, const std::string& content_type = "");
  Result<std::string> get_object(const std::string& bucket, const std::string& key);
  /// nullopt on 404.
  Result<std::optional<ObjectInfo>> head_object(const std::string& bucket, const std::string& key);
  Result<void> delete_object(const std::string& bucket, const std::string& key);
  /// DeleteObjects in batches of 1000 (POST ?delete with Content-MD5); fails if any key failed.
  Result<void> delete_objects(const std::string& bucket, const std::vector<std::string>& keys);
  /// ListObjectsV2 with pagination (continuation-token), every page; a failed page fails the
  /// whole call (never a partial list).
  Result<std::vector<ObjectInfo>> list_objects(const std::string& bucket,
                                               const std::string& prefix);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

namespace xml {
/// Decodes &amp; &lt; &gt; &quot; &apos; &#NN; &#xNN; (unknown entities are kept as written).
std::string decode_entities(std::string_view s);
/// Escapes & < > " ' for element text.
std::string escape(std::string_view s);
}  // namespace xml

}  // namespace ck::s3
