#include "gateway/static_files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>

#include "gateway/forward.h"
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
    int flags =
        O_NOFOLLOW | O_CLOEXEC | (it == last ? (O_RDONLY | O_NONBLOCK) : (O_PATH | O_DIRECTORY));
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
  how.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how));
  if (fd < 0 && errno == ENOSYS) fd = open_nofollow_walk(root_fd, rel);
  int e = errno;
  ::close(root_fd);
  errno = e;
  return fd;
}

std::optional<StaticLookup> check_static_path(std::string_view url_path, std::string& rel) {
  rel.clear();
  auto refuse = [](StaticLookup::Kind kind, const char* reason) {
    StaticLookup out;
    out.kind = kind;
    out.reason = reason;
    return out;
  };
  // Decoded only when there is something to decode (no copy for a plain path).
  std::optional<std::string> decoded_copy;
  std::string_view decoded = url_path;
  if (url_path.find('%') != std::string_view::npos) {
    decoded_copy = http::percent_decode(url_path);
    if (!decoded_copy)
      return refuse(StaticLookup::bad_request, "malformed percent-encoding in the path");
    decoded = *decoded_copy;
  }
  switch (check_relative_path(decoded, false, rel)) {
    case PathRefusal::none:
      break;
    case PathRefusal::bad_bytes:
      return refuse(StaticLookup::bad_request, "the path contains a NUL byte or a backslash");
    case PathRefusal::dot_dot:
      return refuse(StaticLookup::bad_request, "the path tries to leave the workspace (..)");
    case PathRefusal::hidden:
      return refuse(StaticLookup::not_found, "hidden files are not served");
  }
  return std::nullopt;
}

StaticLookup resolve_static(const fs::path& root, std::string_view url_path) {
  StaticLookup out;
  std::string rel_path;
  if (auto refused = check_static_path(url_path, rel_path)) return std::move(*refused);
  fs::path rel(rel_path);
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
  return content_type_for_name(p.filename().native());
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

void append_static_response_head(const StaticResponseHead& h, std::string& out) {
  std::string_view reason = h.status == 200   ? "OK"
                            : h.status == 206 ? "Partial Content"
                            : h.status == 304 ? "Not Modified"
                            : h.status == 416 ? "Range Not Satisfiable"
                                              : "";
  append_status_line(h.version, h.status, reason, out);
  out.append("Server: cloudyknight\r\n");
  append_header_field(out, "Date", h.date);
  if (!h.content_type.empty()) append_header_field(out, "Content-Type", h.content_type);
  if (h.content_length) {
    out.append("Content-Length: ");
    append_decimal(out, *h.content_length);
    out.append("\r\n", 2);
  }
  append_header_field(out, "ETag", h.etag);
  append_header_field(out, "Last-Modified", h.last_modified);
  out.append("Cache-Control: no-cache\r\nAccept-Ranges: bytes\r\n");
  if (h.vary) out.append("Vary: Accept-Encoding\r\n");
  if (h.gzip) out.append("Content-Encoding: gzip\r\n");
  if (h.range != StaticResponseHead::Range::none) {
    out.append("Content-Range: bytes ");
    if (h.range == StaticResponseHead::Range::partial) {
      append_decimal(out, h.bytes.first);
      out += '-';
      append_decimal(out, h.bytes.last);
    } else {
      out += '*';
    }
    out += '/';
    append_decimal(out, h.total);
    out.append("\r\n", 2);
  }
  if (!h.hsts.empty()) append_header_field(out, "Strict-Transport-Security", h.hsts);
  if (h.version >= 11 && !h.keep_alive) out.append("Connection: close\r\n");
  if (h.version == 10 && h.keep_alive) out.append("Connection: keep-alive\r\n");
  out.append("\r\n", 2);
}

bool StaticFileCache::cacheable(std::uint64_t size, std::int64_t ctime_ns, std::int64_t now_sec) {
  return size <= kMaxFileBytes && ctime_ns / 1'000'000'000 + 2 <= now_sec;
}

std::shared_ptr<const StaticFileEntry> StaticFileCache::find(dev_t dev, ino_t ino,
                                                             std::uint64_t size,
                                                             std::int64_t mtime_ns,
                                                             std::int64_t ctime_ns) const {
  auto it = map_.find(Key{dev, ino});
  if (it == map_.end()) return nullptr;
  const auto& e = *it->second;
  if (e.size != size || e.mtime_ns != mtime_ns || e.ctime_ns != ctime_ns) return nullptr;
  return it->second;
}

std::shared_ptr<const StaticFileEntry> StaticFileCache::put(dev_t dev, ino_t ino,
                                                            StaticFileEntry e) {
  auto entry = std::make_shared<const StaticFileEntry>(std::move(e));
  auto [it, fresh] = map_.try_emplace(Key{dev, ino}, entry);
  if (!fresh) {
    bytes_ -= it->second->body.size();
    it->second = entry;
  }
  bytes_ += entry->body.size();
  if (bytes_ > kMaxBytes) {  // start over, keeping the newest
    map_.clear();
    map_.emplace(Key{dev, ino}, entry);
    bytes_ = entry->body.size();
  }
  return entry;
}

int StaticRootCache::get(const std::string& path) {
  struct stat now {};
  if (::stat(path.c_str(), &now) != 0) return -1;
  auto it = map_.find(path);
  if (it != map_.end() && it->second.dev == now.st_dev && it->second.ino == now.st_ino) {
    return it->second.fd;
  }
  int fd = ::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    int e = errno;
    if (fd >= 0) ::close(fd);
    errno = e;
    return -1;
  }
  if (it != map_.end()) {
    ::close(it->second.fd);
    it->second = Folder{fd, st.st_dev, st.st_ino};
    return fd;
  }
  if (map_.size() >= kMaxFolders) clear();
  map_.emplace(path, Folder{fd, st.st_dev, st.st_ino});
  return fd;
}

void StaticRootCache::clear() {
  for (auto& [path, folder] : map_) ::close(folder.fd);
  map_.clear();
}

}  // namespace ck
