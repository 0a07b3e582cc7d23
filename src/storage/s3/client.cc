// The S3 client's requests: buckets, objects, listings and the multipart steps. The transport
// (signing, retries, errors) is in transport.cc; whole files in transfer.cc.

#include "storage/s3/client.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <utility>

#include "storage/s3/answers.h"
#include "storage/s3/transport.h"

namespace ck::s3 {

using xml::elements;
using xml::text;

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
  r.max_body = 0;  // the object itself, which the caller asked for whole
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
  r.max_body = 0;  // a server that ignores Range sends the whole object
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
  info.mtime_ms = http_date_ms(resp.header("last-modified"));
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
  std::string token;
  for (int page_no = 0;; ++page_no) {
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
    BOOST_OUTCOME_TRY(resp, impl_->send(r));
    if (resp.status / 100 != 2) {
      return impl_->page_error(r, resp, page_no);
    }
    if (resp.body.find("<ListBucketResult") == std::string::npos) {
      return fail(Errc::unavailable, "S3 ListObjectsV2 of bucket '" + bucket +
                                         "' returned no ListBucketResult (is the endpoint S3?)");
    }
    ListPage page = read_list_page(resp.body);
    std::move(page.objects.begin(), page.objects.end(), std::back_inserter(out.objects));
    std::move(page.prefixes.begin(), page.prefixes.end(), std::back_inserter(out.prefixes));
    if (!page.truncated) {
      return out;
    }
    if (page.next_token.empty() || page.next_token == token) {
      return fail(Errc::unavailable, "S3 ListObjectsV2 of bucket '" + bucket +
                                         "' is truncated but has no new continuation token");
    }
    token = std::move(page.next_token);
  }
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
      return impl_->page_error(r, resp, page);
    }
    if (resp.body.find("<ListMultipartUploadsResult") == std::string::npos) {
      return fail(Errc::unavailable,
                  "S3 ListMultipartUploads of bucket '" + bucket +
                      "' returned no ListMultipartUploadsResult (is the endpoint S3?)");
    }
    UploadsPage got = read_uploads_page(resp.body);
    std::move(got.uploads.begin(), got.uploads.end(), std::back_inserter(out));
    if (!got.truncated) {
      break;
    }
    std::string next_key = std::move(got.next_key);
    std::string next_id = std::move(got.next_upload_id);
    if (next_key.empty() || (next_key == key_marker && next_id == id_marker)) {
      return fail(Errc::unavailable, "S3 ListMultipartUploads of bucket '" + bucket +
                                         "' is truncated but has no new key marker");
    }
    key_marker = std::move(next_key);
    id_marker = std::move(next_id);
  }
  return out;
}

}  // namespace ck::s3
