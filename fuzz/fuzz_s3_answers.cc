// An S3 endpoint's answer (a ListObjectsV2 page, a ListMultipartUploads page, an error or
// DeleteResult document), which a broken or hostile endpoint writes: read without a crash, an
// out-of-bounds read or an overflow, whatever the bytes.
#include <cstdint>
#include <string>
#include <string_view>

#include "storage/s3/answers.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ck::s3;
  std::string_view body(reinterpret_cast<const char*>(data), size);
  ListPage list = read_list_page(body);
  std::size_t total = list.next_token.size();
  for (const auto& o : list.objects) total += o.key.size() + o.etag.size();
  for (const auto& p : list.prefixes) total += p.size();
  UploadsPage uploads = read_uploads_page(body);
  for (const auto& u : uploads.uploads) total += u.key.size() + u.upload_id.size();
  for (std::string_view e : xml::elements(body, "Error")) {
    total += xml::text(e, "Code").value_or("").size() + xml::text(e, "Key").value_or("").size();
  }
  // What the client writes from a key must read back as that key.
  std::string key(body.substr(0, 256));
  if (xml::decode_entities(xml::escape(key)) != key) __builtin_trap();
  (void)total;
  return 0;
}
