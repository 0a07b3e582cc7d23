#pragma once
// What the gateway needs to serve static workspaces, without Beast: safe path resolution,
// content types, Range parsing, ETags and gzip. Path resolution touches the filesystem
// (realpath) but nothing else.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

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

}  // namespace ck
