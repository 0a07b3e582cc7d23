#pragma once
// Reading S3's answers: the few fixed XML shapes it sends (ListBucketResult, Error,
// DeleteResult, InitiateMultipartUploadResult, CompleteMultipartUploadResult,
// ListMultipartUploadsResult) and the values in them. No general XML parser: these find an
// element by name, which is all the shapes need. They take any bytes, a broken or hostile
// endpoint's included, and never fail or read out of bounds (fuzz/fuzz_s3_answers.cc); the
// transport caps an answer's size before it gets here (transport.h, kMaxAnswer).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "storage/s3/client.h"

namespace ck::s3 {

namespace xml {
/// Decodes &amp; &lt; &gt; &quot; &apos; &#NN; &#xNN; (unknown entities are kept as written).
std::string decode_entities(std::string_view s);
/// Escapes & < > " ' for element text.
std::string escape(std::string_view s);
/// The raw inner text of every <tag>...</tag> (or empty for <tag/>) directly in `s`, in order.
/// Elements of the same name nested inside each other do not occur in these shapes.
std::vector<std::string_view> elements(std::string_view s, std::string_view tag);
/// The decoded text of the first <tag> in `s`.
std::optional<std::string> text(std::string_view s, std::string_view tag);
}  // namespace xml

/// An ETag as S3 writes it ("\"abc\"") without its quotes.
std::string strip_quotes(std::string s);
/// "2026-11-25T22:38:09.000Z" -> ms since the epoch; 0 if unparsable.
std::int64_t parse_iso8601(const std::string& s);

/// One page of ListObjectsV2 (ListBucketResult).
struct ListPage {
  std::vector<ObjectInfo> objects;
  std::vector<std::string> prefixes;  // CommonPrefixes, non-empty ones
  bool truncated = false;
  std::string next_token;  // NextContinuationToken
};
ListPage read_list_page(std::string_view body);

/// One page of ListMultipartUploads (ListMultipartUploadsResult).
struct UploadsPage {
  std::vector<Client::UploadInfo> uploads;
  bool truncated = false;
  std::string next_key, next_upload_id;  // NextKeyMarker, NextUploadIdMarker
};
UploadsPage read_uploads_page(std::string_view body);

}  // namespace ck::s3
