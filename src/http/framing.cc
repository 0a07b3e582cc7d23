#include "http/framing.h"

#include <cstdint>

#include "http/url.h"

namespace ck::http {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls f(token) for each element of a comma-separated list (empty elements included).
template <class F>
void for_each_element(std::string_view list, F&& f) {
  for (;;) {
    auto comma = list.find(',');
    f(trim(list.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

bool parse_length(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;  // 19 digits always fit in 64 bits
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  out = v;
  return true;
}

}  // namespace

std::optional<FramingError> check_framing(const std::vector<std::string_view>& transfer_encoding,
                                          const std::vector<std::string_view>& content_length) {
  if (!transfer_encoding.empty() && !content_length.empty()) {
    return FramingError{"the request has both Transfer-Encoding and Content-Length"};
  }
  if (!transfer_encoding.empty()) {
    std::size_t codings = 0;
    bool last_chunked = false;
    for (auto value : transfer_encoding) {
      for_each_element(value, [&](std::string_view coding) {
        if (coding.empty()) return;  // empty list elements are ignored (RFC 9110 5.6.1)
        ++codings;
        // A coding may carry parameters ("chunked;x=1" is not chunked).
        last_chunked = iequals(coding, "chunked");
      });
    }
    if (codings == 0 || !last_chunked) {
      return FramingError{"its Transfer-Encoding does not end in 'chunked'"};
    }
    if (codings > 1) {
      return FramingError{"its Transfer-Encoding has codings other than 'chunked', which this "
                          "gateway does not decode"};
    }
    return std::nullopt;
  }
  std::optional<std::uint64_t> length;
  for (auto value : content_length) {
    bool bad = false;
    for_each_element(value, [&](std::string_view element) {
      std::uint64_t v = 0;
      if (!parse_length(element, v) || (length && *length != v)) {
        bad = true;
        return;
      }
      length = v;
    });
    if (bad) return FramingError{"its Content-Length is not one decimal number"};
  }
  return std::nullopt;
}

}  // namespace ck::http
