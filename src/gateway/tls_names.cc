#include "gateway/tls_names.h"

namespace ck {
namespace {

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view without_dot(std::string_view h) {
  if (!h.empty() && h.back() == '.') h.remove_suffix(1);
  return h;
}

bool is_wildcard(std::string_view pattern) { return pattern.starts_with("*."); }

}  // namespace

bool certificate_name_matches(std::string_view pattern, std::string_view host) {
  pattern = without_dot(pattern);
  host = without_dot(host);
  if (pattern.empty() || host.empty()) return false;
  if (!is_wildcard(pattern)) return iequal(pattern, host);
  std::string_view suffix = pattern.substr(1);  // ".example.test"
  if (suffix.size() < 2 || suffix.find('*') != std::string_view::npos) return false;
  auto dot = host.find('.');
  if (dot == 0 || dot == std::string_view::npos) return false;  // one non-empty label first
  return iequal(host.substr(dot), suffix);
}

std::size_t pick_certificate(const std::vector<std::vector<std::string>>& names,
                             std::string_view server_name) {
  if (server_name.empty()) return 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (const auto& n : names[i]) {
      if (!is_wildcard(n) && certificate_name_matches(n, server_name)) return i;
    }
  }
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (const auto& n : names[i]) {
      if (is_wildcard(n) && certificate_name_matches(n, server_name)) return i;
    }
  }
  return 0;
}

}  // namespace ck
