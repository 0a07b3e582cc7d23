#include "gateway/forward.h"

#include <algorithm>
#include <vector>

#include "http/url.h"

namespace ck {
namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// `name` equals `lower_name` (already lower case) ignoring case.
bool is(std::string_view name, std::string_view lower_name) {
  if (name.size() != lower_name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (lower(name[i]) != lower_name[i]) return false;
  }
  return true;
}

bool iless(std::string_view a, std::string_view b) {
  std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    char x = lower(a[i]), y = lower(b[i]);
    if (x != y) return x < y;
  }
  return a.size() < b.size();
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Calls f(token) for each non-empty element of a comma-separated list.
template <class F>
void for_each_token(std::string_view list, F&& f) {
  while (!list.empty()) {
    auto comma = list.find(',');
    auto tok = trim(list.substr(0, comma));
    if (!tok.empty()) f(tok);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

// Calls f(pair, name) for each non-empty pair of a Cookie field.
template <class F>
void for_each_cookie(std::string_view header, F&& f) {
  while (!header.empty()) {
    auto semi = header.find(';');
    std::string_view pair = trim(header.substr(0, semi));
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    if (pair.empty()) continue;
    f(pair, trim(pair.substr(0, pair.find('='))));
  }
}

enum class Hop { none, connection, upgrade, other };

// Fields that describe one hop (RFC 9110 7.6.1), besides the ones Connection names.
Hop hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2:
      return is(name, "te") ? Hop::other : Hop::none;
    case 7:
      return is(name, "trailer") ? Hop::other : is(name, "upgrade") ? Hop::upgrade : Hop::none;
    case 10:
      return is(name, "connection") ? Hop::connection : is(name, "keep-alive") ? Hop::other : Hop::none;
    case 16:
      return is(name, "proxy-connection") ? Hop::other : Hop::none;
    default:
      return Hop::none;
  }
}

// The names listed by the Connection fields (other than close, keep-alive and upgrade),
// sorted case-insensitively so that each field is looked up in O(log n) however many a
// client lists. Thread-local storage: no allocation once warm.
class ListedNames {
 public:
  explicit ListedNames(std::span<const HeaderField> fields) {
    names_.clear();
    for (const auto& f : fields) {
      if (f.name.size() != 10 || !is(f.name, "connection")) continue;
      for_each_token(f.value, [&](std::string_view tok) {
        if (!is(tok, "close") && !is(tok, "keep-alive") && !is(tok, "upgrade")) names_.push_back(tok);
      });
    }
    if (names_.size() > 1) std::sort(names_.begin(), names_.end(), iless);
  }
  bool contains(std::string_view name) const {
    if (names_.empty()) return false;
    auto it = std::lower_bound(names_.begin(), names_.end(), name, iless);
    return it != names_.end() && !iless(name, *it);
  }

 private:
  static thread_local std::vector<std::string_view> names_;
};
thread_local std::vector<std::string_view> ListedNames::names_;

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ", 2);
  out.append(value);
  out.append("\r\n", 2);
}

void append_number(std::string& out, std::uint64_t n) {
  char buf[20];
  char* end = buf + sizeof buf;
  char* p = end;
  do {
    *--p = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n);
  out.append(p, static_cast<std::size_t>(end - p));
}

// RFC 7239 quoted-string.
void append_quoted(std::string& out, std::string_view v) {
  out += '"';
  for (;;) {  // runs of plain characters are appended whole
    auto special = v.find_first_of("\"\\");
    out.append(v.substr(0, special));
    if (special == std::string_view::npos) break;
    out += '\\';
    out += v[special];
    v.remove_prefix(special + 1);
  }
  out += '"';
}

bool names_session(std::string_view cookie_name, std::string_view a, std::string_view b) {
  return (!a.empty() && cookie_name == a) || (!b.empty() && cookie_name == b);
}

}  // namespace

bool is_forwarding_header(std::string_view name) {
  auto same = [](std::string_view a, std::string_view lower_name) {  // '_' read as '-'
    if (a.size() != lower_name.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      char c = a[i] == '_' ? '-' : lower(a[i]);
      if (c != lower_name[i]) return false;
    }
    return true;
  };
  constexpr std::string_view kForwardedPrefix = "x-forwarded-";
  return (name.size() >= kForwardedPrefix.size() &&
          same(name.substr(0, kForwardedPrefix.size()), kForwardedPrefix)) ||
         same(name, "x-real-ip") || same(name, "forwarded");
}

void append_upstream_request_head(const UpstreamRequestHead& r, std::string& out) {
  ListedNames listed(r.fields);
  out.append(r.method);
  out += ' ';
  out.append(r.target);
  out.append(" HTTP/1.1\r\n", 11);

  // Cookie fields stay where they are unless one carries a session cookie or there are
  // several: then the kept pairs are joined into one field at the end (RFC 9113 8.2.3 style).
  bool filter_cookies = !r.session_cookie.empty() || !r.host_session_cookie.empty();
  bool join_cookies = false;
  if (filter_cookies) {
    int count = 0;
    for (const auto& f : r.fields) {
      if (f.name.size() != 6 || !is(f.name, "cookie")) continue;
      if (++count > 1) join_cookies = true;
      for_each_cookie(f.value, [&](std::string_view, std::string_view name) {
        if (names_session(name, r.session_cookie, r.host_session_cookie)) join_cookies = true;
      });
    }
  }

  std::string_view host;
  bool host_seen = false;
  for (const auto& f : r.fields) {
    switch (hop_by_hop(f.name)) {
      case Hop::none:
        break;
      case Hop::upgrade:
        if (r.upgrade) {
          append_field(out, f.name, f.value);
        }
        continue;
      case Hop::connection:
      case Hop::other:
        continue;
    }
    std::string_view n = f.name;
    if (n.size() == 4 && is(n, "host")) {
      if (!host_seen) host = f.value;
      host_seen = true;
    } else if ((n.size() == 6 && (is(n, "expect") || (join_cookies && is(n, "cookie")))) ||
               (n.size() == 14 && is(n, "content-length")) ||
               (n.size() == 17 && is(n, "transfer-encoding")) || is_forwarding_header(n) ||
               listed.contains(n)) {
      continue;
    }
    append_field(out, f.name, f.value);
  }

  append_field(out, "X-Forwarded-For", r.client_ip);
  append_field(out, "X-Real-IP", r.client_ip);
  append_field(out, "X-Forwarded-Proto", r.proto);
  if (!host.empty()) append_field(out, "X-Forwarded-Host", host);
  if (!r.prefix.empty()) append_field(out, "X-Forwarded-Prefix", r.prefix);
  out.append("Forwarded: for=");
  if (r.client_ip.find(':') == std::string_view::npos) {
    out.append(r.client_ip);
  } else {
    std::string bracketed = "[";
    bracketed.append(r.client_ip);
    bracketed += ']';
    append_quoted(out, bracketed);
  }
  out.append(";proto=");
  out.append(r.proto);
  if (!host.empty()) {
    out.append(";host=");
    append_quoted(out, host);
  }
  out.append("\r\n", 2);

  if (join_cookies) {
    std::size_t mark = out.size();
    out.append("Cookie: ");
    std::size_t start = out.size();
    for (const auto& f : r.fields) {
      if (f.name.size() != 6 || !is(f.name, "cookie")) continue;
      for_each_cookie(f.value, [&](std::string_view pair, std::string_view name) {
        if (names_session(name, r.session_cookie, r.host_session_cookie)) return;
        if (out.size() > start) out.append("; ", 2);
        out.append(pair);
      });
    }
    if (out.size() == start) {
      out.resize(mark);  // only session cookies: no Cookie field at all
    } else {
      out.append("\r\n", 2);
    }
  }
  if (r.upgrade) out.append("Connection: Upgrade\r\n");
  if (r.content_length) {
    out.append("Content-Length: ");
    append_number(out, *r.content_length);
    out.append("\r\n", 2);
  }
  out.append("\r\n", 2);
}

void append_client_response_head(const ClientResponseHead& r, std::string& out) {
  ListedNames listed(r.fields);
  append_status_line(r.version, r.status, r.reason, out);
  bool filter_cookies = !r.session_cookie.empty() || !r.host_session_cookie.empty();
  for (const auto& f : r.fields) {
    if (hop_by_hop(f.name) != Hop::none) continue;
    std::string_view n = f.name;
    if ((n.size() == 6 && is(n, "server")) || (n.size() == 17 && is(n, "transfer-encoding")) ||
        (r.drop_content_length && n.size() == 14 && is(n, "content-length")) ||
        (!r.hsts.empty() && n.size() == 25 && is(n, "strict-transport-security")) ||
        listed.contains(n)) {
      continue;
    }
    if (filter_cookies && n.size() == 10 && is(n, "set-cookie") &&
        ((!r.session_cookie.empty() && http::sets_cookie(f.value, r.session_cookie)) ||
         (!r.host_session_cookie.empty() && http::sets_cookie(f.value, r.host_session_cookie)))) {
      continue;
    }
    append_field(out, f.name, f.value);
  }
  out.append("Server: cloudyknight\r\n");
  if (!r.hsts.empty()) append_field(out, "Strict-Transport-Security", r.hsts);
  if (r.chunked) out.append("Transfer-Encoding: chunked\r\n");
  if (r.version >= 11 && !r.keep_alive) out.append("Connection: close\r\n");
  if (r.version == 10 && r.keep_alive) out.append("Connection: keep-alive\r\n");
  out.append("\r\n", 2);
}

void append_chunk_size(std::uint64_t n, std::string& out) {
  char buf[16];
  int i = 16;
  do {
    buf[--i] = "0123456789abcdef"[n & 15];
    n >>= 4;
  } while (n);
  out.append(buf + i, static_cast<std::size_t>(16 - i));
  out.append("\r\n", 2);
}

void append_status_line(int version, unsigned status, std::string_view reason, std::string& out) {
  out.append(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ", 9);
  unsigned s = status % 1000;
  out += static_cast<char>('0' + s / 100);
  out += static_cast<char>('0' + s / 10 % 10);
  out += static_cast<char>('0' + s % 10);
  out += ' ';
  out.append(reason);
  out.append("\r\n", 2);
}

void append_header_field(std::string& out, std::string_view name, std::string_view value) {
  append_field(out, name, value);
}

void append_decimal(std::string& out, std::uint64_t n) { append_number(out, n); }

}  // namespace ck
