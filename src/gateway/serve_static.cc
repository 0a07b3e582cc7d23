// Static workspaces: files served by the gateway itself (conditional requests, Range, gzip
// with a per-worker cache, live-reload injection). The pure parts are in static_files.h.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <utility>

#include "gateway/impl.h"
#include "gateway/pages.h"
#include "gateway/static_files.h"
#include "http/url.h"

namespace ck {
using namespace gw;

namespace {
constexpr std::uint64_t kInMemoryFileLimit = 1 << 20;
constexpr std::uint64_t kGzipLimit = 8 << 20;
constexpr std::uint64_t kMaxRangeBytes = 16 << 20;

std::optional<std::string> read_file(int fd, std::uint64_t size) {
  std::string out(size, '\0');
  std::uint64_t off = 0;
  while (off < size) {
    ssize_t n = ::pread(fd, out.data() + off, size - off, static_cast<off_t>(off));
    if (n <= 0) break;
    off += static_cast<std::uint64_t>(n);
  }
  out.resize(off);
  return out;
}

// Closes the file the request is served from, whichever way the answer goes.
struct FdGuard {
  int fd = -1;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

}  // namespace

Task<bool> Gateway::Impl::serve_static(Conn& conn, Request& req, const WorkspaceView& ws,
                                  const RouteDecision& d, Worker& w) {
  bool head = req.method() == bhttp::verb::head;
  if (req.method() != bhttp::verb::get && !head) {
    auto res = error_page(req, 405, "Method Not Allowed",
                          fmt::format("'{}' is a static workspace; it answers GET and HEAD only.", ws.name), "");
    res.set(bhttp::field::allow, "GET, HEAD");
    co_return co_await write(conn, res) && res.keep_alive();
  }
  auto [path, query] = http::split_target(d.upstream_target);
  auto lk = resolve_static(ws.static_root, path);
  switch (lk.kind) {
    case StaticLookup::bad_request: {
      auto res = error_page(req, 400, "Bad Request", "This path is not allowed: " + lk.reason + ".", "");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case StaticLookup::forbidden: {
      auto res = error_page(req, 403, "Forbidden", "This file cannot be served: " + lk.reason + ".", "");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case StaticLookup::not_found: {
      auto res = error_page(req, 404, "Not Found",
                            fmt::format("'{}' has no file at {}.", ws.name, std::string(path)), "");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case StaticLookup::redirect_dir: {
      auto res = make_response(req, bhttp::status::moved_permanently, "", "text/plain");
      res.set(bhttp::field::location,
              d.prefix + std::string(path) + "/" + (query.empty() ? "" : "?" + std::string(query)));
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case StaticLookup::file:
      break;
  }
  // Everything below reads the file through this descriptor, opened beneath the workspace
  // folder without following any symlink: a file swapped for a symlink after the check above
  // is refused here, never read.
  FdGuard file{open_static_file(lk)};
  struct stat st{};
  if (file.fd < 0 || ::fstat(file.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    bool link = file.fd < 0 && (errno == ELOOP || errno == EXDEV || errno == EACCES);
    auto res = link ? error_page(req, 403, "Forbidden", "This file cannot be served: it is a symlink.", "")
                    : error_page(req, 404, "Not Found", "The file disappeared.", "");
    co_return co_await write(conn, res) && res.keep_alive();
  }
  std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  std::int64_t mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  std::string etag = make_etag(size, mtime_ns);
  std::string last_modified = http::http_date(st.st_mtim.tv_sec);
  std::string_view type = content_type_for(lk.path);
  // Live reload: HTML pages carry the reload script (a different representation, so a
  // different ETag), whole and uncompressed.
  bool inject = opts.live_reload && type.starts_with("text/html") && size <= kInMemoryFileLimit;
  if (inject) etag.insert(etag.size() - 1, "-lr");
  bool compressible = is_compressible(type);
  std::string_view accept_enc(req[bhttp::field::accept_encoding]);
  bool want_gzip = !inject && compressible && size > 256 && size <= kGzipLimit &&
                   accepts_gzip(accept_enc);
  std::string gz_etag = etag.substr(0, etag.size() - 1) + "-gz\"";

  auto common = [&](auto& res) {
    res.set(bhttp::field::server, "cloudyknight");
    res.set(bhttp::field::date, http::http_date_now());
    res.set(bhttp::field::etag, want_gzip ? gz_etag : etag);
    res.set(bhttp::field::last_modified, last_modified);
    res.set(bhttp::field::cache_control, "no-cache");
    res.set(bhttp::field::accept_ranges, "bytes");
    if (compressible) res.set(bhttp::field::vary, "Accept-Encoding");
    res.keep_alive(req.keep_alive());
  };

  std::string_view inm(req[bhttp::field::if_none_match]);
  bool not_modified = false;
  if (!inm.empty()) {
    not_modified = http::etag_matches(inm, etag) || http::etag_matches(inm, gz_etag);
  } else if (auto ims = http::parse_http_date(std::string_view(req[bhttp::field::if_modified_since]))) {
    not_modified = st.st_mtim.tv_sec <= *ims;
  }
  if (not_modified) {
    bhttp::response<bhttp::empty_body> res{bhttp::status::not_modified, req.version()};
    common(res);
    co_return co_await write(conn, res) && res.keep_alive();
  }

  ByteRange range;
  RangeResult rr = RangeResult::none;
  if (req.count(bhttp::field::range) && !head && !inject) {
    std::string_view if_range(req[bhttp::field::if_range]);
    if (if_range.empty() || if_range == etag || if_range == last_modified) {
      rr = parse_range(std::string_view(req[bhttp::field::range]), size, range);
    }
  }
  if (rr == RangeResult::unsatisfiable) {
    auto res = make_response(req, bhttp::status::range_not_satisfiable, "", "text/plain");
    want_gzip = false;
    common(res);
    res.set(bhttp::field::content_range, fmt::format("bytes */{}", size));
    co_return co_await write(conn, res) && res.keep_alive();
  }
  if (rr == RangeResult::ok) {
    want_gzip = false;
    std::uint64_t len = std::min<std::uint64_t>(range.last - range.first + 1, kMaxRangeBytes);
    range.last = range.first + len - 1;
    std::string body(len, '\0');
    ssize_t got = ::pread(file.fd, body.data(), len, static_cast<off_t>(range.first));
    if (got != static_cast<ssize_t>(len)) {
      auto res = error_page(req, 500, "Internal Server Error", "The file could not be read.", "");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    auto res = make_response(req, bhttp::status::partial_content, std::move(body), type);
    common(res);
    res.set(bhttp::field::content_range, fmt::format("bytes {}-{}/{}", range.first, range.last, size));
    co_return co_await write(conn, res) && res.keep_alive();
  }

  if (want_gzip) {
    std::string key = lk.path.string() + etag;
    auto packed = w.gzip_cache.get(key);
    if (!packed) {
      auto raw = read_file(file.fd, size);
      if (!raw) {
        auto res = error_page(req, 500, "Internal Server Error", "The file could not be read.", "");
        co_return co_await write(conn, res) && res.keep_alive();
      }
      auto z = gzip(*raw);
      if (z.empty()) want_gzip = false;
      else packed = std::make_shared<const std::string>(std::move(z));
      if (packed) w.gzip_cache.put(key, packed);
    }
    if (packed) {
      auto res = make_response(req, bhttp::status::ok, head ? std::string() : *packed, type);
      common(res);
      res.set(bhttp::field::content_encoding, "gzip");
      if (head) res.content_length(packed->size());
      co_return co_await write(conn, res) && res.keep_alive();
    }
  }
  if (size <= kInMemoryFileLimit || head) {
    std::string body;
    if (!head || inject) {
      auto raw = read_file(file.fd, size);
      if (!raw) {
        auto res = error_page(req, 500, "Internal Server Error", "The file could not be read.", "");
        co_return co_await write(conn, res) && res.keep_alive();
      }
      body = inject ? inject_reload_script(std::move(*raw), ws.name) : std::move(*raw);
    }
    std::uint64_t length = inject ? body.size() : size;
    if (head) body.clear();
    auto res = make_response(req, bhttp::status::ok, std::move(body), type);
    common(res);
    if (head) res.content_length(length);
    co_return co_await write(conn, res) && res.keep_alive();
  }
  bhttp::response<bhttp::file_body> res{bhttp::status::ok, req.version()};
  error_code ec;
  beast::file f;
  f.native_handle(file.release());
  res.body().reset(std::move(f), ec);
  if (ec) {
    auto err = error_page(req, 500, "Internal Server Error", "The file could not be opened.", "");
    co_return co_await write(conn, err) && err.keep_alive();
  }
  res.set(bhttp::field::content_type, type);
  common(res);
  res.prepare_payload();
  co_return co_await write(conn, res) && res.keep_alive();
}


}  // namespace ck
