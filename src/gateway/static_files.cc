#include "gateway/static_files.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

#include "http/url.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

bool is_within(const fs::path& root, const fs::path& p) {
  auto r = root.begin(), x = p.begin();
  for (; r != root.end(); ++r, ++x) {
    if (x == p.end() || *r != *x) return false;
  }
  return true;
}

std::string lower_ext(const fs::path& p) {
  std::string e = p.extension().string();
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}

// The same walk without openat2 (Linux < 5.6): each component opened with O_NOFOLLOW
// beneath the one before.
int open_nofollow_walk(int root_fd, const fs::path& rel) {
  int dir = ::dup(root_fd);
  if (dir < 0) return -1;
  auto last = std::prev(rel.end());
  for (auto it = rel.begin(); it != rel.end(); ++it) {
    const std::string part = it->string();
    if (part.empty() || part == "." || part == ".." || part == "/") {
      ::close(dir);
      errno = EACCES;
      return -1;
    }
    int flags = O_NOFOLLOW | O_CLOEXEC | (it == last ? O_RDONLY : (O_PATH | O_DIRECTORY));
    int next = ::openat(dir, part.c_str(), flags);
    int e = errno;
    ::close(dir);
    if (next < 0) {
      errno = e;
      return -1;
    }
    dir = next;
  }
  return dir;
}

}  // namespace

int open_static_file(const StaticLookup& lk) {
  if (lk.kind != StaticLookup::file || lk.root.empty()) {
    errno = ENOENT;
    return -1;
  }
  fs::path rel = lk.path.lexically_relative(lk.root);
  if (rel.empty() || rel.is_absolute() || *rel.begin() == "..") {
    errno = EACCES;
    return -1;
  }
  int root_fd = ::open(lk.root.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (root_fd < 0) return -1;
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how));
  if (fd < 0 && errno == ENOSYS) fd = open_nofollow_walk(root_fd, rel);
  int e = errno;
  ::close(root_fd);
  errno = e;
  return fd;
}

StaticLookup resolve_static(const fs::path& root, std::string_view url_path) {
  StaticLookup out;
  auto decoded = http::percent_decode(url_path);
  if (!decoded) {
    out.kind = StaticLookup::bad_request;
    out.reason = "malformed percent-encoding in the path";
    return out;
  }
  if (decoded->find('\0') != std::string::npos || decoded->find('\\') != std::string::npos) {
    out.kind = StaticLookup::bad_request;
    out.reason = "the path contains a NUL byte or a backslash";
    return out;
  }
  fs::path rel;
  std::string_view rest(*decoded);
  while (!rest.empty()) {
    auto slash = rest.find('/');
    std::string_view seg = rest.substr(0, slash);
    if (seg == "..") {
      out.kind = StaticLookup::bad_request;
      out.reason = "the path tries to leave the workspace (..)";
      return out;
    }
    if (!seg.empty() && seg != ".") {
      if (seg.front() == '.' && seg != ".well-known") {
        out.kind = StaticLookup::not_found;
        out.reason = "hidden files are not served";
        return out;
      }
      rel /= std::string(seg);
    }
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  std::error_code ec;
  fs::path real_root = fs::canonical(root, ec);
  if (ec) {
    out.kind = StaticLookup::not_found;
    out.reason = "the workspace folder is gone";
    return out;
  }
  fs::path candidate = real_root / rel;
  fs::path real = fs::canonical(candidate, ec);
  if (ec) {
    out.kind = StaticLookup::not_found;
    out.reason = "no such file";
    return out;
  }
  if (!is_within(real_root, real)) {
    out.kind = StaticLookup::forbidden;
    out.reason = "the path resolves outside the workspace (symlink)";
    return out;
  }
  auto st = fs::status(real, ec);
  if (fs::is_directory(st)) {
    if (!url_path.ends_with('/')) {
      out.kind = StaticLookup::redirect_dir;
      return out;
    }
    fs::path index = fs::canonical(real / "index.html", ec);
    if (ec || !fs::is_regular_file(index, ec)) {
      out.kind = StaticLookup::not_found;
      out.reason = "the folder has no index.html";
      return out;
    }
    if (!is_within(real_root, index)) {
      out.kind = StaticLookup::forbidden;
      out.reason = "index.html resolves outside the workspace (symlink)";
      return out;
    }
    out.kind = StaticLookup::file;
    out.path = index;
    out.root = real_root;
    return out;
  }
  if (!fs::is_regular_file(st)) {
    out.kind = StaticLookup::forbidden;
    out.reason = "not a regular file";
    return out;
  }
  out.kind = StaticLookup::file;
  out.path = real;
  out.root = real_root;
  return out;
}

std::string_view content_type_for(const fs::path& p) {
  struct Entry {
    std::string_view ext, type;
  };
  static constexpr Entry kTypes[] = {
      {".html", "text/html; charset=utf-8"}, {".htm", "text/html; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},   {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"}, {".json", "application/json"},
      {".map", "application/json"},          {".webmanifest", "application/manifest+json"},
      {".txt", "text/plain; charset=utf-8"}, {".md", "text/markdown; charset=utf-8"},
      {".csv", "text/csv; charset=utf-8"},   {".xml", "application/xml"},
      {".yaml", "text/yaml; charset=utf-8"}, {".yml", "text/yaml; charset=utf-8"},
      {".svg", "image/svg+xml"},             {".png", "image/png"},
      {".jpg", "image/jpeg"},                {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},                 {".webp", "image/webp"},
      {".avif", "image/avif"},               {".ico", "image/x-icon"},
      {".bmp", "image/bmp"},                 {".woff", "font/woff"},
      {".woff2", "font/woff2"},              {".ttf", "font/ttf"},
      {".otf", "font/otf"},                  {".eot", "application/vnd.ms-fontobject"},
      {".mp4", "video/mp4"},                 {".webm", "video/webm"},
      {".mp3", "audio/mpeg"},                {".ogg", "audio/ogg"},
      {".wav", "audio/wav"},                 {".pdf", "application/pdf"},
      {".wasm", "application/wasm"},         {".zip", "application/zip"},
      {".gz", "application/gzip"},           {".tar", "application/x-tar"},
  };
  std::string ext = lower_ext(p);
  for (const auto& e : kTypes) {
    if (e.ext == ext) return e.type;
  }
  return "application/octet-stream";
}

bool is_compressible(std::string_view t) {
  return t.starts_with("text/") || t.starts_with("application/json") ||
         t.starts_with("application/xml") || t.starts_with("application/manifest+json") ||
         t == "image/svg+xml" || t == "application/wasm" || t == "image/x-icon" ||
         t == "image/bmp" || t == "font/ttf" || t == "font/otf";
}

RangeResult parse_range(std::string_view h, std::uint64_t size, ByteRange& out) {
  if (!h.starts_with("bytes=")) return RangeResult::none;
  h.remove_prefix(6);
  if (h.find(',') != std::string_view::npos) return RangeResult::none;
  auto dash = h.find('-');
  if (dash == std::string_view::npos) return RangeResult::none;
  auto num = [](std::string_view s, std::uint64_t& v) {
    if (s.empty() || s.size() > 19) return false;
    v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return true;
  };
  std::string_view a = h.substr(0, dash), b = h.substr(dash + 1);
  std::uint64_t first = 0, last = 0;
  if (a.empty()) {  // suffix: last N bytes
    if (!num(b, last)) return RangeResult::none;
    if (last == 0 || size == 0) return RangeResult::unsatisfiable;
    out.first = size - std::min(last, size);
    out.last = size - 1;
    return RangeResult::ok;
  }
  if (!num(a, first)) return RangeResult::none;
  if (b.empty()) {
    last = size == 0 ? 0 : size - 1;
  } else if (!num(b, last) || last < first) {
    return RangeResult::none;
  }
  if (first >= size) return RangeResult::unsatisfiable;
  out.first = first;
  out.last = std::min(last, size - 1);
  return RangeResult::ok;
}

std::string make_etag(std::uint64_t size, std::int64_t mtime_ns) {
  return fmt::format("\"{:x}-{:x}\"", size, static_cast<std::uint64_t>(mtime_ns));
}


bool accepts_gzip(std::string_view value) {
  std::optional<bool> gzip_ok, star_ok;
  while (!value.empty()) {
    auto comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    auto semi = item.find(';');
    std::string_view coding = item.substr(0, semi);
    while (!coding.empty() && coding.front() == ' ') coding.remove_prefix(1);
    while (!coding.empty() && coding.back() == ' ') coding.remove_suffix(1);
    double q = 1.0;
    if (semi != std::string_view::npos) {
      std::string params(item.substr(semi + 1));
      auto qpos = params.find("q=");
      if (qpos != std::string::npos) q = std::atof(params.c_str() + qpos + 2);
    }
    if (http::iequals(coding, "gzip") || http::iequals(coding, "x-gzip")) gzip_ok = q > 0;
    else if (coding == "*") star_ok = q > 0;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  if (gzip_ok) return *gzip_ok;
  return star_ok.value_or(false);
}

std::string gzip(std::string_view data) {
  z_stream zs{};
  if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return {};
  std::string out;
  out.resize(deflateBound(&zs, data.size()) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return {};
  return out;
}

}  // namespace ck
