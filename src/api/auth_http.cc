#include "api/auth_http.h"

#include "http/url.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <fstream>

namespace ck {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::optional<std::string> cookie_value(std::string_view header, std::string_view name) {
  for (const auto& c : http::cookie_pairs(header)) {
    if (c.name != name || c.pair.find('=') == std::string_view::npos) continue;
    auto value = c.value;
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return std::string(value);
  }
  return std::nullopt;
}

std::optional<std::string> bearer_token(std::string_view authorization) {
  auto a = trim(authorization);
  constexpr std::string_view kScheme = "bearer";
  if (a.size() <= kScheme.size()) return std::nullopt;
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return std::nullopt;
  }
  if (a[kScheme.size()] != ' ') return std::nullopt;
  auto token = trim(a.substr(kScheme.size()));
  if (token.empty() || token.find_first_of(" \t") != std::string_view::npos) return std::nullopt;
  return std::string(token);
}

std::vector<std::string> last_lines(std::string_view text, std::size_t n) {
  std::vector<std::string> out;
  if (n == 0) return out;
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  if (text.empty()) return out;
  std::size_t end = text.size();
  while (out.size() < n) {
    auto nl = end == 0 ? std::string_view::npos : text.rfind('\n', end - 1);
    std::size_t begin = nl == std::string_view::npos ? 0 : nl + 1;
    auto line = text.substr(begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.emplace_back(line);
    if (nl == std::string_view::npos) break;
    end = nl;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> tail_lines(const std::filesystem::path& path, std::size_t n,
                                    std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  if (size <= 0) return {};
  std::streamoff start = std::max<std::streamoff>(0, size - static_cast<std::streamoff>(max_bytes));
  in.seekg(start);
  std::string text(static_cast<std::size_t>(size - start), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  std::string_view view(text);
  if (start > 0) {  // the first line is cut
    auto nl = view.find('\n');
    view = nl == std::string_view::npos ? std::string_view() : view.substr(nl + 1);
  }
  return last_lines(view, n);
}

Result<int> parse_tail(std::string_view text, int fallback, int max) {
  if (text.empty()) return fallback;
  int v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 1 || v > max) {
    return fail(Errc::invalid_argument,
                fmt::format("tail must be a number of lines from 1 to {} (got '{}')", max, text));
  }
  return v;
}

}  // namespace ck
