#include "storage/s3/answers.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace ck::s3 {

namespace xml {

namespace {
void append_utf8(std::string& out, unsigned long cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}
}  // namespace

std::string decode_entities(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    std::size_t semi = s.find(';', i + 1);
    if (semi == std::string_view::npos || semi - i > 12) {
      out += s[i];
      continue;
    }
    std::string_view ent = s.substr(i + 1, semi - i - 1);
    bool ok = true;
    if (ent == "amp") {
      out += '&';
    } else if (ent == "lt") {
      out += '<';
    } else if (ent == "gt") {
      out += '>';
    } else if (ent == "quot") {
      out += '"';
    } else if (ent == "apos") {
      out += '\'';
    } else if (ent.size() >= 2 && ent[0] == '#') {
      bool hex = ent[1] == 'x' || ent[1] == 'X';
      std::string_view digits = ent.substr(hex ? 2 : 1);
      unsigned long cp = 0;
      if (digits.empty()) {
        ok = false;
      }
      for (char c : digits) {
        int d;
        if (c >= '0' && c <= '9') {
          d = c - '0';
        } else if (hex && c >= 'a' && c <= 'f') {
          d = c - 'a' + 10;
        } else if (hex && c >= 'A' && c <= 'F') {
          d = c - 'A' + 10;
        } else {
          ok = false;
          break;
        }
        cp = cp * (hex ? 16 : 10) + static_cast<unsigned long>(d);
        if (cp > 0x10FFFF) {
          ok = false;
          break;
        }
      }
      if (ok) {
        append_utf8(out, cp);
      }
    } else {
      ok = false;
    }
    if (ok) {
      i = semi;
    } else {
      out += '&';
    }
  }
  return out;
}

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '\r':
        out += "&#13;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::vector<std::string_view> elements(std::string_view s, std::string_view tag) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (true) {
    std::size_t open = s.find('<', pos);
    if (open == std::string_view::npos) {
      break;
    }
    if (s.compare(open + 1, tag.size(), tag) != 0) {
      pos = open + 1;
      continue;
    }
    std::size_t after = open + 1 + tag.size();
    if (after >= s.size()) {
      break;
    }
    char c = s[after];
    if (c != '>' && c != '/' && c != ' ' && c != '\t' && c != '\r' && c != '\n') {
      pos = open + 1;  // a longer name such as <KeyCount> when looking for <Key>
      continue;
    }
    std::size_t gt = s.find('>', after);
    if (gt == std::string_view::npos) {
      break;
    }
    if (s[gt - 1] == '/') {
      out.emplace_back();
      pos = gt + 1;
      continue;
    }
    std::string close = "</" + std::string(tag) + ">";
    std::size_t end = s.find(close, gt + 1);
    if (end == std::string_view::npos) {
      break;
    }
    out.push_back(s.substr(gt + 1, end - gt - 1));
    pos = end + close.size();
  }
  return out;
}

std::optional<std::string> text(std::string_view s, std::string_view tag) {
  auto e = elements(s, tag);
  if (e.empty()) {
    return std::nullopt;
  }
  return decode_entities(e.front());
}

}  // namespace xml

std::string strip_quotes(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
    return s.substr(1, s.size() - 2);
  }
  return s;
}

namespace {
std::int64_t to_ms(std::tm tm, int millis) {
  return static_cast<std::int64_t>(timegm(&tm)) * 1000 + millis;
}
}  // namespace

std::int64_t parse_iso8601(const std::string& s) {
  std::tm tm{};
  int ms = 0;
  // Widths bound every field, so no value overflows on its way to timegm.
  int n = std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                      &tm.tm_hour, &tm.tm_min, &tm.tm_sec);
  if (n != 6) {
    return 0;
  }
  std::size_t dot = s.find('.');
  if (dot != std::string::npos) {
    int digits = 0;
    for (std::size_t i = dot + 1; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]));
         ++i) {
      if (digits < 3) {
        ms = ms * 10 + (s[i] - '0');
        ++digits;
      }
    }
    while (digits++ < 3) {
      ms *= 10;
    }
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return to_ms(tm, ms);
}

ListPage read_list_page(std::string_view body) {
  using xml::elements, xml::text;
  ListPage page;
  for (std::string_view c : elements(body, "Contents")) {
    ObjectInfo info;
    info.key = text(c, "Key").value_or("");
    info.size = std::strtoull(text(c, "Size").value_or("0").c_str(), nullptr, 10);
    info.etag = strip_quotes(text(c, "ETag").value_or(""));
    info.mtime_ms = parse_iso8601(text(c, "LastModified").value_or(""));
    page.objects.push_back(std::move(info));
  }
  // <Prefix> also occurs at the top level (the request's prefix): read it only inside
  // <CommonPrefixes>.
  for (std::string_view cp : elements(body, "CommonPrefixes")) {
    if (auto p = text(cp, "Prefix"); p && !p->empty()) {
      page.prefixes.push_back(std::move(*p));
    }
  }
  // IsTruncated and NextContinuationToken occur only at the top level (never in <Contents>).
  page.truncated = text(body, "IsTruncated").value_or("false") == "true";
  page.next_token = text(body, "NextContinuationToken").value_or("");
  return page;
}

UploadsPage read_uploads_page(std::string_view body) {
  using xml::elements, xml::text;
  UploadsPage page;
  for (std::string_view u : elements(body, "Upload")) {
    page.uploads.push_back({text(u, "Key").value_or(""), text(u, "UploadId").value_or(""),
                            text(u, "Initiated").value_or("")});
  }
  page.truncated = text(body, "IsTruncated").value_or("false") == "true";
  page.next_key = text(body, "NextKeyMarker").value_or("");
  page.next_upload_id = text(body, "NextUploadIdMarker").value_or("");
  return page;
}

}  // namespace ck::s3
