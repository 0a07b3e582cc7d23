#include "storage/sync.h"

namespace ck::sync {

namespace {

std::string trim_slashes(std::string_view s) {
  while (!s.empty() && s.front() == '/') s.remove_prefix(1);
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

std::string root_prefix(std::string_view prefix) {
  std::string p = trim_slashes(prefix);
  return p.empty() ? p : p + "/";
}

std::string workspace_prefix(std::string_view prefix, std::string_view name) {
  return root_prefix(prefix) + std::string(name) + "/";
}

std::string manifest_key(std::string_view prefix, std::string_view name) {
  return root_prefix(prefix) + ".cloudyknight/manifests/" + std::string(name) + ".json";
}

bool safe_relative_path(std::string_view rel) {
  if (rel.empty() || rel.front() == '/') return false;
  if (rel.find('\0') != std::string_view::npos || rel.find('\\') != std::string_view::npos) return false;
  std::size_t start = 0;
  while (true) {
    auto slash = rel.find('/', start);
    std::string_view seg = rel.substr(start, slash == std::string_view::npos ? rel.npos : slash - start);
    if (seg.empty() || seg == "." || seg == "..") return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

}  // namespace ck::sync
