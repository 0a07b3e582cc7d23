// Header values from the network: percent-decoding, dates, Range, Accept-Encoding, ETags,
// request framing (Transfer-Encoding / Content-Length) and an app's Set-Cookie.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/static_files.h"
#include "http/framing.h"
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
  // Lines before the first empty line are Transfer-Encoding values, the rest Content-Length.
  std::vector<std::string_view> te, cl;
  bool lengths = false;
  std::string_view rest(s);
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    auto line = rest.substr(0, nl);
    if (line.empty()) {
      lengths = true;
    } else {
      (lengths ? cl : te).push_back(line);
    }
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  auto bad = ck::http::check_framing(te, cl);
  if (!bad && !te.empty() && !cl.empty()) std::abort();  // both fields are never accepted
  (void)ck::http::sets_cookie(s, "ck_session");
  return 0;
}
