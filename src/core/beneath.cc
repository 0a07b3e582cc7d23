#include "core/beneath.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>

namespace ck {

PathRefusal check_relative_path(std::string_view decoded, bool allow_hidden, std::string& rel) {
  rel.clear();
  if (decoded.find('\0') != std::string_view::npos ||
      decoded.find('\\') != std::string_view::npos) {
    return PathRefusal::bad_bytes;
  }
  std::string_view rest(decoded);
  while (!rest.empty()) {
    auto slash = rest.find('/');
    std::string_view seg = rest.substr(0, slash);
    if (seg == "..") {
      rel.clear();
      return PathRefusal::dot_dot;
    }
    if (!seg.empty() && seg != ".") {
      if (!allow_hidden && seg.front() == '.' && seg != ".well-known") {
        rel.clear();
        return PathRefusal::hidden;
      }
      if (!rel.empty()) rel += '/';
      rel.append(seg);
    }
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return PathRefusal::none;
}

int open_beneath(int dir_fd, const std::string& rel) {
  static std::atomic<bool> no_openat2{false};
  if (!no_openat2.load(std::memory_order_relaxed)) {
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    int fd = static_cast<int>(
        ::syscall(SYS_openat2, dir_fd, rel.empty() ? "." : rel.c_str(), &how, sizeof how));
    if (fd >= 0 || errno != ENOSYS) return fd;
    no_openat2.store(true, std::memory_order_relaxed);
  }
  // Without openat2 (Linux < 5.6, or valgrind before 3.20): component by component, each
  // opened with O_NOFOLLOW beneath the one before. A symlink in the middle makes O_DIRECTORY
  // fail with ENOTDIR, reported as ELOOP (the caller's full checks sort it out).
  if (rel.empty()) return ::openat(dir_fd, ".", O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_DIRECTORY);
  std::string_view rest(rel);
  int dir = dir_fd;
  for (;;) {
    auto slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    bool last = slash == std::string_view::npos;
    char name[NAME_MAX + 1];
    if (part.empty() || part == "." || part == ".." || part.size() > NAME_MAX) {
      if (dir != dir_fd) ::close(dir);
      errno = part.size() > NAME_MAX ? ENAMETOOLONG : EACCES;
      return -1;
    }
    part.copy(name, part.size());
    name[part.size()] = '\0';
    int flags = O_NOFOLLOW | O_CLOEXEC | (last ? (O_RDONLY | O_NONBLOCK) : (O_PATH | O_DIRECTORY));
    int next = ::openat(dir, name, flags);
    int e = errno;
    if (dir != dir_fd) ::close(dir);
    if (next < 0) {
      errno = !last && e == ENOTDIR ? ELOOP : e;
      return -1;
    }
    if (last) return next;
    dir = next;
    rest.remove_prefix(slash + 1);
  }
}

std::string_view content_type_for_name(std::string_view name) {
  struct Entry {
    std::string_view ext, type;
  };
  static constexpr Entry kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".webmanifest", "application/manifest+json"},
      {".txt", "text/plain; charset=utf-8"},
      {".md", "text/markdown; charset=utf-8"},
      {".csv", "text/csv; charset=utf-8"},
      {".xml", "application/xml"},
      {".yaml", "text/yaml; charset=utf-8"},
      {".yml", "text/yaml; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".webp", "image/webp"},
      {".avif", "image/avif"},
      {".ico", "image/x-icon"},
      {".bmp", "image/bmp"},
      {".woff", "font/woff"},
      {".woff2", "font/woff2"},
      {".ttf", "font/ttf"},
      {".otf", "font/otf"},
      {".eot", "application/vnd.ms-fontobject"},
      {".mp4", "video/mp4"},
      {".webm", "video/webm"},
      {".mp3", "audio/mpeg"},
      {".ogg", "audio/ogg"},
      {".wav", "audio/wav"},
      {".pdf", "application/pdf"},
      {".wasm", "application/wasm"},
      {".zip", "application/zip"},
      {".gz", "application/gzip"},
      {".tar", "application/x-tar"},
  };
  // The extension as std::filesystem::path::extension() has it: from the file name's last
  // dot, none for a name that only starts with one (".profile") or is "..".
  std::string_view file =
      name.substr(name.rfind('/') == std::string_view::npos ? 0 : name.rfind('/') + 1);
  auto dot = file.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || file == "..") return "application/octet-stream";
  std::string_view ext = file.substr(dot);
  char lower[16];  // the longest known extension, ".webmanifest", fits
  if (ext.size() > sizeof lower) return "application/octet-stream";
  for (std::size_t i = 0; i < ext.size(); ++i) {
    char c = ext[i];
    lower[i] = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  }
  std::string_view key(lower, ext.size());
  for (const auto& e : kTypes) {
    if (e.ext == key) return e.type;
  }
  return "application/octet-stream";
}

bool has_git_segment(std::string_view rel) {
  for (std::string_view rest = rel; !rest.empty();) {
    auto slash = rest.find('/');
    std::string_view seg = rest.substr(0, slash);
    if (seg.size() == 4 && seg[0] == '.' && (seg[1] | 0x20) == 'g' && (seg[2] | 0x20) == 'i' &&
        (seg[3] | 0x20) == 't') {
      return true;
    }
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  }
  return false;
}

}  // namespace ck
