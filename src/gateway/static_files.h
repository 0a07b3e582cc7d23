#pragma once
// What the gateway needs to serve static workspaces, without Beast: safe path resolution,
// content types, Range parsing, ETags and gzip. Path resolution touches the filesystem
// (realpath) but nothing else.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/beneath.h"

namespace ck {

struct StaticLookup {
  enum Kind { file, redirect_dir, bad_request, forbidden, not_found } kind = not_found;
  std::filesystem::path path;  // file: the resolved file
  std::filesystem::path root;  // file: the workspace folder it was resolved under (canonical)
  std::string reason;          // for logs and error pages
};

/// Resolves a URL path ("/css/site.css", still percent-encoded) under `root`. Refuses
/// anything that could leave it: "..", encoded dots, backslashes, NUL, malformed escapes
/// (bad_request), symlinks that resolve outside (forbidden), hidden files except
/// .well-known (not_found). A directory without a trailing slash is redirect_dir; with one,
/// its index.html.
StaticLookup resolve_static(const std::filesystem::path& root, std::string_view url_path);

/// The lexical checks of resolve_static() alone, without touching the filesystem: the refusal
/// (bad_request, or not_found for a hidden file), or nullopt and the path relative to the
/// workspace folder in `rel` ("css/site.css", "" for the folder itself; no "." or empty
/// segments).
std::optional<StaticLookup> check_static_path(std::string_view url_path, std::string& rel);

// open_beneath() and content_type_for_name() live in core/beneath.h (shared with the API).

/// Opens a file that resolve_static() found (read-only, close-on-exec) by its path relative
/// to `lk.root`, refusing every symlink on the way and anything outside the root
/// (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, else O_NOFOLLOW component by component), so
/// a file swapped for a symlink after the check is never opened. -1 with errno set on failure.
int open_static_file(const StaticLookup& lk);

/// "text/css; charset=utf-8" for "x.css"; application/octet-stream when unknown.
std::string_view content_type_for(const std::filesystem::path& p);
/// True for types worth compressing (text, JSON, JS, SVG, wasm...).
bool is_compressible(std::string_view content_type);

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
};
enum class RangeResult { none, ok, unsatisfiable };
/// Parses a Range header against a file of `size` bytes. Several ranges or a malformed
/// header give `none` (serve the whole file, as RFC 9110 allows).
RangeResult parse_range(std::string_view header, std::uint64_t size, ByteRange& out);

/// A strong ETag from size and modification time: "\"1a2b-5f3e...\"".
std::string make_etag(std::uint64_t size, std::int64_t mtime_ns);

/// True if an Accept-Encoding value allows gzip (q-values honoured: "gzip;q=0" refuses it).
bool accepts_gzip(std::string_view accept_encoding);

/// gzip-compresses `data` (level 6). Empty on failure.
std::string gzip(std::string_view data);

/// The workspace folders static files are opened beneath, per gateway worker (no locks): a
/// descriptor (O_PATH) for each folder path, checked on every use with one stat() of the path
/// against the device and inode it was opened on, so a folder replaced (renamed away, deleted
/// and made again, its symlink pointed elsewhere) is opened anew at once. The open descriptor
/// keeps the old folder's inode alive, so its number cannot be reused by the new one.
class StaticRootCache {
 public:
  static constexpr std::size_t kMaxFolders = 64;
  StaticRootCache() = default;
  StaticRootCache(const StaticRootCache&) = delete;
  StaticRootCache& operator=(const StaticRootCache&) = delete;
  ~StaticRootCache() { clear(); }
  /// A descriptor of the folder at `path` (symlinks followed, as open() does), owned by the
  /// cache and valid until the next call; -1 with errno set when it cannot be opened.
  int get(const std::string& path);
  void clear();
  std::size_t size() const { return map_.size(); }

 private:
  struct Folder {
    int fd = -1;
    dev_t dev = 0;
    ino_t ino = 0;
  };
  std::unordered_map<std::string, Folder> map_;
};

/// The head of a static file's answer (200, 206, 304, 416), written without Beast's
/// serializer: the gateway's own fields, the file's validators, and Connection where the
/// version needs it (as forward.h's heads).
struct StaticResponseHead {
  int version = 11;                       // the client's HTTP version: 10 or 11
  unsigned status = 200;
  std::string_view date;                  // Date (http::http_date_now())
  std::string_view content_type;          // empty: no Content-Type (304)
  std::optional<std::uint64_t> content_length;  // none: no Content-Length (304)
  std::string_view etag;
  std::string_view last_modified;
  bool vary = false;                      // Vary: Accept-Encoding (compressible types)
  bool gzip = false;                      // Content-Encoding: gzip
  enum class Range { none, partial, unsatisfiable } range = Range::none;
  ByteRange bytes;                        // partial: the range sent
  std::uint64_t total = 0;                // partial, unsatisfiable: the file's size
  bool keep_alive = true;
  std::string_view hsts;                  // set: Strict-Transport-Security (TLS only)
};

/// Appends the status line and header block, ending with the empty line.
void append_static_response_head(const StaticResponseHead& h, std::string& out);

/// A small file's bytes and validators, as read through one descriptor.
struct StaticFileEntry {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
  std::string body;
  std::string etag;           // make_etag(size, mtime_ns)
  std::string last_modified;  // http_date(mtime)
};

/// Small static files' contents, per gateway worker (no locks), keyed by the file's identity
/// (device, inode) and valid only for the version fstat() reports on the descriptor opened
/// for the request: the same size, mtime and ctime. Any write, truncate, rename over or
/// utime changes the ctime (which no one can set back), so a changed file is never served
/// from here; files changed in the last seconds (a timestamp tick can hide two writes) are
/// not cached at all (see cacheable()). Bounded in bytes: when full, it starts over.
class StaticFileCache {
 public:
  static constexpr std::uint64_t kMaxFileBytes = 256 << 10;
  static constexpr std::uint64_t kMaxBytes = 16 << 20;
  /// True for a regular file of at most kMaxFileBytes whose ctime is at least 2 seconds
  /// before `now_sec` (the wall clock, as the kernel's timestamps).
  static bool cacheable(std::uint64_t size, std::int64_t ctime_ns, std::int64_t now_sec);
  /// The entry for this version of the file, or null.
  std::shared_ptr<const StaticFileEntry> find(dev_t dev, ino_t ino, std::uint64_t size,
                                              std::int64_t mtime_ns, std::int64_t ctime_ns) const;
  /// Stores (replacing any older version of the same file) and returns the entry.
  std::shared_ptr<const StaticFileEntry> put(dev_t dev, ino_t ino, StaticFileEntry e);
  std::uint64_t bytes() const { return bytes_; }
  std::size_t size() const { return map_.size(); }

 private:
  struct Key {
    dev_t dev;
    ino_t ino;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept {
      return std::hash<std::uint64_t>()(static_cast<std::uint64_t>(k.ino) * 0x9E3779B97F4A7C15ull ^
                                        static_cast<std::uint64_t>(k.dev));
    }
  };
  std::unordered_map<Key, std::shared_ptr<const StaticFileEntry>, KeyHash> map_;
  std::uint64_t bytes_ = 0;
};

}  // namespace ck
