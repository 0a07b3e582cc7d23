#pragma once
// A blocking S3 client (path-style or virtual-host) over libcurl, signed with SigV4 (sigv4.h).
// Thread-safe: calls may run concurrently from a worker pool; each call borrows a curl easy
// handle from a small pool so connections are reused. Never throws: every failure is a Result
// error whose message carries the HTTP status, the S3 Code and Message, the bucket/key and a hint.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
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

/// Client::put_file's knobs. At namespace scope (aliased as Client::PutFileOptions) because GCC 12
/// rejects `= {}` default arguments of a nested class with member initializers.
struct PutFileOptions {
  std::uint64_t multipart_threshold = 8ull << 20;  // files at least this big go multipart
  /// >= 5 MiB except the last part (S3 rule); raised so that a file needs at most 10,000 parts.
  std::uint64_t part_size = 8ull << 20;
  /// Parts in flight for one file (1..64), each holding one part_size buffer.
  int part_concurrency = 4;
  std::string content_type;  // optional
  /// A multipart upload was created (`upload_id`), and later ended (completed or aborted): the
  /// sync engine records the ids it starts, so a run killed mid-upload can abort them later.
  /// Called on the calling thread.
  std::function<void(const std::string& key, const std::string& upload_id)> on_multipart_created;
  std::function<void(const std::string& key, const std::string& upload_id)> on_multipart_ended;
};

/// One ListObjectsV2 result, every page of it.
struct Listing {
  std::vector<ObjectInfo> objects;
  std::vector<std::string> prefixes;  // CommonPrefixes (with a delimiter), full: "ws/app/"
};

class Client {
 public:
  using PutFileOptions = s3::PutFileOptions;
  struct UploadInfo {
    std::string key, upload_id;
    std::string initiated;  // as the server wrote it (RFC 3339); may be empty
  };

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
  /// `length` bytes from `offset` (GET with Range: bytes=offset-(offset+length-1)). A server that
  /// ignores Range (200 with the whole object) is handled by slicing; an object too short for the
  /// range is an error. length 0 returns "" without a request.
  Result<std::string> get_object_range(const std::string& bucket, const std::string& key,
                                       std::uint64_t offset, std::uint64_t length);
  /// nullopt on 404.
  Result<std::optional<ObjectInfo>> head_object(const std::string& bucket, const std::string& key);
  Result<void> delete_object(const std::string& bucket, const std::string& key);
  /// DeleteObjects in batches of 1000 (POST ?delete with Content-MD5); fails if any key failed.
  Result<void> delete_objects(const std::string& bucket, const std::vector<std::string>& keys);
  /// ListObjectsV2 with pagination (continuation-token), every page; a failed page fails the
  /// whole call (never a partial list).
  Result<std::vector<ObjectInfo>> list_objects(const std::string& bucket,
                                               const std::string& prefix);
  /// ListObjectsV2 with delimiter "/": the CommonPrefixes directly below `prefix` (full prefixes,
  /// e.g. "ws/app/"), every page; a failed page fails the call.
  /// ListObjectsV2 with an optional delimiter ("" for none): the objects and, with a
  /// delimiter, the CommonPrefixes, every page; a failed page fails the call.
  Result<Listing> list(const std::string& bucket, const std::string& prefix,
                       const std::string& delimiter);
  Result<std::vector<std::string>> list_common_prefixes(const std::string& bucket,
                                                        const std::string& prefix);

  /// Uploads a local file. Below opts.multipart_threshold (and always when empty): one PUT of the
  /// file read into memory, as put_object. At or above: CreateMultipartUpload, then UploadPart
  /// from part_concurrency threads (each part pread into that thread's buffer, with its own
  /// Content-MD5, retried by the usual policy), then CompleteMultipartUpload. Any failure after
  /// the upload was created sends AbortMultipartUpload (best effort; its own failure is added to
  /// the message), and the message names the failed part and why. A file whose size changes
  /// during the upload is an error. Returns the final ETag without quotes (S3 gives a multipart
  /// object "<md5 of the part md5s>-N").
  Result<std::string> put_file(const std::string& bucket, const std::string& key,
                               const std::filesystem::path& file, const PutFileOptions& opts = {});
  /// Streams the object into `file` (a regular file, created or truncated; written as it
  /// arrives, never held whole in memory). A retried attempt starts again from byte 0. A non-2xx
  /// answer or any other failure leaves the file empty. Checks that the bytes written equal
  /// Content-Length. Returns size, etag (without quotes) and mtime from Content-Length, ETag and
  /// Last-Modified.
  Result<ObjectInfo> get_to_file(const std::string& bucket, const std::string& key,
                                 const std::filesystem::path& file);

  // Multipart primitives (put_file's steps; also used by the tests).
  /// Returns the upload id.
  Result<std::string> create_multipart_upload(const std::string& bucket, const std::string& key,
                                              const std::string& content_type = "");
  /// part_number 1..10000; sends Content-MD5. Returns the part's ETag (without quotes).
  Result<std::string> upload_part(const std::string& bucket, const std::string& key,
                                  const std::string& upload_id, int part_number,
                                  std::string_view body);
  /// Part i+1 is part_etags[i]. A 200 answer carrying an <Error> is a failure (retried when the
  /// code is InternalError or SlowDown). Returns the final ETag (without quotes).
  Result<std::string> complete_multipart_upload(const std::string& bucket, const std::string& key,
                                                const std::string& upload_id,
                                                const std::vector<std::string>& part_etags);
  Result<void> abort_multipart_upload(const std::string& bucket, const std::string& key,
                                      const std::string& upload_id);
  /// Every in-progress multipart upload under `prefix` (paginated by key-marker and
  /// upload-id-marker); a failed page fails the call.
  Result<std::vector<UploadInfo>> list_multipart_uploads(const std::string& bucket,
                                                         const std::string& prefix);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ck::s3
