#include "core/public_url.h"

#include <fmt/format.h>

#include "core/names.h"

namespace ck {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// ":port" unless it is the scheme's default.
std::string port_suffix(std::string_view scheme, std::uint16_t port) {
  if (port == 0 || (scheme == "http" && port == 80) || (scheme == "https" && port == 443)) {
    return "";
  }
  return ":" + std::to_string(port);
}

}  // namespace

Result<PublicAddress> make_public_address(std::string_view public_url, std::string_view listen_host,
                                          std::uint16_t port, std::string_view domain) {
  PublicAddress a;
  a.domain = std::string(domain);
  a.configured = !public_url.empty() || !domain.empty();
  if (public_url.empty()) {
    std::string host(listen_host);
    if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") host = "127.0.0.1";
    if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
    a.port = port_suffix(a.scheme, port);
    a.authority = host + a.port;
    return a;
  }
  auto bad = [&] {
    return fail(Errc::invalid_argument,
                fmt::format("'{}' is not a public URL: give the scheme and host the gateway is "
                            "reached at, e.g. https://ck.example.com or http://10.0.0.5:8080",
                            public_url));
  };
  constexpr std::size_t kMaxUrl = 2048;
  if (public_url.size() > kMaxUrl) return bad();
  std::string_view rest;
  if (lower(public_url.substr(0, 7)) == "http://") {
    a.scheme = "http";
    rest = public_url.substr(7);
  } else if (lower(public_url.substr(0, 8)) == "https://") {
    a.scheme = "https";
    rest = public_url.substr(8);
  } else {
    return bad();
  }
  for (char c : rest) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '?' || c == '#' || c == '@' || c == '\\') return bad();
  }
  auto slash = rest.find('/');
  std::string authority = lower(rest.substr(0, slash));
  std::string path(slash == std::string_view::npos ? std::string_view() : rest.substr(slash));
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (authority.empty() || authority.front() == ':') return bad();
  // The port of the public base also serves <name>.<domain> URLs.
  a.port.clear();
  if (auto colon = authority.rfind(':');
      colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    std::string_view digits = std::string_view(authority).substr(colon + 1);
    if (digits.empty() || digits.size() > 5) return bad();
    unsigned n = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return bad();
      n = n * 10 + static_cast<unsigned>(c - '0');
    }
    if (n == 0 || n > 65535) return bad();
    a.port = port_suffix(a.scheme, static_cast<std::uint16_t>(n));
    authority = authority.substr(0, colon) + a.port;
  }
  a.authority = std::move(authority);
  a.path = std::move(path);
  return a;
}

std::string workspace_base_path(std::string_view name) {
  if (name == kHomeWorkspace) return "/";
  return "/" + std::string(name) + "/";
}

std::string workspace_url(std::string_view name, const PublicAddress& a) {
  if (!a.domain.empty()) {
    if (name == kHomeWorkspace) return home_url(a);
    return a.scheme + "://" + std::string(name) + "." + a.domain + a.port + "/";
  }
  return a.scheme + "://" + a.authority + a.path + workspace_base_path(name);
}

std::string home_url(const PublicAddress& a) {
  if (!a.domain.empty()) return a.scheme + "://" + a.domain + a.port + "/";
  return a.scheme + "://" + a.authority + a.path + "/";
}

std::string workspace_link(std::string_view name, const PublicAddress& a) {
  return a.configured ? workspace_url(name, a) : workspace_base_path(name);
}

std::string home_link(const PublicAddress& a) { return a.configured ? home_url(a) : "/"; }

}  // namespace ck
