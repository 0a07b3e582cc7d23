// Header values from the network: percent-decoding, dates, Range, Accept-Encoding, ETags.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "gateway/static_files.h"
#include "http/url.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  if (auto d = ck::http::percent_decode(s); d && d->size() > s.size()) std::abort();
  (void)ck::http::query_param(s, "a");
  if (auto t = ck::http::parse_http_date(s)) (void)ck::http::http_date(*t);
  (void)ck::http::header_has_token(s, "upgrade");
  (void)ck::accepts_gzip(s);
  (void)ck::http::etag_matches(s, "\"a-1\"");
  for (std::uint64_t file_size : {0ull, 1ull, 100ull, 1ull << 40}) {
    ck::ByteRange r;
    if (ck::parse_range(s, file_size, r) == ck::RangeResult::ok) {
      if (r.first > r.last || r.last >= file_size) std::abort();
    }
  }
  return 0;
}
